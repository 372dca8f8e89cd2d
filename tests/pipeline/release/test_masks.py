"""pipeline.release.masks and the release reader's optional features: MySegmentsMat files as
typed, lazily read per-frame masks; damaged, truncated, misaligned or missing files are
problems naming the file while the sequence goes on; ``inspect`` lists the features."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from pipeline.errors import DataError
from pipeline.release.h36m import read_release
from pipeline.release.masks import (
    mask_box,
    mask_path,
    open_mask_file,
    rectangle_mask,
    write_mask_file,
)

CAMERAS = ("54138969", "55011271", "58860488", "60457274")
W, H = 64, 48  # the tiny release's videos


def _masks(frames: int, width: int = W, height: int = H, shift: int = 0) -> list[np.ndarray]:
    return [rectangle_mask((5 + t + shift, 4, 20 + t + shift, 30), width, height) for t in range(frames)]


@pytest.fixture
def release(tiny_release, tmp_path):
    root = tmp_path / "release"
    shutil.copytree(tiny_release, root)
    for camera in CAMERAS:
        for kind in ("ground_truth_bb", "ground_truth_bs"):
            write_mask_file(mask_path(root, "S1", "Walking 1", camera, kind), _masks(12), W, H)
    return root


def test_written_file_reads_back_in_matlab_layout(tmp_path):
    masks = _masks(3)
    path = write_mask_file(tmp_path / "a.mat", masks, W, H)
    with h5py.File(path, "r") as f:  # as MATLAB stores it: (W, H), uint8, cell of references
        stored = f[f["Masks"][1, 0]][()]
        assert stored.shape == (W, H) and stored.dtype == np.uint8
        assert np.array_equal(stored.T == 1, masks[1])
    mask = open_mask_file(path, "ground_truth_bb")
    assert (mask.frames, mask.width, mask.height) == (3, W, H)
    assert all(np.array_equal(a, b) for a, b in zip(mask.read_many(range(3)), masks, strict=True))
    assert list(mask.box(2)) == [7, 4, 22, 30]
    assert mask_box(np.zeros((4, 4), bool)) is None
    with pytest.raises(DataError, match="a.mat: frame 3 out of range"):
        mask.read(3)


def test_release_records_masks_as_lazy_features(release):
    seq = read_release(release).sequence("S1", "Walking_1")
    assert {"ground_truth_bb", "ground_truth_bs"} <= set(seq.features)
    assert seq.feature_problems == () and seq.problems == ()
    mask = seq.mask("ground_truth_bs", "58860488")
    assert mask.frames == 12 and np.array_equal(mask.read(4), _masks(12)[4])
    other = read_release(release).sequence("S1", "Eating_2")  # no mask files: nothing to report
    assert not other.masks
    assert "missing mask file S1/MySegmentsMat/ground_truth_bb/Eating 2.54138969.mat" in other.feature_problems


def test_bad_mask_files_are_problems_naming_the_file(release):
    bb = lambda c: mask_path(release, "S1", "Walking 1", c, "ground_truth_bb")  # noqa: E731
    data = bb("54138969").read_bytes()
    bb("54138969").write_bytes(data[: len(data) // 3])  # truncated download
    write_mask_file(bb("55011271"), _masks(12, width=W + 2), W + 2, H)  # another camera's size
    write_mask_file(bb("58860488"), _masks(5), W, H)  # fewer frames than the sequence
    bb("60457274").unlink()
    seq = read_release(release).sequence("S1", "Walking_1")
    assert seq.problems == ()  # the sequence goes on
    text = "\n".join(seq.feature_problems)
    assert "Walking 1.54138969.mat: unreadable" in text or "Walking 1.54138969.mat: not" in text
    assert "Walking 1.55011271.mat: masks of 66x48, the video is 64x48 (misaligned)" in text
    assert "Walking 1.58860488.mat: 5 mask frames for 12 usable frames (truncated)" in text
    assert "missing mask file S1/MySegmentsMat/ground_truth_bb/Walking 1.60457274.mat" in text
    assert "ground_truth_bb" not in seq.masks and "ground_truth_bb" not in seq.features
    assert set(seq.masks["ground_truth_bs"]) == set(CAMERAS)


def test_inspect_shows_features_per_sequence(release):
    mask_path(release, "S1", "Walking 1", "60457274", "ground_truth_bs").unlink()
    result = CliRunner().invoke(main, ["inspect", str(release)])
    assert result.exit_code == 0, result.output
    walking = next(line for line in result.output.splitlines() if "Walking_1" in line)
    assert "bb" in walking and "bs(3/4)" in walking
    assert "feature problem: missing mask file" in walking
    assert "bb = ground_truth_bb" in result.output
