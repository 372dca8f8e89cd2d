"""Faults (issue #9): kill -9 at random points of each stage then resume; write failures
(file-size limit, full tmpfs, read-only work dir); a second run on a busy work dir with --wait.

Kill tests: ``h36m-nvf <stage> --workers 1`` (its units run one after the other) runs
uninterrupted once, then again in its own session (CLI, scheduler, nanny and worker all
SIGKILLed together) killed at a random point drawn from a seeded RNG within the measured
duration of the uninterrupted run (see ``run_and_kill``), then in-process to completion.
After the rerun, every output file must equal the reference byte for
byte. Compared as they are: every file under the stage's output folders. Not compared as
bytes: ``done/*.done.json`` (they hold ``finished_at`` and the absolute paths and mtimes of
their input files, which differ between two work dirs; their ``outputs`` (size, sha256),
``info``, ``params`` and ``config_hash`` are compared instead) and ``run.json`` /
``.lock`` (timestamps, timings, pid).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import extract_with_true_fit

from cli import main

H36M_NVF = Path(sys.executable).with_name("h36m-nvf")
RECORD_FIELDS = ("unit", "stage", "stage_version", "config_hash", "params", "outputs", "info")
"""Done-record fields that must match the reference (not finished_at, not input fingerprints)."""


@pytest.fixture(scope="session")
def scheduler(dask_client):
    return dask_client.scheduler.address


def cli(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


# --------------------------------------------------------------------------- helpers


def snapshot(work: Path, folders) -> dict[str, object]:
    """Every file under ``folders`` of WORK by relative path: bytes, or for done-records the
    fields that must not depend on when or where the unit ran."""
    out = {}
    for folder in folders:
        for p in sorted((work / folder).rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(work).as_posix()
            if p.name.endswith(".done.json"):
                record = json.loads(p.read_text())
                out[rel] = {k: record.get(k) for k in RECORD_FIELDS}
            else:
                out[rel] = p.read_bytes()
    return out


def temp_files(work: Path) -> list[Path]:
    return [p for p in work.rglob("*") if p.name.endswith(".tmp")]


def done_records(work: Path, stage: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (work / stage / "done").rglob("*.done.json")}


def stage_command(stage: str, work: Path, args: list[str]) -> list[str]:
    """``h36m-nvf <stage>`` on one local worker: its units run one after the other."""
    return [str(H36M_NVF), stage, "--out", str(work), "--workers", "1", "--no-progress", *args]


def reference_run(stage: str, work: Path, args: list[str]) -> list[float]:
    """Run the command uninterrupted; return the times (s) its units finished, in order."""
    result = subprocess.run(stage_command(stage, work, args), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 skipped (up to date), 0 failed" in result.stdout, result.stdout
    return sorted(m / 1e9 for m in done_records(work, stage).values())


def run_and_kill(stage: str, work: Path, args: list[str], finish_times: list[float], seed: int,
                 scale: float = 1.0, timeout: float = 300) -> dict[Path, int]:
    """Run the command again and SIGKILL its whole session at a random point: once k units
    are done (k uniform in 1..max(1, n-2)), after u × the uninterrupted run's time from its
    k-th to its (k+1)-th finished unit (u uniform in [0.1, 0.9), times ``scale``): inside unit
    k+1, mid-compute or mid-write. Returns the done-records (with mtimes) that survived."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, max(1, len(finish_times) - 2) + 1))
    delay = scale * rng.uniform(0.1, 0.9) * (finish_times[k] - finish_times[k - 1])
    proc = subprocess.Popen(stage_command(stage, work, args), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while len(done_records(work, stage)) < k:
            assert proc.poll() is None, f"{stage} run ended before {k} units finished"
            assert time.monotonic() < deadline, f"{stage}: {k} units not finished in {timeout} s"
            time.sleep(0.005)
        time.sleep(delay)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its scheduler, nanny and worker
        proc.wait()
    time.sleep(0.5)  # let the dying worker's last writes land
    return done_records(work, stage)


SELECTION_KEYS = ("subjects", "actions", "cameras", "frames")


def cli_args(spec: dict) -> list[str]:
    """``{"test_stride": 5}`` → ``["--test-stride", "5"]``."""
    return [a for k, v in spec.items() for a in ("--" + k.replace("_", "-"), str(v))]


def check_resume(stage: str, args: list[str], reference: Path, work: Path, folders, scheduler,
                 seed: int, make_work=lambda work: None) -> None:
    """Reference run, killed run, rerun in-process: only the unfinished units run again, no
    temporary file remains, the outputs equal the reference's. ``make_work(work)`` (re)creates
    the work dir's inputs."""
    finish_times = reference_run(stage, reference, args)
    total = len(finish_times)
    make_work(work)
    for attempt in range(3):
        finished = run_and_kill(stage, work, args, finish_times, seed, scale=0.5**attempt)
        if len(finished) < total:
            break
        # a busy machine ran the last unit faster than the reference did: again, earlier
        shutil.rmtree(work)
        make_work(work)
    assert 0 < len(finished) < total, f"the kill should land mid-run ({len(finished)}/{total})"

    result = cli(stage, "--out", work, "--scheduler", scheduler, "--no-progress", *args)
    assert result.exit_code == 0, result.output
    assert (f"{total} units: {total - len(finished)} done, {len(finished)} skipped (up to date), "
            "0 failed") in result.output
    assert all(p.stat().st_mtime_ns == m for p, m in finished.items()), "a finished unit was recomputed"
    assert temp_files(work) == []
    got, want = snapshot(work, folders), snapshot(reference, folders)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []


# --------------------------------------------------------------------------- kill -9, each stage


def clone_subject(work: Path, src: str, dst: str) -> None:
    """A second subject made of the first one's extracted (and fitted) files, renamed."""
    shutil.copytree(work / "extract" / src, work / "extract" / dst)
    if (work / "fit" / src).is_dir():
        shutil.copytree(work / "fit" / src, work / "fit" / dst)
    (work / "images" / dst).mkdir()
    for p in (work / "images" / src).iterdir():
        shutil.copy2(p, work / "images" / dst / p.name.replace(f"{src}_", f"{dst}_", 1))


@pytest.fixture(scope="module")
def staged(tmp_path_factory, synthetic_release, model_cache, scheduler):
    """WORK after extract (S9 of the synthetic release) and a perfect fit, plus S1 = a copy of
    S9: two subjects, so fit and h3wb have several units. Copy it before use."""

    work = tmp_path_factory.mktemp("staged") / "work"
    work.mkdir()
    report = extract_with_true_fit(work, synthetic_release, model_cache, stride=1, scheduler=scheduler)
    assert not report.failed, report.format()
    clone_subject(work, "S9", "S1")
    return work


def copy_staged(staged: Path, dst: Path, keep_fit: bool = True) -> Path:
    shutil.copytree(staged, dst, symlinks=True)
    if not keep_fit:
        shutil.rmtree(dst / "fit")
    return dst


STAGE_SPECS = {
    # 2 frames × 4 cameras of S9 (a protocol-1 test subject), 1 frame per block: 2 units of 4 shards
    "sample": ({"subjects": "S9", "test_stride": 5, "points": 64, "samples_per_shard": 1},
               ("shards", "sample"), True),
    # train S1, test S9, every 5th frame: 2 units
    "h3wb": ({"train": "S1", "test": "S9", "stride": 5}, ("h3wb",), True),
    # shape + 3 frames per subject, S1 and S9: 2 units (≈15 s of CPU each: slow only)
    "fit": ({"device": "cpu", "frames": "0:3"}, ("fit",), False),
}
FAST_SEED = 0


def _kill_and_resume(stage, seed, staged, tmp_path, scheduler):
    spec, folders, keep_fit = STAGE_SPECS[stage]
    reference = copy_staged(staged, tmp_path / "reference", keep_fit)
    check_resume(stage, cli_args(spec), reference, tmp_path / "work", folders, scheduler, seed,
                 make_work=lambda work: copy_staged(staged, work, keep_fit))


# The fast suite kills sample (extract: test_extract.py); h3wb (≈25 s of CPU) and fit (≈60 s)
# would break the 2-core budget of `make test`, so they run with the seeds under `make test-all`.
@pytest.mark.parametrize("stage", ["sample"])
def test_kill_9_then_resume(stage, staged, tmp_path, scheduler):
    _kill_and_resume(stage, FAST_SEED, staged, tmp_path, scheduler)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 3, 4])
