"""Bad input through the CLI (issue #9): one line naming the file and the problem, exit code 1
for data errors, no traceback without -v.

Only what no other test covers at the CLI level (see the audit in the report of issue #9):
malformed metadata.xml, a release with one broken sequence of each kind, a bad body model
given to a stage, a truncated shard / a folder without index for validate and the trainer,
h3wb-eval inputs with missing ids or wrong keypoint counts.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import tiny_mocap_mm, write_tiny_release

from cli import main
from pipeline.release.h36m import mocap_path, video_path, write_pose_cdf
from pipeline.release.metadata import default_metadata


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *needles, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="session")
def scheduler(dask_client):
    return dask_client.scheduler.address


# --------------------------------------------------------------------------- release


def test_malformed_w0_in_metadata_is_one_line(tmp_path):
    meta = tmp_path / "metadata.xml"
    from pipeline.release.metadata import write_metadata

    root = ET.parse(write_metadata(meta, default_metadata())).getroot()
    root.find("w0").text = "[1 2 3]"
    meta.write_text(ET.tostring(root, encoding="unicode"))
    assert_one_line_error(cli("inspect", tmp_path), meta, "holds 3 numbers, expected 300")
    assert_one_line_error(cli("extract", "--h36m", tmp_path, "--out", tmp_path / "work", "--dry-run"),
                          meta, "holds 3 numbers, expected 300")


@pytest.fixture(scope="module")
def broken_release(tmp_path_factory):
    """S1 with one broken sequence of each kind, an intact one (action 7) and a stray file;
    "Walking 1" camera 3 is a zero-byte video (its other cameras are fine)."""
    root = write_tiny_release(tmp_path_factory.mktemp("broken"), frames=4,
                              sequences=((14, 1), (4, 1), (2, 1), (3, 1), (7, 1)))
    cams = default_metadata().camera_ids
    video_path(root, "S1", "Walking 1", cams[2]).write_bytes(b"")
    nan = tiny_mocap_mm("S1", 4, 4)
    nan[2, 5] = np.nan
    write_pose_cdf(mocap_path(root, "S1", "Eating 2"), nan)
    write_pose_cdf(mocap_path(root, "S1", "Directions 1"), np.zeros((4, 10)))  # 10 values per frame
    mocap_path(root, "S1", "Discussion 1").unlink()  # videos, no mocap
    write_pose_cdf(mocap_path(root, "S1", "Greeting 1"), tiny_mocap_mm("S1", 5, 4))  # mocap, no videos
    (root / "S1" / "Videos" / "notes.txt").write_text("stray")
    return root


def test_broken_sequences_fail_one_line_each_and_the_rest_completes(broken_release, tmp_path, scheduler):
    root, work = broken_release, tmp_path / "work"
    result = cli("extract", "--h36m", root, "--out", work, "--scheduler", scheduler, "--no-progress")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    failed = {line.split()[1]: line.split(None, 2)[2] for line in result.output.splitlines()
              if line.startswith("  FAILED")}
    cdf = root / "S1/MyPoseFeatures/D3_Positions"
    zero = root / "S1/Videos/Walking 1.58860488.mp4"
    assert failed == {
        "S1/Directions_1": f"DataError: {cdf}/Directions 1.cdf: 'Pose' has dims [4, 10] in 1 record(s), "
                           "expected one record of (T, D)",
        "S1/Discussion_1": "DataError: missing mocap S1/MyPoseFeatures/D3_Positions/Discussion 1.cdf",
        "S1/Eating_2": f"DataError: {cdf}/Eating 2.cdf: NaN or infinite values in 1 frame(s), first at frame 2",
        "S1/Greeting_1": "DataError: missing video(s) for camera(s) 54138969, 55011271, 58860488, 60457274 "
                         "(S1/Videos/Greeting 1.54138969.mp4 ...)",
        "S1/Walking_1": f"DataError: {zero}: cannot open video",
        "S1/Walking_1/58860488": f"DataError: {zero}: cannot open video",
    }
    # the good units ran: the intact sequence (5 units), Walking 1's three other cameras and
    # the NaN sequence's cameras (its videos are fine)
    assert "extract: 18 units: 12 done, 0 skipped (up to date), 6 failed" in result.output
    assert len(list((work / "images/S1").glob("S1_Walking_1.*.jpg"))) == 3 * 1  # stride 5: frame 0
    kept = cli("extract", "--h36m", root, "--out", work, "--scheduler", scheduler, "--no-progress",
               "--keep-going")
    assert kept.exit_code == 0 and "0 done, 12 skipped (up to date), 6 failed" in kept.output


def test_inspect_lists_stray_files_and_one_sided_sequences(broken_release):
    result = cli("inspect", broken_release)
    assert result.exit_code == 0, result.output
    assert "  S1: unexpected file S1/Videos/notes.txt" in result.output
    assert "  S1 'Discussion 1': videos but no mocap" in result.output
    assert "  S1 'Greeting 1': mocap but no videos" in result.output


# --------------------------------------------------------------------------- body model given to a stage


@pytest.mark.parametrize("name, content, needle", [
    ("SMPLX_KID.npz", b"PK", "gender"),
    ("SMPLX_NEUTRAL.obj", b"v 0 0 0\n", "wrong file type"),
    ("SMPLX_NEUTRAL.npz", b"not a zip", "not a readable .npz"),
])
def test_bad_body_model_given_to_a_stage_is_one_line(tmp_path, name, content, needle):
    model = tmp_path / name
    model.write_bytes(content)
    assert_one_line_error(cli("h3wb", "--out", tmp_path / "work", "--body-model", model, "--no-progress"),
                          model, needle)


# --------------------------------------------------------------------------- shards


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from nvf.synthetic import write_synthetic_split
    from sampling.shards import ShardConfig

    config = ShardConfig(radius=0.3, num_points=64, image_size=32, sampler={"test": True})
    return write_synthetic_split(tmp_path_factory.mktemp("shards"), "train", 4, config, samples_per_shard=2)


def truncated_copy(split, tmp_path):
    import shutil

    bad = tmp_path / "train"
    shutil.copytree(split, bad)
    shard = bad / "shard-00001.h5"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    return bad, shard


def test_validate_names_a_truncated_shard(split, tmp_path):
    bad, shard = truncated_copy(split, tmp_path)
    result = cli("validate", bad, "--samples", "0")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert any(line.startswith(f"{shard}: ") for line in result.output.splitlines()), result.output


def test_trainer_names_a_truncated_shard_and_a_missing_index(split, tmp_path):
    bad, shard = truncated_copy(split, tmp_path)
    args = ("--run", tmp_path / "run", "--epochs", "1", "--points", "16", "--batch-size", "2",
            "--workers", "0", "--device", "cpu", "--no-progress")
    assert_one_line_error(cli("train", "--shards", bad, *args), shard, "cannot open as HDF5")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(cli("train", "--shards", empty, *args), empty / "index.json", "no shard index")


# --------------------------------------------------------------------------- h3wb-eval


def h3wb_json(path, ids, keypoints: int = 133):
    data = {str(i): {"keypoints_3d": {str(k): {"x": float(k), "y": 2.0 * k, "z": 1000.0 + i}
                                      for k in range(keypoints)}} for i in ids}
    path.write_text(json.dumps(data))
    return path


def test_h3wb_eval_missing_ids_and_wrong_keypoint_counts(tmp_path):
    gt = h3wb_json(tmp_path / "gt.json", range(4))
    missing = h3wb_json(tmp_path / "missing.json", [0, 1, 3])
    assert_one_line_error(cli("h3wb-eval", "--pred", missing, "--gt", gt), missing, "'2'")
    short = h3wb_json(tmp_path / "short.json", range(4), keypoints=17)
    assert_one_line_error(cli("h3wb-eval", "--pred", short, "--gt", gt), short, "17 keypoints_3d, expected 133")
    bad_gt = h3wb_json(tmp_path / "bad_gt.json", range(4), keypoints=132)
    assert_one_line_error(cli("h3wb-eval", "--pred", gt, "--gt", bad_gt), bad_gt, "expected 133")
    result = cli("h3wb-eval", "--pred", tmp_path / "nope.json", "--gt", gt)
    assert_one_line_error(result, tmp_path / "nope.json", "no such file")
