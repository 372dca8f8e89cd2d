"""The synthetic Human3.6M release: layout, mocap consistency, exact ground truth, videos,
metadata round trip, determinism and injected quirks (tiny settings)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cdflib
import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.synthetic.release import SyntheticReleaseConfig, VideoQuirk, write_synthetic_release

CAMERAS = ("54138969", "55011271", "58860488", "60457274")
FRAMES = 6
SCALE = 0.2
SUBJECT_INDEX = {f"S{i}": i - 1 for i in range(1, 12)}


# --- releases (module scope: each costs a model generation and a few renders) ----------------


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """One work dir whose bodymodel/ keeps the generated model for the whole module."""
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def clean(tmp_path_factory, model_cache) -> Path:
    """S9 'Walking 1' through the CLI, no noise."""
    from cli import main

    out = tmp_path_factory.mktemp("clean") / "release"
    result = CliRunner().invoke(main, [
        "demo-data", str(out), "--subjects", "S9", "--sequences", "Walking-1",
        "--frames", str(FRAMES), "--scale", str(SCALE), "--workers", "1",
        "--model-cache", str(model_cache)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def quirky(tmp_path_factory, model_cache) -> Path:
    """S1 'WalkingDog 1' (S1-style name) with a short video, a corrupt one and marker noise."""
    out = tmp_path_factory.mktemp("quirky") / "release"
    config = SyntheticReleaseConfig(
        subjects=("S1",), sequences=((15, 1),), frames=FRAMES, scale=SCALE, seed=3,
        marker_noise_mm=5.0, workers=2, model_cache=model_cache,
        video_quirks=(VideoQuirk("S1", (15, 1), "55011271", drop_last=2),
                      VideoQuirk("S1", (15, 1), "60457274", corrupt=True)))
    return write_synthetic_release(out, config)


def _pose(path: Path) -> np.ndarray:
    return np.asarray(cdflib.CDF(str(path)).varget("Pose"), dtype=np.float64)


def _rotation_xyz(a):
    cx, cy, cz = np.cos(a)
    sx, sy, sz = np.sin(a)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def _w0(release: Path) -> np.ndarray:
    import xml.etree.ElementTree as ET

    text = ET.parse(release / "metadata.xml").getroot().findtext("w0")
    return np.array(text.strip("[] \n").split(), dtype=np.float64)


def _calibration(w0, subject: str, c: int):
    """Decode w0 by the documented layout (reference README), independently of pipeline code.

    Returns R cam_from_world, camera centre (mm), fx, fy, cx, cy, k1, k2, k3, pA, pB."""
    b = 6 * (c * 11 + SUBJECT_INDEX[subject])
    i = 264 + 9 * c
    return (_rotation_xyz(w0[b:b + 3]), w0[b + 3:b + 6], *w0[i:i + 9])


def _project_radial(X, fx, fy, cx, cy, k1, k2, k3, pA, pB):
    """Human3.6M ProjectPointRadial, float64, as written in the reference."""
    x, y = X[..., 0] / X[..., 2], X[..., 1] / X[..., 2]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tan = pA * y + pB * x
    xd = x * (radial + tan) + pB * r2
    yd = y * (radial + tan) + pA * r2
    return np.stack([fx * xd + cx, fy * yd + cy], axis=-1)


# --- layout -----------------------------------------------------------------------------------


def test_layout_uses_real_names(clean, quirky):
    for root, subject, base in ((clean, "S9", "Walking 1"), (quirky, "S1", "WalkingDog 1")):
        assert (root / "metadata.xml").is_file()
        assert (root / subject / "MyPoseFeatures" / "D3_Positions" / f"{base}.cdf").is_file()
        for cam in CAMERAS:
            assert (root / subject / "Videos" / f"{base}.{cam}.mp4").is_file()
            for kind in ("D3_Positions_mono", "D2_Positions"):
                assert (root / subject / "MyPoseFeatures" / kind / f"{base}.{cam}.cdf").is_file()
        assert (root / "groundtruth" / subject / f"{base}.npz").is_file()
        assert not list(root.rglob("*.tmp*")), "temporary files left behind"
        assert not (root / "bodymodel").exists()
    model = json.loads((clean / "groundtruth" / "model.json").read_text())
    assert model["model"]["seed"] == 0 and len(model["model"]["sha256"]) == 64


def test_cdf_shapes(clean):
    feats = clean / "S9" / "MyPoseFeatures"
    assert _pose(feats / "D3_Positions" / "Walking 1.cdf").shape == (1, FRAMES, 96)
    for cam in CAMERAS:
        assert _pose(feats / "D3_Positions_mono" / f"Walking 1.{cam}.cdf").shape == (1, FRAMES, 96)
        assert _pose(feats / "D2_Positions" / f"Walking 1.{cam}.cdf").shape == (1, FRAMES, 64)


def test_mono_and_2d_follow_the_calibration(clean):
    """D3_mono = R·D3 + t and D2 = ProjectPointRadial(D3_mono), recomputed in float64."""
    feats = clean / "S9" / "MyPoseFeatures"
    world = _pose(feats / "D3_Positions" / "Walking 1.cdf").reshape(FRAMES, 32, 3)
    w0 = _w0(clean)
    for c, cam in enumerate(CAMERAS):
        R, centre, *intr = _calibration(w0, "S9", c)
        mono = _pose(feats / "D3_Positions_mono" / f"Walking 1.{cam}.cdf").reshape(FRAMES, 32, 3)
        expected = (world - centre) @ R.T
        np.testing.assert_allclose(mono, expected, atol=2e-3)  # float32 CDFs, mm
        assert (mono[..., 2] > 1000).all(), "the person stands in front of every camera"
        d2 = _pose(feats / "D2_Positions" / f"Walking 1.{cam}.cdf").reshape(FRAMES, 32, 2)
        np.testing.assert_allclose(d2, _project_radial(mono, *intr), atol=1e-3)
        width, height = (200, 200)
        assert (d2[..., 0] > 0).all() and (d2[..., 0] < width).all()
        assert (d2[..., 1] > 0).all() and (d2[..., 1] < height).all()


# --- ground truth -----------------------------------------------------------------------------


def _smplx_forward(path: Path, params: dict):
    """smplx's own loader and forward (float64) of the ground-truth params."""
    import smplx

    T = params["transl"].shape[0]
    model = smplx.create(str(path), model_type="smplx", use_pca=False, flat_hand_mean=False,
                         num_betas=10, num_expression_coeffs=10, use_face_contour=True,
                         batch_size=T, dtype=torch.float64)
    kwargs = {k: torch.as_tensor(params[k], dtype=torch.float64) for k in (
        "global_orient", "body_pose", "transl", "left_hand_pose", "right_hand_pose",
        "jaw_pose", "leye_pose", "reye_pose", "expression")}
    kwargs["betas"] = torch.as_tensor(params["betas"], dtype=torch.float64)[None].expand(T, -1)
    with torch.no_grad():
        out = model(**kwargs)
    return path, out.vertices.numpy(), out.joints[:, :55].numpy()


