"""sample --crop-center bbox: crops centred on the release's official ground_truth_bb boxes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from helpers import extract_with_true_fit

from pipeline.errors import SelectionError
from pipeline.orchestration.api import run_stages
from pipeline.release.cameras import Camera, distort_h36m

SPLIT = "protocol1-test"


@pytest.fixture(scope="module")
def work(tmp_path_factory, synthetic_release, model_cache):
    work = tmp_path_factory.mktemp("crop-center")
    extract_with_true_fit(work, synthetic_release, model_cache, stride=1, workers=1)
    return work


def _crop_centres(split_dir):
    """(camera, frame, crop centre in distorted video pixels) of every stored sample."""
    rows = []
    for path in sorted(split_dir.glob("shard-*.h5")):
        with h5py.File(path) as f:
            for i in range(len(f["key"])):
                K = f["K"][i].astype(np.float64)
                rows.append((f["camera"].asstr()[i], int(f["frame"][i]), K))
    return rows


def _centre_in_video(K_crop, crop_px: int, camera: Camera) -> np.ndarray:
    """The crop's centre pixel pushed back through the lens model into the video image."""
    c = (crop_px - 1) / 2
    y = (c - K_crop[1, 2]) / K_crop[1, 1]
    x = (c - K_crop[0, 2] - K_crop[0, 1] * y) / K_crop[0, 0]
    xd, yd = distort_h36m(np.array([x, y]), camera.dist)
    return np.array([camera.K[0, 0] * xd + camera.K[0, 1] * yd + camera.K[0, 2], camera.K[1, 1] * yd + camera.K[1, 2]])


def test_crops_centre_on_the_official_boxes(work):
    reports = run_stages(["sample"], work, options={"test_stride": 5, "points": 64, "crop": 64,
                                                    "crop_center": "bbox"}, workers=1, progress=False)
    assert not reports[0].failed, reports[0].format()
    seq = json.loads((work / "extract" / "S9" / "Walking_1" / "sequence.json").read_text())
    cams = {c["id"]: Camera.from_json(c) for c in seq["cameras"]}
    rows = _crop_centres(work / "shards" / SPLIT)
    assert len(rows) == 4 * 2
    for camera_id, frame, K in rows:
        path = seq["masks"]["ground_truth_bb"][camera_id]["path"]
        with h5py.File(path, "r") as f:  # the box as SPIN reads it
            ys, xs = np.where(f[f["Masks"][frame, 0]][()].T == 1)
        box_centre = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2])
        assert np.abs(_centre_in_video(K, 64, cams[camera_id]) - box_centre).max() < 1e-3


def test_default_crop_centre_is_the_body_and_bad_values_are_usage_errors(work):
    from pipeline.stages.sample import SampleConfig

    assert SampleConfig().crop_center == "body"
    with pytest.raises(SelectionError, match="--crop-center: unknown value 'box'"):
        SampleConfig(crop_center="box")
