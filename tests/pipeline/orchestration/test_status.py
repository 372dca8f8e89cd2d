"""``h36m-nvf status`` on a fresh, partial, stale and failed work dir (real extract runs)."""

from __future__ import annotations

import os
import shutil

import pytest
from click.testing import CliRunner
from helpers import write_tiny_release

from cli import main
from pipeline.orchestration.status import EXIT_FAILED, EXIT_TODO, config_from_json
from pipeline.selection import Selection
from pipeline.stages.base import config_to_json


@pytest.fixture(scope="module")
def scheduler(dask_client):
    return dask_client.scheduler.address


def status(work):
    return CliRunner().invoke(main, ["status", "--out", str(work)])


def stage_line(output: str, stage: str) -> str:
    return next(line for line in output.splitlines() if line.split()[:1] == [stage])


def extract(release, work, scheduler):
    return CliRunner().invoke(main, ["extract", "--h36m", str(release), "--out", str(work),
                                     "--scheduler", scheduler, "--no-progress", "--stride", "3"])


def test_fresh_work_dir_says_nothing_ran_and_exits_3(tmp_path):
    result = status(tmp_path)
    assert result.exit_code == EXIT_TODO, result.output
    for stage in ("extract", "fit", "sample", "h3wb"):
        assert "not run" in stage_line(result.output, stage)


def test_missing_work_dir_is_a_usage_error(tmp_path):
    result = status(tmp_path / "nope")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_partial_then_stale_work_dir(tiny_release, tmp_path, scheduler):
    release = tmp_path / "release"
    shutil.copytree(tiny_release, release)
    work = tmp_path / "work"
    assert extract(release, work, scheduler).exit_code == 0
    result = status(work)
    assert result.exit_code == EXIT_TODO  # later stages never ran
    line = stage_line(result.output, "extract")
    # 2 sequences, 4 cameras each: 10 units, as the extract summary counted them
    assert line.split()[1] == "done" and "10 up to date" in line, result.output
    assert "not run" in stage_line(result.output, "fit")

    video = next(release.rglob("Walking 1.*.mp4"))
    with open(video, "ab") as f:  # new bytes: the unit of this video (and its sequence) are stale
        f.write(b"\0")
    result = status(work)
    line = stage_line(result.output, "extract")
    assert line.split()[1] == "stale" and "2 stale" in line and "8 up to date" in line, result.output
    assert "input changed" in result.output and video.name in result.output
    assert result.exit_code == EXIT_TODO


def test_failed_units_are_named_and_exit_1(tmp_path, scheduler):
    release = write_tiny_release(tmp_path / "release", corrupt=(("S1", "Walking 1", "54138969"),))
    work = tmp_path / "work"
    assert extract(release, work, scheduler).exit_code == 1
    result = status(work)
    assert result.exit_code == EXIT_FAILED, result.output
    assert stage_line(result.output, "extract").split()[1] == "failed"
    assert "failed S1/Walking_1/54138969: DataError:" in result.output
    assert "cannot open video" in result.output


def test_config_round_trips_through_run_json(tmp_path):
    from pipeline.stages import get_stage

    stage = get_stage("sample")
    config = stage.make_config(h36m=tmp_path, selection=Selection(subjects=("S1",), frames=(2, 9), stride=None),
                               options={"points": 128, "crop": 64})
    assert config_from_json(stage.config_type, config_to_json(config)) == config


def test_status_shows_a_run_holding_the_lock(tmp_path):
    from pipeline.store import WorkDir

    with WorkDir(tmp_path).lock():
        result = status(tmp_path)
    assert f"a run holds WORK (pid {os.getpid()})" in result.output


def test_long_reasons_keep_their_start_and_their_end():
    from pipeline.orchestration.status import REASON_CHARS, _shorten

    reason = "failed S1/Walking_1/54138969: DataError: /" + "very/long/path/" * 20 + "x.mp4: cannot open video"
    short = _shorten(reason)
    assert len(short) == REASON_CHARS and "…" in short
    assert short.startswith("failed S1/Walking_1/54138969") and short.endswith("cannot open video")