def test_mocap_is_the_correspondence_of_the_true_body(clean, model_cache):
    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx

    gt = dict(np.load(clean / "groundtruth" / "S9" / "Walking 1.npz"))
    assert gt["betas"].shape == (10,) and gt["body_pose"].shape == (FRAMES, 63)
    assert gt["left_hand_pose"].shape == (FRAMES, 45) and gt["expression"].shape == (FRAMES, 10)
    path, vertices, joints = _smplx_forward(model_cache / "bodymodel" / "SMPLX_NEUTRAL.npz", gt)
    model = json.loads((clean / "groundtruth" / "model.json").read_text())["model"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model["sha256"]
    mocap = h36m32_from_smplx(torch.from_numpy(joints),
                              torch.from_numpy(vertices[:, correspondence_vertex_ids()])).numpy()
    np.testing.assert_allclose(gt["joints_h36m32"] * 1000, mocap * 1000, rtol=0, atol=1e-4)
    written = _pose(clean / "S9" / "MyPoseFeatures" / "D3_Positions" / "Walking 1.cdf")
    expected_mm = (mocap * 1000).reshape(1, FRAMES, 96)
    # float32 in the file: within half a float32 step of the exact value
    assert (np.abs(written - expected_mm) <= np.spacing(np.float32(np.abs(expected_mm)))).all()
    # a plausible person: feet on the floor (world z up), 1.4-2.1 m tall, inside the volume
    z = vertices[..., 2]
    assert np.all(np.abs(z.min(axis=1)) < 0.08)
    assert np.all((z.max(axis=1) > 1.4) & (z.max(axis=1) < 2.1))
    assert np.all(np.linalg.norm(vertices[..., :2].mean(axis=1), axis=-1) < 2.5)


def test_marker_noise_goes_into_the_mocap_only(quirky):
    gt = np.load(quirky / "groundtruth" / "S1" / "WalkingDog 1.npz")
    written = _pose(quirky / "S1" / "MyPoseFeatures" / "D3_Positions" / "WalkingDog 1.cdf")
    residual = written.reshape(FRAMES, 32, 3) - gt["joints_h36m32"] * 1000
    assert 3.5 < residual.std() < 6.5  # 576 draws of sigma 5 mm


# --- videos -----------------------------------------------------------------------------------


def _frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_videos_show_the_person_where_the_mocap_projects(clean):
    feats = clean / "S9" / "MyPoseFeatures"
    for cam in CAMERAS:
        frames = _frames(clean / "S9" / "Videos" / f"Walking 1.{cam}.mp4")
        assert len(frames) == FRAMES
        assert frames[0].shape == (200, 200, 3)
        d2 = _pose(feats / "D2_Positions" / f"Walking 1.{cam}.cdf").reshape(FRAMES, 32, 2)
        for i, frame in enumerate(frames):
            u, v = np.rint(d2[i, 0]).astype(int)  # pelvis
            # the backdrop varies only vertically: compare with the image's left edge
            person = frame[v - 1:v + 2, u - 1:u + 2].astype(float).mean(axis=(0, 1))
            backdrop = frame[v, :3].astype(float).mean(axis=0)
            assert np.abs(person - backdrop).max() > 25, (cam, i)


# --- metadata ---------------------------------------------------------------------------------


def test_metadata_round_trips(clean):
    from pipeline.release.metadata import default_metadata, read_metadata

    md = read_metadata(clean / "metadata.xml")
    real = default_metadata()
    assert md.mapping == real.mapping and md.camera_ids == real.camera_ids
    assert md.action_names == real.action_names and md.subjects == real.subjects
    assert md.frames["S9"][(14, 1)] == (FRAMES, FRAMES, FRAMES, FRAMES, 4 * FRAMES)
    assert md.resolution_hw["S9"] == ((200, 200),) * 4
    np.testing.assert_allclose(md.w0[:264], real.w0[:264], rtol=1e-12, atol=1e-9)  # extrinsics
    for c in range(4):  # intrinsics: focal lengths scale, distortion stays
        i = 264 + 9 * c
        np.testing.assert_allclose(md.w0[i:i + 2], real.w0[i:i + 2] * SCALE, rtol=2e-3)
        np.testing.assert_array_equal(md.w0[i + 4:i + 9], real.w0[i + 4:i + 9])


# --- determinism ------------------------------------------------------------------------------


def test_same_config_gives_identical_files(clean, tmp_path, model_cache):
    config = SyntheticReleaseConfig(subjects=("S9",), sequences=((14, 1),), frames=FRAMES,
                                    scale=SCALE, workers=2, model_cache=model_cache)
    again = write_synthetic_release(tmp_path / "again", config)
    files = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (clean / rel).read_bytes() == (again / rel).read_bytes(), rel


# --- quirks as the reader sees them -----------------------------------------------------------


def test_injected_quirks_show_up_in_read_release(quirky):
    from pipeline.release.h36m import read_release
    from pipeline.selection import Selection

    release = read_release(quirky, Selection(subjects=("S1",)))
    seq = release.sequence("S1", "WalkingDog 1")
    assert seq.action == "WalkDog" and seq.name == "WalkingDog_1"
    assert any("WalkingDog" in note for note in seq.quirks)
    assert seq.frame_counts["55011271"] == FRAMES - 2 and seq.frame_counts["mocap"] == FRAMES
    assert seq.num_frames == FRAMES - 2
    assert any("60457274" in p for p in seq.problems), seq.problems
    assert len(_frames(quirky / "S1" / "Videos" / "WalkingDog 1.55011271.mp4")) == FRAMES - 2


def test_bad_config_is_a_one_line_user_error(tmp_path):
    from cli import main

    result = CliRunner().invoke(main, ["demo-data", str(tmp_path / "x"), "--subjects", "S9",
                                       "--sequences", "Walking-7", "--frames", "2"])
    assert result.exit_code == 1 and "Walking-7" in result.output
    result = CliRunner().invoke(main, ["demo-data", str(tmp_path / "x"), "--subjects", "S9",
                                       "--frames", "2", "--scale", "0.5"])
    assert result.exit_code == 1 and "even" in result.output
