"""fitting.rotations' quaternion helpers and interpolation, against scipy's rotations."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation, Slerp

from fitting.rotations import interpolate_rotvec, quat_of_rotvec, rotvec_of_quat


def _angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (Rotation.from_rotvec(a) * Rotation.from_rotvec(b).inv()).magnitude()


def test_quaternion_round_trip_and_principal_range():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(400, 3)) * rng.uniform(0, 6.0, size=(400, 1))  # norms past 2 pi too
    r[:10] *= 1e-9
    w, v = quat_of_rotvec(torch.as_tensor(r))
    np.testing.assert_allclose((w * w + (v * v).sum(-1)).numpy(), 1.0, atol=1e-12)
    back = rotvec_of_quat(w, v).numpy()
    assert np.linalg.norm(back, axis=-1).max() <= np.pi + 1e-12
    assert _angle_between(back, r).max() < 1e-10


def test_interpolation_follows_the_shorter_geodesic():
    rng = np.random.default_rng(1)
    r0 = rng.normal(size=(300, 3)) * 1.2
    r1 = r0 + rng.normal(size=(300, 3)) * 0.4
    r1[:50] = -r1[:50] * (1 - 2 * np.pi / np.linalg.norm(r1[:50], axis=-1, keepdims=True))  # the same rotations, long way
    for t in (0.0, 0.25, 0.5, 0.8, 1.0):
        got = interpolate_rotvec(torch.as_tensor(r0), torch.as_tensor(r1), torch.full((300,), t, dtype=torch.float64))
        want = np.stack([Slerp([0, 1], Rotation.from_rotvec(np.stack([a, b])))(t).as_rotvec() for a, b in zip(r0, r1)])
        err = _angle_between(got.numpy(), want)
        # exact at the ends and the middle; elsewhere the speed differs by O(arc^3)
        arc = _angle_between(r0, r1)
        assert (err <= (1e-10 if t in (0.0, 0.5, 1.0) else 0.02 * arc**3 + 1e-10)).all(), (t, err.max())
        assert np.linalg.norm(got.numpy(), axis=-1).max() <= np.pi + 1e-12


def test_interpolation_broadcasts_and_keeps_dtype():
    r0, r1 = torch.zeros(4, 22, 3), torch.full((4, 22, 3), 0.1)
    out = interpolate_rotvec(r0, r1, torch.full((4, 22), 0.5))
    assert out.shape == (4, 22, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((4, 22, 3), 0.05), atol=1e-6, rtol=0)