@pytest.mark.parametrize("stage", ["sample", "h3wb", "fit"])
def test_kill_9_then_resume_seeds(stage, seed, staged, tmp_path, scheduler):
    _kill_and_resume(stage, seed, staged, tmp_path, scheduler)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_extract_seeds(seed, tiny_release, tmp_path, scheduler):
    args = ["--h36m", str(tiny_release), "--stride", "1"]
    check_resume("extract", args, tmp_path / "reference", tmp_path / "work", ("extract", "images"),
                 scheduler, seed)


# --------------------------------------------------------------------------- write failures


def limited_file_size(limit: int):
    """preexec_fn: writes beyond ``limit`` bytes per file fail with EFBIG, as on a tiny disk
    (works as root too, unlike chmod; SIGXFSZ ignored so the write fails instead of killing)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def extract_cmd(release: Path, work: Path, *args) -> list[str]:
    return [str(H36M_NVF), "extract", "--h36m", str(release), "--out", str(work), "--workers", "1",
            "--no-progress", "--stride", "3", *map(str, args)]


def outputs_with_mtimes(work: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(work).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for folder in ("extract", "images") for p in (work / folder).rglob("*")
            if p.is_file() and "/done/" not in p.as_posix() and p.name != "failures.json"}


@pytest.fixture
def walking_done(tiny_release, tmp_path, scheduler):
    """(reference WORK with every unit, WORK with only Walking extracted: the earlier outputs)."""
    reference, work = tmp_path / "reference", tmp_path / "work"
    for out, extra in ((reference, []), (work, ["--actions", "Walking"])):
        result = cli("extract", "--h36m", tiny_release, "--out", out, "--scheduler", scheduler,
                     "--no-progress", "--stride", "3", *extra)
        assert result.exit_code == 0, result.output
    return reference, work


def finish_and_compare(tiny_release, reference, work, scheduler, done: int, skipped: int) -> None:
    result = cli("extract", "--h36m", tiny_release, "--out", work, "--scheduler", scheduler,
                 "--no-progress", "--stride", "3")
    assert result.exit_code == 0, result.output
    assert f"10 units: {done} done, {skipped} skipped (up to date), 0 failed" in result.output
    assert temp_files(work) == []
    assert {k: v[0] for k, v in outputs_with_mtimes(work).items()} == \
        {k: v[0] for k, v in outputs_with_mtimes(reference).items()}


def test_file_size_limit_fails_the_units_cleanly_and_a_rerun_completes(tiny_release, walking_done,
                                                                        scheduler):
    reference, work = walking_done
    before = outputs_with_mtimes(work)
    limit = 3000  # the 64×48 JPEGs fit, sequence.json (≈4 KB) does not
    result = subprocess.run(extract_cmd(tiny_release, work), capture_output=True, text=True,
                            preexec_fn=limited_file_size(limit), timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    seq_json = work / "extract/S1/Eating_2/sequence.json"
    assert "10 units: 4 done, 5 skipped (up to date), 1 failed" in result.stdout
    assert (f"  FAILED  S1/Eating_2  OutputError: {seq_json}: cannot write (File too large)"
            in result.stdout), result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    failures = json.loads((work / "extract/failures.json").read_text())
    assert failures == [{"unit": "S1/Eating_2",
                         "reason": f"OutputError: {seq_json}: cannot write (File too large)"}]
    assert temp_files(work) == []
    after = outputs_with_mtimes(work)
    assert all(after[k] == v for k, v in before.items())  # earlier outputs untouched
    finish_and_compare(tiny_release, reference, work, scheduler, done=1, skipped=9)


def _in_private_mounts(script: str, cmd: list[str]) -> list[str]:
    """``cmd`` run after ``script`` (mount commands) in a private mount namespace (root only):
    the mounts vanish with the process and nothing else sees them."""
    return ["unshare", "--mount", "sh", "-ec", script + ' && exec "$@"', "sh", *cmd]


def _private_mounts_work() -> str | None:
    """Why private mounts cannot be used here, or None when they can."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "needs root and unshare(1) for a private tmpfs / read-only bind mount"
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
                           capture_output=True)
    return None if probe.returncode == 0 else "mount not permitted here (no CAP_SYS_ADMIN)"


