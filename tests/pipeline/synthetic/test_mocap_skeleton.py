"""The synthetic release's mismatched mocap skeleton (demo-data --mocap-skeleton mismatched)."""

from __future__ import annotations

from pathlib import Path

import cdflib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

FRAMES = 8


@pytest.fixture(scope="module")
def mismatched(tmp_path_factory, model_cache) -> Path:
    """S9 'Walking 1' and 'Eating 1' through the CLI with the mismatched skeleton (5 mm noise by default)."""
    from cli import main

    out = tmp_path_factory.mktemp("mismatched") / "release"
    result = CliRunner().invoke(main, [
        "demo-data", str(out), "--subjects", "S9", "--sequences", "Walking-1,Eating-1", "--frames", str(FRAMES),
        "--scale", "0.1", "--workers", "1", "--model-cache", str(model_cache), "--mocap-skeleton", "mismatched",
        "--seed", "4"])
    assert result.exit_code == 0, result.output
    return out


def _smplx_frames(model_path: Path, gt: dict):
    """smplx's own forward of the true params: (joints55 (T, 55, 3), vertices (T, V, 3), world
    rotations (T, 55, 3, 3)) from smplx.lbs (independent of the release code)."""
    import smplx
    from smplx.lbs import batch_rigid_transform, batch_rodrigues

    t = gt["transl"].shape[0]
    model = smplx.create(str(model_path), model_type="smplx", use_pca=False, flat_hand_mean=False, num_betas=10,
                         num_expression_coeffs=10, use_face_contour=True, batch_size=t, dtype=torch.float64)
    keys = ("global_orient", "body_pose", "transl", "left_hand_pose", "right_hand_pose", "jaw_pose", "leye_pose",
            "reye_pose", "expression")
    kw = {k: torch.as_tensor(gt[k], dtype=torch.float64) for k in keys}
    kw["betas"] = torch.as_tensor(gt["betas"], dtype=torch.float64)[None].expand(t, -1)
    with torch.no_grad():
        out = model(**kw)
        full = torch.cat([kw["global_orient"], kw["body_pose"], kw["jaw_pose"], kw["leye_pose"], kw["reye_pose"],
                          kw["left_hand_pose"], kw["right_hand_pose"]], 1).reshape(t, -1, 3) + model.pose_mean.reshape(1, -1, 3)
        rest = model.J_regressor @ (model.v_template + torch.einsum("vcb,tb->tvc", model.shapedirs[..., :10],
                                                                   kw["betas"]))
        _, transforms = batch_rigid_transform(batch_rodrigues(full.reshape(-1, 3)).reshape(t, -1, 3, 3), rest,
                                              model.parents)
    return out.joints[:, :55].numpy(), out.vertices.numpy(), transforms[..., :3, :3].numpy()


def test_mismatched_mocap_differs_from_the_correspondence_by_the_offsets(mismatched, model_cache):
    from fitting.correspondence import (
        H36M32_BONE_FRAME,
        correspondence_vertex_ids,
        h36m32_from_smplx,
    )
    from fitting.joint_sets import H36M32, SMPLX55
    from pipeline.synthetic.release import mocap_offsets

    expected = mocap_offsets(4, "S9", (10.0, 40.0))
    lengths = np.linalg.norm(expected, axis=-1) * 1000
    assert lengths.min() >= 10.0 and lengths.max() <= 40.0 and lengths.std() > 5.0
    frame = [SMPLX55.index(H36M32_BONE_FRAME[n]) for n in H36M32.names]
    for basename in ("Walking 1", "Eating 1"):
        gt = dict(np.load(mismatched / "groundtruth" / "S9" / f"{basename}.npz"))
        np.testing.assert_array_equal(gt["mocap_offsets_m"], expected)  # fixed per subject
        joints, verts, rot = _smplx_frames(model_cache / "bodymodel" / "SMPLX_NEUTRAL.npz", gt)
        through = h36m32_from_smplx(torch.from_numpy(joints), torch.from_numpy(verts[:, correspondence_vertex_ids()]))
        np.testing.assert_allclose(gt["joints_h36m32_correspondence"], through.numpy(), rtol=0, atol=1e-9)
        # the mocap minus the correspondence, seen in each joint's parent-bone frame, is the offset
        local = np.einsum("tjba,tjb->tja", rot[:, frame], gt["joints_h36m32"] - through.numpy())
        np.testing.assert_allclose(local, np.broadcast_to(expected, local.shape), rtol=0, atol=1e-9)
        # ... which moves with the body in the world (not a constant world shift)
        world = gt["joints_h36m32"] - through.numpy()
        assert np.abs(world - world[:1]).max() > 1e-3


def test_mismatched_marker_noise_is_5mm_on_top_of_the_offsets(mismatched):
    residuals = []
    for basename in ("Walking 1", "Eating 1"):
        gt = np.load(mismatched / "groundtruth" / "S9" / f"{basename}.npz")
        written = np.asarray(cdflib.CDF(str(mismatched / "S9" / "MyPoseFeatures" / "D3_Positions" / f"{basename}.cdf"))
                             .varget("Pose"), dtype=np.float64).reshape(FRAMES, 32, 3)
        residuals.append(written - gt["joints_h36m32"] * 1000)
    r = np.concatenate(residuals).ravel()  # 1536 draws of sigma 5 mm
    assert abs(r.mean()) < 0.5
    assert 4.6 < r.std() < 5.4
    assert np.abs(r).max() < 6 * 5.0


def test_smplx_skeleton_has_no_offsets(tmp_path, model_cache):
    from pipeline.synthetic.release import SyntheticReleaseConfig, write_synthetic_release

    out = write_synthetic_release(tmp_path / "r", SyntheticReleaseConfig(
        subjects=("S1",), sequences=((14, 1),), frames=3, scale=0.1, workers=1, model_cache=model_cache))
    gt = np.load(out / "groundtruth" / "S1" / "Walking 1.npz")
    assert not gt["mocap_offsets_m"].any()
    np.testing.assert_array_equal(gt["joints_h36m32"], gt["joints_h36m32_correspondence"])


def test_bad_mocap_skeleton_is_a_one_line_error(tmp_path):
    from cli import main

    result = CliRunner().invoke(main, ["demo-data", str(tmp_path / "r"), "--mocap-skeleton", "vicon"])
    assert result.exit_code == 2 and "vicon" in result.output
    result = CliRunner().invoke(main, ["demo-data", str(tmp_path / "r"), "--mocap-offset-mm", "30", "10",
                                       "--frames", "2", "--scale", "0.1"])
    assert result.exit_code != 0 and "mocap offsets" in result.output and "Traceback" not in result.output
