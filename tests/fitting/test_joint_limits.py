"""The anatomical joint-limit table and its swing/twist geometry (fitting.joint_limits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from fitting.joint_limits import (
    BODY_JOINT_NAMES,
    JOINT_LIMITS,
    bone_axes,
    check_table,
    limit_excess,
    limit_residual,
    limit_residual_jacobian,
    limit_violation_deg,
    swing_twist,
)


def test_table_covers_every_smplx_body_joint():
    from smplx.joint_names import JOINT_NAMES

    assert tuple(JOINT_NAMES[1:22]) == tuple(BODY_JOINT_NAMES)
    assert set(JOINT_LIMITS) == set(JOINT_NAMES[1:22])
    check_table()
    for name, lim in JOINT_LIMITS.items():
        assert lim.u_range[0] < 0 < lim.u_range[1], name
        assert lim.twist_range[0] < 0 < lim.twist_range[1], name


def test_swing_twist_round_trip_float64():
    rng = np.random.default_rng(3)
    axis = rng.normal(size=(500, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    rotvec = rng.normal(size=(500, 3)) * rng.uniform(0, 3.0, size=(500, 1))
    rotvec[:20] *= 1e-9  # near zero
    rotvec[20:40] = axis[20:40] * rng.uniform(-3, 3, size=(20, 1))  # pure twist
    swing, twist = swing_twist(torch.as_tensor(rotvec), torch.as_tensor(axis))
    swing, twist = swing.numpy(), twist.numpy()
    assert np.abs((swing * axis).sum(-1)).max() < 1e-12  # swing is perpendicular to the axis
    assert np.linalg.norm(swing, axis=-1).max() <= np.pi + 1e-12
    assert np.abs(twist).max() <= np.pi + 1e-12
    recomposed = Rotation.from_rotvec(swing) * Rotation.from_rotvec(twist[:, None] * axis)
    err = (recomposed * Rotation.from_rotvec(rotvec).inv()).magnitude()
    assert err.max() < 1e-10
    np.testing.assert_allclose(twist[20:40], ((rotvec[20:40] * axis[20:40]).sum(-1) + np.pi) % (2 * np.pi) - np.pi,
                               atol=1e-10)
    # the bone direction after the rotation is the swing's image of the axis
    moved = Rotation.from_rotvec(rotvec).apply(axis)
    np.testing.assert_allclose(Rotation.from_rotvec(swing).apply(axis), moved, atol=1e-10)


def _model_axes():
    # T-pose axes like the synthetic model's: legs down, arms out, spine up, feet forward-down.
    a = {n: (0.0, 1.0, 0.0) for n in BODY_JOINT_NAMES}
    for side, s in (("left", 1.0), ("right", -1.0)):
        a.update({f"{side}_hip": (0, -1, 0), f"{side}_knee": (0, -1, 0), f"{side}_ankle": (0, -0.4, 0.92),
                  f"{side}_foot": (0, -0.4, 0.92), f"{side}_collar": (s, 0.1, 0), f"{side}_shoulder": (s, 0, 0),
                  f"{side}_elbow": (s, 0, 0), f"{side}_wrist": (s, 0, 0)})
    ax = torch.tensor([a[n] for n in BODY_JOINT_NAMES], dtype=torch.float64)
    return ax / torch.linalg.norm(ax, dim=-1, keepdim=True)


def test_limits_known_poses():
    ax = _model_axes()
    i = {n: k for k, n in enumerate(BODY_JOINT_NAMES)}
    pose = torch.zeros(6, 21, 3, dtype=torch.float64)
    pose[1, i["left_knee"]] = torch.tensor([np.radians(90.0), 0, 0])  # knee flexed 90: fine
    pose[2, i["left_knee"]] = torch.tensor([np.radians(-40.0), 0, 0])  # hyperextended by 30 beyond 10
    pose[3, i["right_elbow"], 1] = np.radians(100.0)  # right elbow flexes about +y: fine
    pose[4, i["left_wrist"]] = torch.tensor([np.radians(200.0), 0, 0])  # 200 deg twist: 170 beyond 30
    pose[5, i["right_hip"]] = torch.tensor([np.radians(-90.0), 0, 0])  # hip flexed 90: fine
    viol = limit_violation_deg(pose, ax)
    assert viol.shape == (6, 21)
    assert float(viol[0].max()) == 0.0
    assert float(viol[1].max()) == 0.0
    assert viol[2, i["left_knee"]].item() == pytest.approx(30.0, abs=1e-6)
    assert float(viol[3].max()) == 0.0
    assert viol[4, i["left_wrist"]].item() == pytest.approx(360 - 200 - 30, abs=1e-6)  # 200 = -160 twist
    assert float(viol[5].max()) == 0.0


def test_mirror_symmetry_of_the_table():
    """A pose and its mirror image (left <-> right, rotvec (x, y, z) -> (x, -y, -z)) violate
    the limits by the same amounts."""
    ax = _model_axes()
    rng = np.random.default_rng(0)
    pose = torch.as_tensor(rng.normal(size=(200, 21, 3)) * 0.9)
    names = list(BODY_JOINT_NAMES)
    swap = [names.index(n.replace("left_", "X").replace("right_", "left_").replace("X", "right_")) for n in names]
    mirror = pose[:, swap] * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    s1, t1 = limit_excess(pose, ax)
    s2, t2 = limit_excess(mirror, ax)
    torch.testing.assert_close(s1[:, swap], s2, atol=1e-9, rtol=0)
    torch.testing.assert_close(t1[:, swap], t2, atol=1e-9, rtol=0)
    assert float((s1 > 0).double().mean()) > 0.05  # the random poses do reach the limits


def test_limit_residual_has_finite_jacobian_at_rest_and_beyond():
    ax = _model_axes()
    from torch.func import jacfwd

    for pose in (torch.zeros(63, dtype=torch.float64), torch.full((63,), 1.5, dtype=torch.float64)):
        jac = jacfwd(lambda p: limit_residual(p, ax))(pose)
        assert jac.shape == (42, 63)
        assert torch.isfinite(jac).all()


def test_limit_residual_jacobian_equals_autograd_float64():
    """The closed-form hinge Jacobian against autograd through the swing/twist split, on
    poses inside, beyond (swing and twist, both sides) and at rest; batched rows independent."""
    ax = _model_axes()
    rng = np.random.default_rng(5)
    pose = torch.as_tensor(rng.normal(size=(48, 63)) * rng.uniform(0.0, 1.6, size=(48, 1)))
    pose[0] = 0.0
    r, jac = limit_residual_jacobian(pose, ax)
    assert jac.shape == (48, 42, 63)
    torch.testing.assert_close(r, limit_residual(pose, ax), atol=0, rtol=0)
    full = torch.autograd.functional.jacobian(lambda p: limit_residual(p, ax), pose)  # (48, 42, 48, 63)
    rows = torch.arange(48)
    torch.testing.assert_close(jac, full[rows, :, rows], atol=1e-10, rtol=0)
    assert float(full.abs().sum()) == pytest.approx(float(full[rows, :, rows].abs().sum()))  # frames independent
    assert float((r > 0).double().mean()) > 0.2  # many hinges active
    assert float(jac[0].abs().max()) == 0.0  # rest: inside every range


def test_true_synthetic_motion_is_within_the_limits(model_cache):
    """Every behaviour of the synthetic release's motion is a plausible pose by the table."""
    import smplx

    from pipeline.synthetic.motion import BodyDims, make_motion

    model = smplx.create(str(model_cache / "bodymodel" / "SMPLX_NEUTRAL.npz"), model_type="smplx", use_pca=False)
    out = model(return_verts=True)
    joints, verts = out.joints[0, :55].detach().double(), out.vertices[0].detach().double().numpy()
    ax = bone_axes(joints)
    dims = BodyDims.from_rest(joints.numpy(), verts)
    for action in ("Walking", "Greeting", "Phoning", "Smoking", "Posing", "Directions", "SittingDown",
                   "Eating", "Waiting"):
        m = make_motion(action, 200, 50.0, dims, np.random.default_rng(7))
        viol = limit_violation_deg(torch.as_tensor(m.body_pose).unflatten(-1, (21, 3)), ax)
        worst = int(viol.max(0).values.argmax())
        assert float(viol.max()) == 0.0, (action, BODY_JOINT_NAMES[worst], float(viol.max()))
