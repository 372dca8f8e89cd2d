"""Subset runs of the sample stage touch only the shards of their selection (issue 17, item 1),
and a split stride that the extracted frames cannot serve is an error (item 2).

A demo-like release (train S1, S8; test S9) is extracted, fitted exactly from its ground truth
and sampled whole; then one subject is sampled again. Every shard and index entry outside it
must stay byte-identical (and untouched: same mtime), and the validator must pass.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from helpers import extract_with_true_fit

from cli import main
from common.hashing import sha256_file
from pipeline.checks.validate import ValidateConfig, validate_shards

OPTIONS = ["--points", "64", "--crop", "32", "--samples-per-shard", "2", "--train-stride", "2",
           "--test-stride", "4", "--workers", "2", "--no-progress"]


@pytest.fixture(scope="module")
def demo_like_release(tmp_path_factory, model_cache):
    from pipeline.synthetic.release import SyntheticReleaseConfig, write_synthetic_release

    root = tmp_path_factory.mktemp("demo_like_release")
    config = SyntheticReleaseConfig(subjects=("S1", "S8", "S9"), sequences=((14, 1),), frames=6, scale=0.1,
                                    model_cache=str(model_cache), workers=1)
    return write_synthetic_release(root, config)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, demo_like_release, model_cache):
    work = tmp_path_factory.mktemp("work")
    extract_with_true_fit(work, demo_like_release, model_cache, stride=2, workers=2)
    result = CliRunner().invoke(main, ["sample", "--out", str(work), *OPTIONS])
    assert result.exit_code == 0, result.output
    return work


def snapshot(work):
    """Relative path → (sha256, mtime_ns) of every file under WORK/shards."""
    root = work / "shards"
    return {p.relative_to(root).as_posix(): (sha256_file(p), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def entries(work, split):
    index = json.loads((work / "shards" / split / "index.json").read_text())
    return {e["name"]: e for e in index["shards"]}


def test_shards_are_keyed_by_sequence_camera_and_block(sampled):
    names = sorted(entries(sampled, "protocol1-train"))
    # frames 0, 2, 4 (extract and train stride 2) in blocks of 2 → blocks 0 and 1 per camera
    assert names[:2] == ["shard-S1-Walking_1-54138969-00000.h5", "shard-S1-Walking_1-54138969-00001.h5"]
    assert len(names) == 2 * 2 * 4  # S1, S8 × 2 blocks × 4 cameras
    index = json.loads((sampled / "shards" / "protocol1-train" / "index.json").read_text())
    assert (index["samples"], index["frames"], index["stride"]) == (2 * 3 * 4, 2 * 3, 2)
    test = json.loads((sampled / "shards" / "protocol1-test" / "index.json").read_text())
    assert (test["samples"], test["frames"], test["stride"]) == (2 * 4, 2, 4)  # S9 frames 0, 4


def test_forced_subset_run_leaves_every_other_file_byte_identical(sampled, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(sampled, work)
    before, index_before = snapshot(work), entries(work, "protocol1-train")
    result = CliRunner().invoke(main, ["sample", "--out", str(work), "--subjects", "S1", "--force", *OPTIONS])
    assert result.exit_code == 0, result.output
    after = snapshot(work)
    assert set(after) == set(before)
    ours = {k for k in before if "-S1-" in k}
    assert len(ours) == 8
    for name in set(before) - ours - {"protocol1-train/index.json"}:
        assert after[name] == before[name], name  # same bytes and never rewritten
    for name in ours:  # rewritten (forced) with the same bytes: shards are deterministic
        assert after[name][0] == before[name][0] and after[name][1] != before[name][1], name
    assert entries(work, "protocol1-train") == index_before
    checked, problems = validate_shards(work / "shards", ValidateConfig(samples=2, points=16))
    assert problems == [] and checked == 4


def test_subset_run_with_another_stride_rewrites_only_its_part(sampled, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(sampled, work)
    before = snapshot(work)
    options = [o if o != "4" else "2" for o in OPTIONS]  # --test-stride 2
    result = CliRunner().invoke(main, ["sample", "--out", str(work), "--subjects", "S9", *options])
    assert result.exit_code == 0, result.output
    after = snapshot(work)
    assert {k: v for k, v in after.items() if k.startswith("protocol1-train/")} == \
        {k: v for k, v in before.items() if k.startswith("protocol1-train/")}
    test = json.loads((work / "shards" / "protocol1-test" / "index.json").read_text())
    assert (test["samples"], test["stride"]) == (3 * 4, 2)  # frames 0, 2, 4 of S9
    assert sorted(e["name"] for e in test["shards"]) == sorted(
        p.name for p in (work / "shards" / "protocol1-test").glob("*.h5"))
    checked, problems = validate_shards(work / "shards", ValidateConfig(samples=1, points=16))
    assert problems == []


def test_plain_rerun_is_up_to_date_and_touches_nothing(sampled, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(sampled, work, copy_function=shutil.copy2)
    before = snapshot(work)
    result = CliRunner().invoke(main, ["sample", "--out", str(work), *OPTIONS])
    assert result.exit_code == 0, result.output
    assert "0 done" in result.output
    assert "  protocol1-train: 2 sequences, 6 frames, 24 samples in 16 shards (" in result.output
    assert "  protocol1-test: 1 sequences, 2 frames, 8 samples in 4 shards (" in result.output
    assert "MiB), every 4th frame" in result.output
    assert snapshot(work) == before


def test_a_stride_the_extracted_frames_cannot_serve_is_a_usage_error(sampled, tmp_path):
    # extracted every 2nd frame: a test stride of 3 needs frame 3, which has no image
    options = [o if o != "4" else "3" for o in OPTIONS]
    result = CliRunner().invoke(main, ["sample", "--out", str(sampled), "--dry-run", *options])
    assert result.exit_code == 2, result.output
    assert "the test part takes every 3rd frame (--test-stride 3)" in result.output
    assert "only at every 2nd frame (extract --stride 2)" in result.output
    assert "only multiples of 6 could be sampled" in result.output


def test_readme_commands_after_a_demo_like_run_are_up_to_date(sampled, tmp_path):
    """The demo passes its options to run_stages (crop, points, strides …); a plain `sample --out`
    or `extract --out` afterwards reads them back from WORK/params.yaml: nothing to redo."""
    from pipeline.orchestration.api import run_stages

    work = tmp_path / "work"
    shutil.copytree(sampled, work)
    (work / "params.yaml").unlink()
    release = json.loads((work / "run.json").read_text())["stages"]["extract"]["config"]["h36m"]
    options = {"points": 64, "crop": 32, "samples_per_shard": 2, "train_stride": 2, "test_stride": 4}
    (ext,) = run_stages(["extract"], work, h36m=release, stride=2, workers=1, progress=False,
                        origin="`h36m-nvf demo`")
    (rep,) = run_stages(["sample"], work, options=options, workers=1, progress=False, origin="`h36m-nvf demo`")
    assert not ext.done and not rep.done
    before = snapshot(work)
    for command in (["sample", "--out", str(work)], ["extract", "--out", str(work)]):
        result = CliRunner().invoke(main, [*command, "--no-progress", "--workers", "1"])
        assert result.exit_code == 0, result.output
        assert " 0 done, " in result.output and "as last time" in result.output, result.output
    assert snapshot(work) == before
    text = (work / "params.yaml").read_text()
    assert "    crop: 32  # `h36m-nvf demo`\n" in text and "    test_stride: 4  # `h36m-nvf demo`\n" in text


def test_a_subset_run_with_other_settings_would_mix_a_split_and_is_refused(sampled):
    options = [o if o != "32" else "48" for o in OPTIONS]  # --crop 48 for S1 only
    result = CliRunner().invoke(main, ["sample", "--out", str(sampled), "--subjects", "S1", "--dry-run", *options])
    assert result.exit_code == 2, result.output
    assert "protocol1-train/index.json lists 8 shard(s) outside this selection (e.g. shard-S8-Walking_1-" in \
        result.output
    assert "made with other settings (image_size 32→48); one split must not mix them" in result.output


def test_a_failed_unit_leaves_an_index_that_lists_only_current_shards(sampled, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(sampled, work)
    (work / "images" / "S1" / "S1_Walking_1.54138969_000001.jpg").write_bytes(b"not a jpeg")
    result = CliRunner().invoke(main, ["sample", "--out", str(work), "--no-progress", "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert "1 failed" in result.output and "S1_Walking_1.54138969_000001.jpg" in result.output
    listed = entries(work, "protocol1-train")
    block0 = {f"shard-S1-Walking_1-{c}-00000.h5" for c in ("54138969", "55011271", "58860488", "60457274")}
    assert set(listed) == set(entries(sampled, "protocol1-train")) - block0
    for name, entry in listed.items():
        assert sha256_file(work / "shards" / "protocol1-train" / name) == entry["sha256"]
    assert validate_shards(work / "shards", ValidateConfig(samples=1, points=16))[1] == []
