"""The synthetic release's stand-ins for the real release's other files: MySegmentsMat masks
read exactly as third-party readers do, the official bb recipe recomputed independently,
the bs silhouette against the rendered frame, D3_Angles / universal positions through
forward kinematics, and every CDF read identically by NASA's CDF library (spacepy)."""

from __future__ import annotations

import math
from pathlib import Path

import cdflib
import h5py
import numpy as np
import pytest
from helpers import decoded_frames

from pipeline.release.metadata import read_metadata

CAMERAS = ("54138969", "55011271", "58860488", "60457274")
BASENAME = "Walking 1"


def _spacepy_cdf():
    try:
        from spacepy import pycdf
    except ImportError as e:  # spacepy is a test dependency; its bundled libcdf may fail to load
        pytest.skip(f"spacepy's NASA CDF library unavailable: {e}")
    return pycdf


@pytest.fixture(scope="module")
def release(tmp_path_factory, model_cache) -> Path:
    """S9 Walking 1, 8 frames at scale 0.2, exact silhouettes."""
    from pipeline.synthetic.release import SyntheticReleaseConfig, write_synthetic_release

    out = tmp_path_factory.mktemp("features") / "release"
    return write_synthetic_release(out, SyntheticReleaseConfig(
        subjects=("S9",), sequences=((14, 1),), frames=8, scale=0.2, workers=1,
        model_cache=model_cache))


def _cameras(root: Path):
    meta = read_metadata(root / "metadata.xml")
    return meta, {c.id: c for c in (meta.camera("S9", i) for i in range(4))}


def _third_party_masks(path: Path) -> list[np.ndarray]:
    """As SPIN / mmhuman3d read them: object references, ``.T``, ``== 1``."""
    with h5py.File(path, "r") as f:
        return [f[f["Masks"][i, 0]][()].T == 1 for i in range(f["Masks"].shape[0])]


def _matlab_bb_recipe(joints_mm: np.ndarray, camera) -> np.ndarray:
    """H36MMyBBMask.process written out as MATLAB does it (1-based, W×H logical, column x)."""
    radii = np.full(32, 115.0)
    radii[[14, 15]] = 140.0  # 1-based 15, 16
    radii[[11, 12, 13]] = 260.0  # 1-based 12, 13, 14
    sphere = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    s = 1 / math.sqrt(3)
    sphere += [(a * s, b * s, c * s) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]
    uv = []
    for j in range(32):
        for d in sphere:
            X = joints_mm[j] / 1000.0 + radii[j] / 1000.0 * np.array(d)
            Xc = camera.R @ X + camera.t
            x, y = Xc[0] / Xc[2], Xc[1] / Xc[2]
            k1, k2, k3, pA, pB = camera.dist
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
            tan = pA * y + pB * x
            xd, yd = x * (radial + tan) + pB * r2, y * (radial + tan) + pA * r2
            uv.append((camera.K[0, 0] * xd + camera.K[0, 1] * yd + camera.K[0, 2],
                       camera.K[1, 1] * yd + camera.K[1, 2]))
    uv = np.array(uv)
    W, H = camera.width, camera.height
    m = np.floor(uv.min(0)).astype(int)
    M = np.ceil(uv.max(0)).astype(int)
    m = np.minimum(np.maximum(m, 1), [W, H])
    M = np.minimum(np.maximum(M, 1), [W, H])
    frame = np.zeros((W, H), dtype=bool)  # MATLAB's false(W, H): rows = x here ...
    frame[m[0] - 1:M[0], m[1] - 1:M[1]] = True  # ... as Frame(m(2):M(2), m(1):M(1)) transposed
    return frame.T  # image layout (H, W)


def test_masks_open_as_third_party_readers_do(release):
    for kind in ("ground_truth_bb", "ground_truth_bs"):
        for camera in CAMERAS:
            path = release / "S9" / "MySegmentsMat" / kind / f"{BASENAME}.{camera}.mat"
            with open(path, "rb") as fh:
                assert fh.read(19) == b"MATLAB 7.3 MAT-file"
            with h5py.File(path, "r") as f:
                assert f["Masks"].shape == (8, 1)
                assert f["Masks"].attrs["MATLAB_class"] == b"cell"
                first = f[f["Masks"][0, 0]]
                assert first.attrs["MATLAB_class"] == b"logical" and first.dtype == np.uint8
            masks = _third_party_masks(path)
            _, cams = _cameras(release)
            assert all(m.shape == (cams[camera].height, cams[camera].width) for m in masks)
            assert all(m.any() for m in masks)
            # SPIN's box: ys, xs = np.where(mask == 1)
            ys, xs = np.where(masks[0])
            assert xs.min() < xs.max() and ys.min() < ys.max()


def test_bb_masks_follow_the_official_recipe(release):
    meta, cams = _cameras(release)
    mocap = cdflib.CDF(str(release / "S9" / "MyPoseFeatures" / "D3_Positions" / f"{BASENAME}.cdf")).varget("Pose")[0]
    for camera in CAMERAS:
        masks = _third_party_masks(release / "S9" / "MySegmentsMat" / "ground_truth_bb" / f"{BASENAME}.{camera}.mat")
        for t in (0, 7):
            expected = _matlab_bb_recipe(mocap[t].reshape(32, 3).astype(np.float64), cams[camera])
            assert np.array_equal(masks[t], expected), (camera, t)


