"""Ctrl-C and progress output of a real ``h36m-nvf extract`` in a subprocess.

Ctrl-C is SIGINT to the whole foreground process group (CLI, nannies and workers alike):
the test starts the command in its own session and signals that group, as a terminal does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_tiny_release

ROOT = Path(__file__).resolve().parents[3]


LONG_FRAMES = 600
"""Frames per sequence of ``long_release``."""


@pytest.fixture(scope="module")
def long_release(tmp_path_factory):
    """S1 and S9, two sequences, 4 cameras, 600 frames each: a run of several seconds on a quiet
    machine (with 240 frames it ended within the progress rate's first second, and the log test
    saw no rate)."""
    return write_tiny_release(tmp_path_factory.mktemp("long_release"), subjects=("S1", "S9"), frames=LONG_FRAMES)


def command(release, work, *extra) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "extract", "--h36m", str(release), "--out", str(work),
            "--workers", "1", "--stride", "1", *extra]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def done_records(work: Path) -> dict[str, int]:
    return {p.relative_to(work).as_posix(): p.stat().st_mtime_ns
            for p in (work / "extract" / "done").rglob("*.done.json")}


def interrupt_after(cmd, work: Path, records: int, newer_than: dict | None = None, timeout: float = 120):
    """Run ``cmd``; once ``records`` done-records (newer than ``newer_than``) exist, SIGINT its
    process group; return (returncode, stdout, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            now = done_records(work) if (work / "extract" / "done").is_dir() else {}
            fresh = [k for k, t in now.items() if newer_than is None or t != newer_than.get(k)]
            if len(fresh) >= records:
                os.killpg(proc.pid, signal.SIGINT)
                break
            time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


def dry_run_statuses(release, work) -> dict[str, str]:
    out = subprocess.run(command(release, work, "--dry-run"), capture_output=True, text=True, env=env(),
                         check=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if line.startswith("  ")]
    return {key: status for _verb, key, status in rows}


def test_ctrl_c_exits_130_with_one_line_and_a_rerun_resumes(long_release, tmp_path):
    work = tmp_path / "work"
    code, out, err = interrupt_after(command(long_release, work), work, records=3)
    assert code == 130, (out, err)
    assert "Traceback" not in err + out and "distributed" not in err + out, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and "interrupted during extract:" in lines[0], err
    assert "rerun the same command to resume" in lines[0]
    kept = len(done_records(work))
    assert f" {kept} units finished this run" in lines[0], lines  # those with a record on disk
    # the rerun does only what is left
    rerun = subprocess.run(command(long_release, work, "--no-progress"), capture_output=True, text=True, env=env())
    assert rerun.returncode == 0, rerun.stderr
    summary = next(line for line in rerun.stdout.splitlines() if line.startswith("extract:"))
    assert f"{kept} skipped" in summary, summary


def test_interrupted_force_run_keeps_the_records_of_units_it_did_not_start(long_release, tmp_path):
    work = tmp_path / "work"
    subprocess.run(command(long_release, work, "--no-progress"), check=True, capture_output=True, env=env())
    before = done_records(work)
    code, _out, err = interrupt_after(command(long_release, work, "--force", "--no-progress"), work,
                                      records=2, newer_than=before)
    assert code == 130, err
    statuses = dry_run_statuses(long_release, work)
    missing = [k for k, s in statuses.items() if s == "missing"]
    # at most the one unit that was running on the single worker lost its record
    assert len(missing) <= 1, statuses
    assert sum(s == "up to date" for s in statuses.values()) >= len(statuses) - 1


def test_progress_in_a_log_file_has_lines_and_no_bar_frames(long_release, tmp_path):
    work = tmp_path / "work"
    log = tmp_path / "stderr.log"
    with open(log, "w") as f:  # not a terminal
        subprocess.run(command(long_release, work, "--progress-every", "0.5"), stderr=f,
                       stdout=subprocess.DEVNULL, env=env(), check=True)
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    assert text.startswith("dask: 1 workers, dashboard http")
    progress = [line for line in text.splitlines() if line.startswith("extract: ") and "units" in line]
    assert progress, text
    assert any("frames" in line and "frames/s" in line and "ETA" in line for line in progress), progress


def test_stage_summary_records_results(long_release, tmp_path):
    work = tmp_path / "work"
    run = subprocess.run(command(long_release, work, "--no-progress", "--cameras", "54138969"),
                         capture_output=True, text=True, env=env(), check=True)
    # 4 sequences, one camera each, every one of the LONG_FRAMES frames
    images = 4 * LONG_FRAMES
    assert f"4 sequences, {images} images from 4 videos" in run.stdout, run.stdout
    recorded = json.loads((work / "run.json").read_text())["stages"]["extract"]["summary"]["results"]
    assert recorded == {"sequences": 4, "videos": 4, "images": images}
    assert len(list((work / "images").rglob("*.jpg"))) == images
