"""Extract stage end to end through the CLI on a tiny release and a real dask cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import decoded_frames, tiny_frame, tiny_mocap_mm, write_tiny_release

from cli import main
from pipeline.orchestration.runner import get_client
from pipeline.release.h36m import read_mocap_world, read_release
from pipeline.release.metadata import default_metadata
from pipeline.store import WorkDir

CAMERAS = default_metadata().camera_ids
H36M_NVF = Path(sys.executable).with_name("h36m-nvf")


def extract(release, work, scheduler, *args):
    """Run ``h36m-nvf extract`` in-process on the session cluster; returns click's Result."""
    return CliRunner().invoke(main, ["extract", "--h36m", str(release), "--out", str(work),
                                     "--scheduler", scheduler, "--no-progress", *args])


def outputs(work: Path) -> dict[str, bytes]:
    """Every stage output (images, sequence files) by relative path; no records."""
    files = [*(work / "images").rglob("*"), *(work / "extract").rglob("*")]
    return {p.relative_to(work).as_posix(): p.read_bytes() for p in files
            if p.is_file() and "/done/" not in p.as_posix() and p.name != "failures.json"}


@pytest.fixture(scope="session")
def scheduler(dask_client):
    return dask_client.scheduler.address


def test_extract_tiny_release(tiny_release, tmp_path, scheduler):
    work = tmp_path / "work"
    result = extract(tiny_release, work, scheduler, "--stride", "3")
    assert result.exit_code == 0, result.output
    assert "10 units: 10 done, 0 skipped (up to date), 0 failed" in result.output

    # usable counts: Walking 1 has 12 frames everywhere, Eating 2 is cut to camera 2's 10
    usable = {"Walking 1": 12, "Eating 2": 10}
    expected = {f"S1_{b.replace(' ', '_')}.{cam}_{i + 1:06d}.jpg"
                for b, n in usable.items() for cam in CAMERAS for i in range(0, n, 3)}
    images = {p.name for p in (work / "images/S1").iterdir()}
    assert images == expected and len(images) == 2 * 4 * 4

    for basename, n in usable.items():
        seq = basename.replace(" ", "_")
        for cam_index, cam in enumerate(CAMERAS):
            reference = decoded_frames(tiny_release / "S1/Videos" / f"{basename}.{cam}.mp4")
            for i in range(0, n, 3):
                path = work / f"images/S1/S1_{seq}.{cam}_{i + 1:06d}.jpg"
                # byte-equal to an independent decode + the same JPEG encode
                ok, jpeg = cv2.imencode(".jpg", reference[i], [cv2.IMWRITE_JPEG_QUALITY, 95])
                assert ok and path.read_bytes() == jpeg.tobytes(), path
                # and it is the right frame: closest to the picture drawn for frame i
                image = cv2.imread(str(path)).astype(float)
                errors = [np.abs(image - tiny_frame(cam_index, j)).mean() for j in (i - 1, i, i + 1)]
                assert errors[1] < 10 and errors[1] < min(errors[0], errors[2]), (path, errors)

        record = json.loads((work / "extract/S1" / seq / "sequence.json").read_text())
        release_seq = read_release(tiny_release).sequence("S1", basename)
        assert record["cameras"] == [c.to_json() for c in release_seq.cameras]
        assert (record["basename"], record["sequence"], record["num_frames"]) == (basename, seq, n)
        assert record["action"] == {"Walking 1": "Walking", "Eating 2": "Eating"}[basename]
        assert record["subaction"] == 1 and record["fps"] == 50.0
        assert record["frame_counts"]["mocap"] == 12
        assert record["frame_counts"]["55011271"] == (10 if basename == "Eating 2" else 12)
        assert (record["quirks"] != []) == (basename == "Eating 2")  # truncation noted
        joints = np.load(work / "extract/S1" / seq / "joints_world.npy")
        assert joints.dtype == np.float32 and joints.shape == (n, 32, 3)
        action_id = 14 if basename == "Walking 1" else 4
        mm = tiny_mocap_mm("S1", action_id, 12)[:n].reshape(n, 32, 3)
        np.testing.assert_allclose(joints, mm / 1000.0, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(joints, read_mocap_world(release_seq.mocap_path)[:n].astype(np.float32))

    # everything up to date: nothing recomputed, and a dry run says so
    again = extract(tiny_release, work, scheduler, "--stride", "3")
    assert again.exit_code == 0 and "0 done, 10 skipped (up to date), 0 failed" in again.output
    dry = extract(tiny_release, work, scheduler, "--stride", "3", "--dry-run")
    assert dry.exit_code == 0
    assert dry.output.splitlines()[0] == "extract: 10 units, 0 would run, 10 up to date"
    assert "  skip  S1/Walking_1/54138969  up to date" in dry.output
    dry = extract(tiny_release, work, scheduler, "--stride", "4", "--cameras", "54138969", "--dry-run")
    lines = dry.output.splitlines()
    assert lines[0] == "extract: 4 units, 2 would run, 2 up to date"
    assert any(line.split() == ["run", "S1/Eating_2/54138969", "stale", "(options", "changed:",
                                "frames", "[0,", "10,", "3]→[0,", "9,", "4])"] for line in lines)
    forced = extract(tiny_release, work, scheduler, "--actions", "Walking", "--dry-run", "--force")
    assert ["run", "S1/Walking_1", "forced"] in [line.split() for line in forced.output.splitlines()]
    run_json = json.loads((work / "run.json").read_text())
    assert run_json["stages"]["extract"]["config"]["selection"]["stride"] == 3


def test_frame_range_and_default_stride(tiny_release, tmp_path, scheduler):
    work = tmp_path / "work"
    result = extract(tiny_release, work, scheduler, "--frames", "1:11", "--actions", "Walking_1",
                     "--cameras", "60457274")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (work / "images/S1").iterdir()) == [
        "S1_Walking_1.60457274_000002.jpg", "S1_Walking_1.60457274_000007.jpg"]  # stride 5
    assert np.load(work / "extract/S1/Walking_1/joints_world.npy").shape == (12, 32, 3)


