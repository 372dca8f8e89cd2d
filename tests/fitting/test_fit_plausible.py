"""The fitter's bodies are plausible: principal-range rotations, anatomical limits, recovered
twist, bounded shapes under a skeleton mismatch (fitting.smplify with fitting.joint_limits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fitting.joint_limits import BODY_JOINT_NAMES, bone_axes, limit_violation_deg, swing_twist
from fitting.rotations import principal_rotvec
from fitting.smplify import FitConfig, Fitter

SMALL = FitConfig(device="cpu", shape_frames=12, keyframe_iters=30, shape_start_iters=90, shape_pose_iters=15, shape_iters=10)


def _model(model_cache, dtype=torch.float32, batch_size=1):
    from fitting.bodymodel import load_body_model

    return load_body_model(model_cache / "bodymodel" / "SMPLX_NEUTRAL.npz", dtype=dtype, batch_size=batch_size,
                           num_betas=10, num_expression_coeffs=10, use_face_contour=False, flat_hand_mean=False)


def _forward(model, betas, body_pose, global_orient=None, transl=None):
    """smplx's own forward: (joints55 (T, 55, 3), vertices (T, V, 3)) float64."""
    t = body_pose.shape[0]
    z = lambda n: torch.zeros(t, n, dtype=torch.float64)  # noqa: E731
    out = model(betas=torch.as_tensor(betas, dtype=torch.float64)[None].expand(t, -1),
                body_pose=torch.as_tensor(body_pose, dtype=torch.float64).reshape(t, 63),
                global_orient=z(3) if global_orient is None else torch.as_tensor(global_orient, dtype=torch.float64),
                transl=z(3) if transl is None else torch.as_tensor(transl, dtype=torch.float64),
                jaw_pose=z(3), leye_pose=z(3), reye_pose=z(3), left_hand_pose=z(45), right_hand_pose=z(45),
                expression=z(10))
    return out.joints[:, :55].detach(), out.vertices.detach()