def test_bs_masks_are_the_rendered_person(release):
    """Pixels that differ from the empty backdrop in the video are the silhouette (up to the
    codec's error at the edges, and the largest-component step)."""
    from pipeline.synthetic.release import _backdrop_color
    from pipeline.synthetic.render import background

    _, cams = _cameras(release)
    for camera in CAMERAS[:2]:
        masks = _third_party_masks(release / "S9" / "MySegmentsMat" / "ground_truth_bs" / f"{BASENAME}.{camera}.mat")
        frames = decoded_frames(release / "S9" / "Videos" / f"{BASENAME}.{camera}.mp4")
        backdrop = background(cams[camera], _backdrop_color(0, camera)).astype(np.int16)
        for t in (0, 5):
            person = np.abs(frames[t].astype(np.int16) - backdrop).max(-1) > 30
            iou = (person & masks[t]).sum() / (person | masks[t]).sum()
            assert iou > 0.9, (camera, t, iou)


def test_bs_defects_option_degrades_the_silhouette(model_cache):
    from pipeline.synthetic.segments import (
        SilhouetteDefects,
        background_subtraction,
        largest_component,
    )

    silhouette = np.zeros((120, 80), bool)
    silhouette[10:110, 30:50] = True
    exact = background_subtraction(silhouette, None, np.random.default_rng(0))
    assert np.array_equal(exact, largest_component(silhouette)) and np.array_equal(exact, silhouette)
    noisy = background_subtraction(silhouette, SilhouetteDefects(missed_limb=1.0), np.random.default_rng(0))
    assert not np.array_equal(noisy, silhouette)
    assert (noisy & ~silhouette).any() and (silhouette & ~noisy).any()  # shadow added, holes/limb lost


def test_universal_positions_are_the_angles_on_the_shared_skeleton(release):
    """D3_Angles through forward kinematics on metadata.xml's skel_angles offsets gives
    D3_Positions_mono_universal; the universal bone lengths differ from the subject's own."""
    from pipeline.release.angles import forward_kinematics, matrix_from_zxy, zxy_from_matrix

    meta, cams = _cameras(release)
    features = release / "S9" / "MyPoseFeatures"
    angles = cdflib.CDF(str(features / "D3_Angles" / f"{BASENAME}.cdf")).varget("Pose")[0].astype(np.float64)
    assert angles.shape == (8, 78)
    offsets = np.array(meta.skel_angles_offsets_mm)
    world = forward_kinematics(angles, offsets, meta.joint_parents, meta.joint_names)
    mocap = cdflib.CDF(str(features / "D3_Positions" / f"{BASENAME}.cdf")).varget("Pose")[0].reshape(8, 32, 3)
    assert np.allclose(world[:, 0], mocap[:, 0], atol=0.01)  # same root trajectory
    for camera in CAMERAS:
        cam = cams[camera]
        universal = cdflib.CDF(str(features / "D3_Positions_mono_universal" / f"{BASENAME}.{camera}.cdf")).varget("Pose")[0]
        expected = world @ cam.R.T + cam.t * 1000.0
        assert np.abs(universal.reshape(8, 32, 3) - expected).max() < 0.05  # float32 mm
        mono = cdflib.CDF(str(features / "D3_Angles_mono" / f"{BASENAME}.{camera}.cdf")).varget("Pose")[0]
        in_cam = forward_kinematics(mono.astype(np.float64), offsets, meta.joint_parents, meta.joint_names)
        assert np.abs(in_cam - expected).max() < 0.1
    # bone lengths: universal are the shared ones, the mocap's are the subject's own
    femur = np.linalg.norm(world[:, 2] - world[:, 1], axis=-1)
    assert np.allclose(femur, np.linalg.norm(offsets[2]), atol=1e-3)
    # Euler round trip of the zxy convention
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.uniform(-170, 170, 50), rng.uniform(-80, 80, 50), rng.uniform(-170, 170, 50)])
    assert np.allclose(zxy_from_matrix(matrix_from_zxy(a)), a)


def test_nasa_cdf_library_reads_every_cdf_as_cdflib(release):
    """spacepy's bundled NASA CDF library, a second implementation, reads each file's Pose
    bit-identically to cdflib (shape, dtype and values)."""
    pycdf = _spacepy_cdf()
    files = sorted(release.rglob("*.cdf"))
    assert len(files) == 1 + 4 + 4 + 4 + 1 + 4  # D3_Positions(_mono, _universal), D2, D3_Angles(_mono)
    for path in files:
        ours = np.asarray(cdflib.CDF(str(path)).varget("Pose"))
        with pycdf.CDF(str(path)) as cdf:
            theirs = cdf["Pose"][...]
        assert theirs.shape == ours.shape and theirs.dtype == ours.dtype, path
        assert np.array_equal(theirs, ours), path


def test_demo_data_mask_options(tmp_path, model_cache):
    from click.testing import CliRunner

    from cli import main

    out = tmp_path / "release"
    args = ["demo-data", str(out), "--subjects", "S9", "--sequences", "Walking-1", "--frames", "2",
            "--scale", "0.2", "--workers", "1", "--model-cache", str(model_cache)]
    bad = CliRunner().invoke(main, [*args, "--masks", "ground_truth_box"])
    assert bad.exit_code != 0 and "mask kind 'ground_truth_box' is not one of" in bad.output
    assert "Traceback" not in bad.output
    ok = CliRunner().invoke(main, [*args, "--masks", "ground_truth_bs", "--mask-defects"])
    assert ok.exit_code == 0, ok.output
    assert [p.name for p in (out / "S9" / "MySegmentsMat").iterdir()] == ["ground_truth_bs"]
    masks = _third_party_masks(out / "S9" / "MySegmentsMat" / "ground_truth_bs" / f"{BASENAME}.54138969.mat")
    assert len(masks) == 2 and all(m.any() for m in masks)