def test_corrupt_video_fails_its_units_and_the_rest_completes(tmp_path, scheduler):
    release = write_tiny_release(tmp_path / "release", frames=6,
                                 corrupt=(("S1", "Walking 1", "58860488"),))
    bad = release / "S1/Videos/Walking 1.58860488.mp4"
    work = tmp_path / "work"
    result = extract(release, work, scheduler, "--stride", "2")
    assert result.exit_code == 1
    failures = json.loads((work / "extract/failures.json").read_text())
    assert {f["unit"] for f in failures} == {"S1/Walking_1", "S1/Walking_1/58860488"}
    assert all(str(bad) in f["reason"] for f in failures)
    assert f"FAILED  S1/Walking_1/58860488  DataError: {bad}: cannot open video" in result.output
    assert "10 units: 8 done, 0 skipped (up to date), 2 failed" in result.output
    assert len(list((work / "images/S1").iterdir())) == 7 * 3  # 4 + 3 cameras × frames 0, 2, 4
    kept = extract(release, work, scheduler, "--stride", "2", "--keep-going")
    assert kept.exit_code == 0 and "0 done, 8 skipped (up to date), 2 failed" in kept.output


def test_busy_work_dir_is_refused(tiny_release, tmp_path, scheduler):
    work = tmp_path / "work"
    with WorkDir(work).lock():
        result = extract(tiny_release, work, scheduler)
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {work}: another run holds this work dir (pid {os.getpid()}); "
                                     "wait for it to finish or pass --wait")
    assert not (work / "images").exists()


def test_missing_release_is_a_one_line_error(tmp_path, scheduler):
    (tmp_path / "empty").mkdir()
    result = extract(tmp_path / "empty", tmp_path / "work", scheduler)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'empty'}: no metadata.xml (is this a Human3.6M release root?)"


@pytest.fixture(scope="session")
def longer_release(tmp_path_factory):
    """4 sequences × 4 cameras of 60 frames at 96×72, for killing a run half-way."""
    root = tmp_path_factory.mktemp("longer_release")
    return write_tiny_release(root, sequences=((14, 1), (4, 1), (2, 1), (3, 1)), frames=60)


