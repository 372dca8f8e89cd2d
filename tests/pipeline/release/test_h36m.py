"""pipeline.release.h36m: CDF I/O, the release reader on tiny real files, quirks, ``inspect``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from common.units import MM_PER_M
from pipeline.errors import DataError
from pipeline.release.h36m import (
    ACTIONS,
    CAMERA_IDS,
    SUBJECTS_WITH_DATA,
    image_name,
    read_mocap_world,
    read_pose_cdf,
    read_release,
    write_pose_cdf,
)
from pipeline.release.metadata import default_metadata, write_metadata
from pipeline.selection import build_selection

SIZE = 32  # tiny videos: SIZE × SIZE px


def _write_video(path: Path, frames: int, width: int = SIZE, height: int = SIZE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 50.0, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((height, width, 3), 20 * i, np.uint8))
    writer.release()


def _write_mocap(root: Path, subject: str, basename: str, frames: int) -> np.ndarray:
    pose = np.random.default_rng(frames).uniform(-1000, 1000, size=(frames, 96))
    path = root / subject / "MyPoseFeatures" / "D3_Positions" / f"{basename}.cdf"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_pose_cdf(path, pose, dtype=np.float64)
    return pose


def _sequence(root, subject, basename, cameras=CAMERA_IDS, video_frames=5, mocap_frames=5):
    for i, camera in enumerate(cameras):
        count = video_frames[i] if isinstance(video_frames, tuple) else video_frames
        _write_video(root / subject / "Videos" / f"{basename}.{camera}.mp4", count)
    if mocap_frames:
        _write_mocap(root, subject, basename, mocap_frames)


@pytest.fixture(scope="module")
def release_root(tmp_path_factory) -> Path:
    """S1: Directions 1 (counts 5/6/5/5, mocap 5), TakingPhoto 1 (renamed action),
    Walking 1 (2 videos, no mocap), Eating 2 (mocap only), a stray file; S11: Directions
    (the known-bad camera)."""
    root = tmp_path_factory.mktemp("release")
    write_metadata(root / "metadata.xml", default_metadata())
    _sequence(root, "S1", "Directions 1", video_frames=(5, 6, 5, 5), mocap_frames=5)
    _sequence(root, "S1", "TakingPhoto 1", mocap_frames=4)
    _sequence(root, "S1", "Walking 1", cameras=CAMERA_IDS[:2], mocap_frames=0)
    _write_mocap(root, "S1", "Eating 2", 3)
    (root / "S1" / "Videos" / "notes.txt").write_text("stray")
    _sequence(root, "S11", "Directions", video_frames=(3, 5, 5, 5), mocap_frames=5)
    return root


def test_constants_match_embedded_metadata():
    meta = default_metadata()
    assert CAMERA_IDS == meta.camera_ids
    assert set(SUBJECTS_WITH_DATA) <= set(meta.subjects)
    assert sorted(ACTIONS) == list(range(2, 17)) and ACTIONS[12] == "Photo"
    assert image_name("S5", "Waiting_1", "60457274", 3050) == "S5_Waiting_1.60457274_003051.jpg"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pose_cdf_round_trip(tmp_path, dtype):
    pose = np.random.default_rng(0).normal(size=(7, 96)) * 1000
    path = write_pose_cdf(tmp_path / "Walking 1.cdf", pose, dtype=dtype)
    back = read_pose_cdf(path)
    assert back.shape == (7, 96) and back.dtype == np.float64
    np.testing.assert_array_equal(back, pose.astype(dtype).astype(np.float64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Walking 1.cdf"]  # no tmp left over


def test_pose_cdf_is_h36m_shaped(tmp_path):
    import cdflib

    pose = np.arange(2 * 64, dtype=float).reshape(2, 64)
    path = write_pose_cdf(tmp_path / "a.cdf", pose)
    assert cdflib.CDF(str(path)).varget("Pose").shape == (1, 2, 64)


def test_read_mocap_world_in_metres(tmp_path):
    pose_mm = np.random.default_rng(1).uniform(-3000, 3000, size=(4, 96))
    path = write_pose_cdf(tmp_path / "m.cdf", pose_mm, dtype=np.float64)
    joints = read_mocap_world(path)
    assert joints.shape == (4, 32, 3)
    np.testing.assert_allclose(joints[2, 5], pose_mm[2, 15:18] / MM_PER_M)


def _bad_cdf(tmp_path, pose) -> Path:
    return write_pose_cdf(tmp_path / "bad.cdf", pose, dtype=np.float64)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "none.cdf", "pose file not found"),
        (lambda p: (p / "garbage.cdf").write_bytes(b"not a cdf at all") and p / "garbage.cdf",
         "unreadable CDF"),
        (lambda p: _bad_cdf(p, np.zeros((3, 10))), "expected (1, T, D)"),
        (lambda p: _bad_cdf(p, np.where(np.eye(3, 96) > 0, np.nan, 0.0)), "NaN or infinite values in 3"),
        (lambda p: _bad_cdf(p, np.pad(np.full((1, 96), np.inf), ((2, 0), (0, 0)))), "first at frame 2"),
    ],
)
def test_pose_cdf_errors(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError) as info:
        read_pose_cdf(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_mocap_needs_96_columns(tmp_path):
    path = write_pose_cdf(tmp_path / "d2.cdf", np.zeros((2, 64)))
    with pytest.raises(DataError, match="with D in"):
        read_mocap_world(path)


def test_read_release_records(release_root):
    release = read_release(release_root)
    names = [(s.subject, s.name) for s in release.sequences]
    assert names == [("S1", "Directions_1"), ("S1", "Eating_2"), ("S1", "TakingPhoto_1"),
                     ("S1", "Walking_1"), ("S11", "Directions")]  # mapping (action id) order

    d1 = release.sequence("S1", "Directions 1")
    assert (d1.action, d1.action_id, d1.subaction) == ("Directions", 2, 1)
    assert d1.frame_counts == {"54138969": 5, "55011271": 6, "58860488": 5, "60457274": 5, "mocap": 5}
    assert d1.num_frames == 5 and any("truncated to the shortest count 5" in q for q in d1.quirks)
    assert d1.problems == () and d1.skip_cameras == ()
    assert d1.videos["55011271"].name == "Directions 1.55011271.mp4"

    meta = default_metadata()
    for index, camera in enumerate(d1.cameras):
        assert (camera.width, camera.height) == (SIZE, SIZE)  # the video's own size
        reference = meta.camera("S1", index, SIZE, SIZE)
        np.testing.assert_array_equal(camera.R, reference.R)
        np.testing.assert_array_equal(camera.K, reference.K)
        assert camera.id == CAMERA_IDS[index]

    photo = release.sequence("S1", "TakingPhoto_1")
    assert photo.action == "Photo" and photo.num_frames == 4
    assert any("'TakingPhoto'" in q for q in photo.quirks)

    walking = release.sequence("S1", "Walking_1")
    assert walking.num_frames == 0 and set(walking.videos) == set(CAMERA_IDS[:2])
    assert any("missing mocap" in p for p in walking.problems)

    eating = release.sequence("S1", "Eating_2")
    assert eating.videos == {} and eating.num_frames == 3
    assert eating.cameras[0].height == 1002  # no video: size from metadata.xml's table

    s11 = release.sequence("S11", "Directions")
    assert s11.skip_cameras == ("54138969",)
    assert s11.num_frames == 5  # the corrupt camera's 3 frames do not count
    assert s11.usable_cameras == CAMERA_IDS[1:]

    problems = "\n".join(release.problems)
    assert "S1 'Walking 1': videos but no mocap" in problems
    assert "S1 'Eating 2': mocap but no videos" in problems
    assert "unexpected file S1/Videos/notes.txt" in problems
    assert "S11: 29 selected sequence(s) of metadata.xml have no files: 'Directions 1'," in problems
    assert "and 24 more" in problems


def test_selection_filters(release_root):
    selection = build_selection(subjects="S1", actions="Photo,Directions_1")
    release = read_release(release_root, selection)
    assert [s.name for s in release.sequences] == ["Directions_1", "TakingPhoto_1"]
    release = read_release(release_root, build_selection(subjects="S9"))
    assert release.sequences == () and any("S9: no folder" in p for p in release.problems)


def test_count_frames_off(release_root):
    release = read_release(release_root, build_selection(subjects="S1", actions="Directions"),
                           count_frames=False)
    seq = release.sequence("S1", "Directions_1")
    assert seq.frame_counts == {} and seq.num_frames is None
    assert (seq.cameras[0].width, seq.cameras[0].height) == (1000, 1002)


def test_unreadable_video_is_a_problem(tmp_path):
    write_metadata(tmp_path / "metadata.xml", default_metadata())
    _sequence(tmp_path, "S5", "Walking 1", mocap_frames=5)
    (tmp_path / "S5" / "Videos" / "Walking 1.58860488.mp4").write_bytes(b"\0" * 100)
    seq = read_release(tmp_path).sequence("S5", "Walking_1")
    assert "58860488" not in seq.frame_counts and seq.num_frames == 5
    assert any("Walking 1.58860488.mp4" in p for p in seq.problems)


def test_missing_root_and_metadata(tmp_path):
    with pytest.raises(DataError, match="release folder not found"):
        read_release(tmp_path / "nope")
    with pytest.raises(DataError, match="no metadata.xml"):
        read_release(tmp_path)


def test_inspect_cli(release_root):
    result = CliRunner().invoke(main, ["inspect", str(release_root), "--subjects", "S1,S11"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["subject", "sequence", "action", "sub"]
    row = next(line for line in lines if line.startswith("S1 ") and "Directions_1" in line)
    assert row.split()[:10] == ["S1", "Directions_1", "Directions", "1", "5", "6", "5", "5", "5", "5"]
    assert any("3*" in line for line in lines if line.startswith("S11"))
    assert "videos but no mocap" in result.output


def test_inspect_cli_errors(tmp_path):
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "release folder not found" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["inspect", str(tmp_path), "--frames", "9:3"])
    assert result.exit_code == 2
