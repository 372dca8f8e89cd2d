"""The sample stage and the independent validator on a real (tiny) synthetic pipeline run."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import extract_with_true_fit

from cli import main
from fitting.joint_sets import H36M17_FROM_H36M32
from pipeline.checks.validate import ValidateConfig, validate_shards
from pipeline.orchestration.api import run_stages

SPLIT = "protocol1-test"  # S9 is a protocol-1 test subject
SHARD0 = "shard-S9-Walking_1-54138969-00000.h5"  # one camera's block of frames 0, 3, 6, 9
SHARD1 = "shard-S9-Walking_1-55011271-00000.h5"


@pytest.fixture(scope="module")
def sampled_work(tmp_path_factory, synthetic_release, model_cache):
    work = tmp_path_factory.mktemp("work")
    extract_with_true_fit(work, synthetic_release, model_cache, stride=1, workers=2)
    reports = run_stages(["sample"], work, options={"test_stride": 3, "points": 512, "samples_per_shard": 8},
                         workers=2, progress=False)
    assert not reports[0].failed, reports[0].format()
    return work


def copy_split(work, tmp_path):
    """A modifiable copy of WORK with its own shards (images and model shared by copy)."""
    dst = tmp_path / "work"
    shutil.copytree(work, dst, ignore=shutil.ignore_patterns("done"))
    return dst


def rewrite_index_sha(split_dir):
    from sampling.shards import write_index

    write_index(split_dir)


def test_index_lists_every_shard_with_its_checksum(sampled_work):
    from common.hashing import sha256_file

    index = json.loads((sampled_work / "shards" / SPLIT / "index.json").read_text())
    assert index["samples"] == 4 * 4  # 4 cameras × frames 0, 3, 6, 9
    assert [s["name"] for s in index["shards"]] == [
        f"shard-S9-Walking_1-{c}-00000.h5" for c in ("54138969", "55011271", "58860488", "60457274")]
    assert [s["samples"] for s in index["shards"]] == [4] * 4
    for s in index["shards"]:
        assert sha256_file(sampled_work / "shards" / SPLIT / s["name"]) == s["sha256"]
    assert not (sampled_work / "shards" / "protocol1-train").exists()


def test_stored_joints_are_the_mocap_in_camera_space(sampled_work):
    seq = json.loads((sampled_work / "extract" / "S9" / "Walking_1" / "sequence.json").read_text())
    cams = {c["id"]: c for c in seq["cameras"]}
    mocap = np.load(sampled_work / "extract" / "S9" / "Walking_1" / "joints_world.npy").astype(np.float64)
    with h5py.File(sampled_work / "shards" / SPLIT / SHARD0) as f:
        for i in range(len(f["key"])):
            cam = cams[f["camera"].asstr()[i]]
            expected = mocap[f["frame"][i]][H36M17_FROM_H36M32] @ np.array(cam["R"]).T + np.array(cam["t"])
            np.testing.assert_allclose(f["joints"][i], expected, atol=1e-5)
            sdf = f["sdf"][i]
            assert (sdf < 0).mean() <= 0.5 and (sdf < 0).any()


def test_validate_passes_on_fresh_shards(sampled_work):
    checked, problems = validate_shards(sampled_work / "shards", ValidateConfig(samples=3, points=64))
    assert problems == [] and checked == 3


def test_validate_cli_ok(sampled_work):
    result = CliRunner().invoke(main, ["validate", str(sampled_work / "shards"), "--samples", "1", "--points", "32"])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def _corrupt_and_validate(sampled_work, tmp_path, corrupt, every_shard=False):
    """Corrupt shard 0 (or every shard, so that any checked sample shows it), then validate."""
    work = copy_split(sampled_work, tmp_path)
    split = work / "shards" / SPLIT
    for path in sorted(split.glob("*.h5")) if every_shard else [split / SHARD0]:
        corrupt(path)
    return validate_shards(work / "shards", ValidateConfig(samples=2, points=32))[1]


def test_validate_catches_a_flipped_byte(sampled_work, tmp_path):
    def flip(path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    problems = _corrupt_and_validate(sampled_work, tmp_path, flip)
    assert any("sha256" in p and SHARD0 in p for p in problems)


def test_validate_catches_a_truncated_file(sampled_work, tmp_path):
    def truncate(path):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    problems = _corrupt_and_validate(sampled_work, tmp_path, truncate)
    assert any(SHARD0 in p for p in problems)
    assert any("unreadable" in p or "sha256" in p for p in problems)


def test_validate_catches_sdf_off_by_1mm(sampled_work, tmp_path):
    def perturb(path):
        with h5py.File(path, "r+") as f:
            sdf = f["sdf"][()]
            f["sdf"][...] = sdf + 1e-3
        rewrite_index_sha(path.parent)  # the checksum passes: only the contents can tell

    problems = _corrupt_and_validate(sampled_work, tmp_path, perturb, every_shard=True)
    assert any("SDF off by" in p for p in problems)


def test_validate_catches_a_swapped_joint_pair(sampled_work, tmp_path):
    def swap(path):
        l_wrist, r_wrist = 13, 16  # h36m17 LWrist, RWrist
        with h5py.File(path, "r+") as f:
            for name in ("joints", "votes"):
                a = f[name][()]
                idx = (slice(None), l_wrist) if name == "joints" else (slice(None), slice(None), l_wrist)
                jdx = (slice(None), r_wrist) if name == "joints" else (slice(None), slice(None), r_wrist)
                a[idx], a[jdx] = a[jdx].copy(), a[idx].copy()
                f[name][...] = a
        rewrite_index_sha(path.parent)

    problems = _corrupt_and_validate(sampled_work, tmp_path, swap, every_shard=True)
    assert any("joints disagree" in p for p in problems)


def test_validate_cli_reports_failures_with_exit_1(sampled_work, tmp_path):
    work = copy_split(sampled_work, tmp_path)
    (work / "shards" / SPLIT / SHARD1).write_bytes(b"not hdf5")
    result = CliRunner().invoke(main, ["validate", str(work / "shards"), "--samples", "0"])
    assert result.exit_code == 1
    assert SHARD1 in result.output


def test_sampling_is_deterministic(sampled_work, tmp_path):
    from common.hashing import sha256_file

    work = copy_split(sampled_work, tmp_path)
    before = {p.name: sha256_file(p) for p in (work / "shards" / SPLIT).glob("*.h5")}
    run_stages(["sample"], work, options={"test_stride": 3, "points": 512, "samples_per_shard": 8},
               force=True, workers=1, progress=False)
    after = {p.name: sha256_file(p) for p in (work / "shards" / SPLIT).glob("*.h5")}
    assert before == after


def _shard_frames(split_dir) -> list[int]:
    frames = []
    for path in sorted(split_dir.glob("shard-*.h5")):
        with h5py.File(path) as f:
            frames += f["frame"][()].tolist()
    return frames


def test_sample_stride_option_sets_the_frame_stride_of_both_parts(sampled_work, tmp_path):
    """``sample --stride 2`` writes frames 0, 2, …, 8 (the split's own test stride, 64, would keep
    frame 0 only); ``--test-stride`` still overrides its part."""
    work = copy_split(sampled_work, tmp_path)
    shutil.rmtree(work / "shards")
    args = ["sample", "--out", str(work), "--points", "128", "--samples-per-shard", "64",
            "--workers", "1", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--stride", "2"])
    assert result.exit_code == 0, result.output
    frames = _shard_frames(work / "shards" / SPLIT)
    assert sorted(set(frames)) == [0, 2, 4, 6, 8] and len(frames) == 5 * 4  # × 4 cameras
    result = CliRunner().invoke(main, [*args, "--stride", "2", "--test-stride", "5"])
    assert result.exit_code == 0, result.output
    assert sorted(set(_shard_frames(work / "shards" / SPLIT))) == [0, 5]


def test_sample_with_another_body_model_than_the_fit_names_both_files(sampled_work, tmp_path):
    work = copy_split(sampled_work, tmp_path)
    with np.load(work / "bodymodel" / "SMPLX_NEUTRAL.npz", allow_pickle=True) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["v_template"] = arrays["v_template"] + 0.01  # a different (valid) model file
    other = tmp_path / "other" / "SMPLX_NEUTRAL.npz"
    other.parent.mkdir()
    np.savez(other, **arrays)
    result = CliRunner().invoke(main, ["sample", "--out", str(work), "--body-model", str(other),
                                       "--test-stride", "3", "--no-progress"])
    assert result.exit_code == 1
    # the error is one line (after the note on the options taken from WORK/params.yaml)
    line = "\n".join(x for x in result.output.strip().splitlines() if " as last time " not in x)
    assert "\n" not in line and "Traceback" not in line
    assert str(other) in line and str(work / "fit" / "S9" / "Walking_1.npz") in line
    assert "not the body model" in line


def test_unknown_or_bad_sample_options_are_usage_errors(sampled_work):
    runner = CliRunner()
    for bad, words in ((["--split", "protocol9"], "--split"), (["--joints", "h36m18"], "--joints"),
                       (["--points", "0"], "--points")):
        result = runner.invoke(main, ["sample", "--out", str(sampled_work), *bad])
        assert result.exit_code == 2 and words in result.output, result.output


def test_validate_outside_work_reports_the_crop_check_as_not_run(sampled_work, tmp_path):
    """A split copied away from its WORK has no source frames: the crop check cannot run; it
    is listed, fails without --allow-skipped, and no OpenCV warning comes before it."""
    split = tmp_path / "elsewhere" / "shards" / SPLIT
    shutil.copytree(sampled_work / "shards" / SPLIT, split)
    args = ["validate", str(split), "--samples", "1", "--points", "16",
            "--body-model", str(sampled_work / "bodymodel")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "NOT RUN:" in result.output and "crop check not run" in result.output
    assert "OK" not in result.output and "can't open" not in result.output
    assert "pass --allow-skipped" in result.output
    allowed = CliRunner().invoke(main, [*args, "--allow-skipped"])
    assert allowed.exit_code == 0, allowed.output
    assert "OK:" in allowed.output and "1 checks not run (allowed)" in allowed.output