def test_kill_9_then_resume_gives_identical_outputs(longer_release, tmp_path, scheduler):
    reference = tmp_path / "reference"
    assert extract(longer_release, reference, scheduler, "--stride", "1").exit_code == 0

    work = tmp_path / "work"
    cmd = [str(H36M_NVF), "extract", "--h36m", str(longer_release), "--out", str(work),
           "--workers", "1", "--stride", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    done_dir = work / "extract/done"
    deadline = time.monotonic() + 120
    try:
        while not (done_dir.exists() and any(done_dir.rglob("*.done.json"))):
            assert proc.poll() is None and time.monotonic() < deadline, "run ended before any unit"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its scheduler and its workers
        proc.wait()
    time.sleep(0.5)  # let the dying workers' last writes land
    finished = {p: p.stat().st_mtime_ns for p in done_dir.rglob("*.done.json")}
    assert 0 < len(finished) < 20, "the kill should land mid-run"

    result = extract(longer_release, work, scheduler, "--stride", "1")
    assert result.exit_code == 0, result.output
    assert (f"20 units: {20 - len(finished)} done, {len(finished)} skipped (up to date), 0 failed"
            in result.output)
    assert all(p.stat().st_mtime_ns == m for p, m in finished.items())  # not recomputed
    assert not [p for p in work.rglob("*") if p.name.endswith(".tmp")]
    assert outputs(work) == outputs(reference)


def test_extract_through_a_real_dask_scheduler_and_worker(tiny_release, tmp_path):
    dask = Path(sys.executable).with_name("dask")
    info = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": "error"}
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        procs.append(subprocess.Popen([str(dask), "worker", "--scheduler-file", str(info),
                                       "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                       "--host", "127.0.0.1"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        work = tmp_path / "work"
        result = extract(tiny_release, work, address, "--actions", "Walking", "--stride", "6")
        assert result.exit_code == 0, result.output
        assert "5 units: 5 done" in result.output
        assert len(list((work / "images/S1").iterdir())) == 4 * 2
    finally:
        for p in reversed(procs):
            p.kill()  # test processes: no graceful shutdown needed
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ConnectionError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"):
        get_client("tcp://127.0.0.1:9", timeout="0.5s")


def test_run_chains_registered_stages(tiny_release, tmp_path, scheduler):
    work = tmp_path / "work"
    result = CliRunner().invoke(main, ["run", "--h36m", str(tiny_release), "--out", str(work),
                                       "--scheduler", scheduler, "--no-progress", "--to", "extract",
                                       "--actions", "Eating"])
    assert result.exit_code == 0, result.output
    assert "extract: 5 units: 5 done" in result.output
    shutil.rmtree(work)


def test_extract_keeps_the_protocol1_test_grid_beside_its_stride():
    from pipeline.selection import Selection
    from pipeline.stages.extract import ExtractConfig

    frames = ExtractConfig().frame_indices(400)
    assert set(range(0, 400, 5)) | set(range(0, 400, 64)) == set(frames)
    assert ExtractConfig(also_every=0).frame_indices(400) == list(range(0, 400, 5))
    # absolute multiples, as sample's parts take them, inside a --frames range
    ranged = ExtractConfig(selection=Selection(frames=(10, 200), stride=5)).frame_indices(400)
    assert {64, 128, 192} <= set(ranged) and min(ranged) == 10 and max(ranged) < 200


def test_a_stride_neither_grid_holds_is_a_usage_error():
    from pipeline.errors import SelectionError
    from pipeline.stages.extract import ExtractConfig
    from pipeline.stages.sample import check_stride_served

    available = ExtractConfig().frame_indices(400)
    check_stride_served("test", 64, "protocol1's test stride 64", "S9/Walking_1/1", available)
    with pytest.raises(SelectionError, match=r"images for only 12 of its 57 frames \(first missing: 7\)"):
        check_stride_served("test", 7, "--test-stride 7", "S9/Walking_1/1", available)