def test_rotation_past_pi_is_re_expressed_without_changing_the_mesh(model_cache):
    model = _model(model_cache, torch.float64, batch_size=4)
    rng = np.random.default_rng(5)
    axis = rng.normal(size=(4, 21, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = rng.uniform(0.0, 0.6, size=(4, 21, 1))
    angle[:, 19] += 2 * np.pi  # left wrist: a full turn more
    angle[:, 17] = np.pi + 0.7  # left elbow: past pi, the same as pi - 0.7 about -axis
    angle[0, 5] = 4 * np.pi + 0.1
    pose = torch.as_tensor(axis * angle)
    wrapped = principal_rotvec(pose)
    assert float(wrapped.norm(dim=-1).max()) <= np.pi + 1e-12
    assert torch.equal(wrapped[:, :5], pose[:, :5])  # already in range: unchanged
    assert float(wrapped[:, 17].norm(dim=-1).max()) == pytest.approx(np.pi - 0.7)
    _, v0 = _forward(model, np.zeros(10), pose.reshape(4, 63))
    _, v1 = _forward(model, np.zeros(10), wrapped.reshape(4, 63))
    assert float((v0 - v1).abs().max()) < 1e-7  # metres: float64 rounding of the 2π turns


def test_fitted_rotations_stay_principal_and_within_the_limits(model_cache):
    """A pose with arms raised and turned (large rotations) fitted from the rigid start."""
    model64 = _model(model_cache, torch.float64, batch_size=3)
    fitter = Fitter(_model(model_cache), SMALL)
    i = {n: k for k, n in enumerate(BODY_JOINT_NAMES)}
    pose = np.zeros((3, 21, 3))
    pose[:, i["left_shoulder"]] = [0.0, -0.9, -1.2]  # forward and down
    pose[:, i["right_shoulder"]] = [0.0, 1.2, 0.8]
    pose[:, i["left_elbow"], 1] = -1.6
    pose[:, i["right_elbow"], 1] = np.linspace(0.5, 1.5, 3)
    pose[:, i["left_knee"], 0] = 1.2
    pose[:, i["left_hip"], 0] = -1.0
    orient = np.array([[np.pi / 2, 0, 0], [2.5, 0.0, 1.0], [0.3, 2.9, 0.1]])
    joints, verts = _forward(model64, np.zeros(10), pose.reshape(3, 63), orient)
    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx

    mocap = h36m32_from_smplx(joints, verts[:, correspondence_vertex_ids()]).numpy()
    fit = fitter.fit_sequence(mocap, np.zeros(10))
    rv = np.concatenate([fit.global_orient[:, None], fit.body_pose.reshape(-1, 21, 3)], 1)
    assert np.linalg.norm(rv, axis=-1).max() <= np.pi + 1e-5
    axes = bone_axes(fitter.skinner.j_template.double())
    assert float(limit_violation_deg(torch.as_tensor(fit.body_pose, dtype=torch.float64).reshape(-1, 21, 3),
                                     axes).max()) < 1e-3
    assert fit.mpjpe_mm.max() < 2.0


def test_known_upper_arm_twist_is_recovered_within_its_limits(model_cache):
    """Left shoulder turned 40 deg about the arm (internal rotation), elbow bent 90 deg: the
    twist shows only through the forearm's direction, which the elbow's limits (a hinge) tie to it."""
    model64 = _model(model_cache, torch.float64, batch_size=2)
    fitter = Fitter(_model(model_cache), SMALL)
    axes = bone_axes(fitter.skinner.j_template.double())
    i = {n: k for k, n in enumerate(BODY_JOINT_NAMES)}
    twist = np.radians(40.0)
    pose = np.zeros((2, 21, 3))
    pose[:, i["left_shoulder"]] = (axes[i["left_shoulder"]].numpy() * twist)
    pose[:, i["left_shoulder"]] += [0.0, 0.0, -0.6]  # and lowered a little (a swing)
    pose[:, i["left_elbow"], 1] = -np.radians(90.0)
    pose[1, i["right_elbow"], 1] = np.radians(70.0)
    joints, verts = _forward(model64, np.zeros(10), pose.reshape(2, 63), np.array([[np.pi / 2, 0, 0]] * 2))
    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx

    mocap = h36m32_from_smplx(joints, verts[:, correspondence_vertex_ids()]).numpy()
    fit = fitter.fit_sequence(mocap, np.zeros(10))
    fitted = torch.as_tensor(fit.body_pose, dtype=torch.float64).reshape(-1, 21, 3)

    def arm_twist(body):  # the upper arm's twist against the chest: collar and shoulder both turn about ~x
        from scipy.spatial.transform import Rotation

        r = Rotation.from_rotvec(body[:, i["left_collar"]]) * Rotation.from_rotvec(body[:, i["left_shoulder"]])
        return np.degrees(swing_twist(torch.as_tensor(r.as_rotvec()), axes[i["left_shoulder"]])[1].numpy())

    got, want = arm_twist(fitted.numpy()), arm_twist(pose)
    assert abs(want[0] - 40.0) < 5.0
    # the twist can hide only inside the elbow's ab/adduction tolerance (the table's v range)
    from fitting.joint_limits import JOINT_LIMITS

    assert np.abs(got - want).max() < JOINT_LIMITS["left_elbow"].v_range[1], (got, want, fit.mpjpe_mm)
    assert float(limit_violation_deg(fitted, axes).max()) < 1e-3


def test_mini_mismatch_fit_keeps_a_plausible_shape(model_cache):
    """Mocap through a mismatched skeleton (offsets of 1-4 cm in the bone frames + 5 mm noise):
    the shape stays in |beta| <= 3 and close to the truth, the poses within the limits."""
    from common.rng import rng_for
    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx
    from fitting.smplx_params import body_world_rotations
    from pipeline.synthetic.motion import BodyDims, make_motion
    from pipeline.synthetic.release import mocap_offsets, offset_mocap

    frames = 24
    model64 = _model(model_cache, torch.float64, batch_size=frames)
    betas = np.clip(np.random.default_rng(11).normal(0.0, 0.8, 10), -2, 2)
    rest_j, rest_v = _forward(_model(model_cache, torch.float64), betas, np.zeros((1, 63)))
    dims = BodyDims.from_rest(rest_j[0].numpy(), rest_v[0].numpy())
    seqs, truth = [], []
    for k, action in enumerate(("Walking", "Greeting")):
        m = make_motion(action, frames, 50.0, dims, rng_for(2, "mini-mismatch", k))
        params = {"global_orient": m.global_orient, "body_pose": m.body_pose}
        j, v = _forward(model64, betas, m.body_pose, m.global_orient, m.pelvis - rest_j[0, 0].numpy())
        mocap = h36m32_from_smplx(j, v[:, correspondence_vertex_ids()]).numpy()
        mocap = offset_mocap(mocap, body_world_rotations(params["global_orient"], params["body_pose"]), mocap_offsets(2, "S1", (10.0, 40.0)))
        seqs.append(mocap + rng_for(2, "mini-noise", k).normal(0.0, 0.005, mocap.shape))
        truth.append(v.numpy())
    fitter = Fitter(_model(model_cache), SMALL)
    fitted, info = fitter.fit_shape(seqs)
    assert np.abs(fitted).max() <= 3.0
    _, v_true = _forward(_model(model_cache, torch.float64), betas, np.zeros((1, 63)))
    _, v_fit = _forward(_model(model_cache, torch.float64), fitted, np.zeros((1, 63)))
    rest_pve = float((v_true - v_fit).norm(dim=-1).mean()) * 1000
    assert rest_pve < 40.0, rest_pve
    assert info["skeleton_offsets_m"].shape == (32, 3)
    fit = fitter.fit_sequence(seqs[0], fitted, info["skeleton_offsets_m"])
    axes = bone_axes(fitter.skinner.j_template.double())
    assert float(limit_violation_deg(torch.as_tensor(fit.body_pose, dtype=torch.float64).reshape(-1, 21, 3),
                                     axes).max()) < 1e-3
    _, v_fit_seq = _forward(model64, fitted, fit.body_pose, fit.global_orient, fit.transl)
    pve = np.linalg.norm(v_fit_seq.numpy() - truth[0], axis=-1).mean() * 1000
    assert pve < 40.0, pve
