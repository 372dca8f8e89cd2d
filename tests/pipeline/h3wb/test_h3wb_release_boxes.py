"""h3wb on a synthetic release with MySegmentsMat masks: the RGB tasks' ``bbox`` is the
official ground_truth_bb box, and the VideoPose3D-style npz holds every fitted frame."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from helpers import extract_with_true_fit

from pipeline.errors import SelectionError
from pipeline.orchestration.api import run_stages


@pytest.fixture(scope="module")
def work(tmp_path_factory, synthetic_release, model_cache):
    work = tmp_path_factory.mktemp("h3wb-boxes")
    extract_with_true_fit(work, synthetic_release, model_cache, stride=2, workers=1)
    return work


def _spin_box(path: str, frame: int) -> dict:
    with h5py.File(path, "r") as f:  # as SPIN's preprocessing reads it
        ys, xs = np.where(f[f["Masks"][frame, 0]][()].T == 1)
    return {"x_min": int(xs.min()), "y_min": int(ys.min()), "x_max": int(xs.max()), "y_max": int(ys.max())}


def test_rgb_boxes_are_the_official_ones_and_the_npz_every_frame(work):
    (report,) = run_stages(["h3wb"], work, options={"train": "S9", "test": ""}, workers=1, progress=False)
    assert not report.failed, report.format()
    seq = json.loads((work / "extract" / "S9" / "Walking_1" / "sequence.json").read_text())
    manifest = json.loads((work / "h3wb" / "manifest_train.json").read_text())
    rows = {r[0]: r for r in manifest["provenance"]["rows"]}
    rgb = json.loads((work / "h3wb" / "RGBto3D_train.json").read_text())
    assert len(rgb) == 5 * 4  # images at stride 2 of 10 frames, 4 cameras
    for sample_id, sample in rgb.items():
        _, _, _, camera, frame = rows[sample_id]
        assert sample["bbox"] == _spin_box(seq["masks"]["ground_truth_bb"][camera]["path"], frame)
    assert manifest["bbox"] == {"source": "official", "official": 20, "from_keypoints": 0}
    npz = np.load(work / "h3wb" / "videopose3d_train.npz", allow_pickle=True)
    action = npz["train_data"].item()["S9"]["Walking 1"]
    assert list(action["frame_id"]) == list(range(10))  # every fitted frame, not only those with images


def test_keypoint_boxes_on_request_and_bad_values(work):
    from pipeline.stages.h3wb import H3WBConfig

    (report,) = run_stages(["h3wb"], work, options={"train": "S9", "test": "", "bbox": "keypoints"},
                           force=True, workers=1, progress=False)
    assert not report.failed, report.format()
    manifest = json.loads((work / "h3wb" / "manifest_train.json").read_text())
    assert manifest["bbox"]["official"] == 0
    with pytest.raises(SelectionError, match="--bbox: unknown value 'mask'"):
        H3WBConfig(bbox="mask")