def test_full_small_tmpfs_fails_the_unit_cleanly_and_a_rerun_completes(tiny_release, walking_done,
                                                                       scheduler):
    why = _private_mounts_work()
    if why:
        pytest.skip(why)
    reference, work = walking_done
    target = work / "extract/S1/Eating_2"
    target.mkdir(parents=True)
    # a 4 KiB tmpfs where the Eating 2 sequence files go: sequence.json and joints cannot both fit
    cmd = _in_private_mounts(f"mount -t tmpfs -o size=4k tmpfs '{target}'", extract_cmd(tiny_release, work))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "10 units: 4 done, 5 skipped (up to date), 1 failed" in result.stdout
    line = next(x for x in result.stdout.splitlines() if "FAILED" in x)
    assert line.startswith(f"  FAILED  S1/Eating_2  OutputError: {target}/")
    assert line.endswith(": cannot write (No space left on device)"), line
    assert "Traceback" not in result.stderr, result.stderr
    assert temp_files(work) == []
    finish_and_compare(tiny_release, reference, work, scheduler, done=1, skipped=9)


def _read_only(paths: list[Path], cmd: list[str]) -> tuple[list[str], object]:
    """``cmd`` with ``paths`` read-only for it, and an undo function. Not root: chmod a-w.
    Root (chmod does not stop it): read-only bind mounts in a private mount namespace."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for path in paths for p in [path, *path.rglob("*")]}
        for p, mode in modes.items():
            p.chmod(mode & ~0o222)
        return cmd, lambda: [p.chmod(m) for p, m in modes.items()]
    why = _private_mounts_work()
    if why:
        pytest.skip(f"read-only folder as root: {why}")
    script = " && ".join(f"mount --bind '{p}' '{p}' && mount -o remount,bind,ro '{p}'" for p in paths)
    return _in_private_mounts(script, cmd), lambda: None


def test_read_only_work_dir_is_one_line_and_a_rerun_completes(tiny_release, walking_done, scheduler):
    reference, work = walking_done
    before = outputs_with_mtimes(work)

    # the whole work dir read-only: refused before any unit runs, naming the lock file
    cmd, undo = _read_only([work], extract_cmd(tiny_release, work))
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        undo()
    assert result.returncode == 1, result.stdout + result.stderr
    reason = "Permission denied" if os.geteuid() != 0 else "Read-only file system"
    assert result.stderr.strip() == f"Error: {work}/.lock: cannot write ({reason})", result.stderr
    assert result.stdout == ""

    # only the image folder read-only: the image units fail one by one, naming their files
    cmd, undo = _read_only([work / "images"], extract_cmd(tiny_release, work))
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        undo()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "10 units: 1 done, 5 skipped (up to date), 4 failed" in result.stdout, result.stdout
    for cam in ("54138969", "55011271", "58860488", "60457274"):
        image = work / f"images/S1/S1_Eating_2.{cam}_000001.jpg"
        assert f"  FAILED  S1/Eating_2/{cam}  OutputError: {image}: cannot write ({reason})" in result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert temp_files(work) == []
    after = outputs_with_mtimes(work)
    assert all(after[k] == v for k, v in before.items())  # earlier outputs untouched
    finish_and_compare(tiny_release, reference, work, scheduler, done=4, skipped=6)


# --------------------------------------------------------------------------- two runs, one work dir


def test_second_run_waits_with_wait_flag(tiny_release, tmp_path, scheduler):
    """CLI --wait: blocks while another run holds WORK, then runs (no interleaving)."""
    from pipeline.store import WorkDir

    work = tmp_path / "work"
    lock = WorkDir(work).lock()
    lock.acquire()
    released_at = []

    def release_later():
        time.sleep(1.5)
        released_at.append(time.monotonic())
        lock.release()

    thread = threading.Thread(target=release_later)
    thread.start()
    try:
        result = cli("extract", "--h36m", tiny_release, "--out", work, "--scheduler", scheduler,
                     "--no-progress", "--actions", "Walking", "--cameras", "54138969", "--wait")
    finally:
        thread.join()
    assert result.exit_code == 0, result.output
    assert "2 units: 2 done" in result.output
    # every output was written after the other run let go of WORK
    outputs = [p for p in work.rglob("*") if p.is_file() and p.name != ".lock"]
    assert outputs and min(p.stat().st_mtime for p in outputs) >= time.time() - (
        time.monotonic() - released_at[0]) - 0.05
