"""NVF vote targets and decoding (sampling/votes.py) against the documented formulas."""

import numpy as np
import pytest
import torch

from sampling.votes import decode_votes, nvf_votes


def reference_vote(p, j, r):
    """Scalar float64 recomputation of the README formula for one point and joint."""
    d = np.linalg.norm(np.subtract(j, p))
    h = max(0.0, 1.0 - d / r)
    u = np.subtract(j, p) / d if h > 0 and d > 0 else np.zeros(3)
    return np.array([h, *u])


def test_analytic_values():
    p = np.array([[0.0, 0.0, 0.0]])
    j = np.array([[0.1, 0.0, 0.0], [0.0, -0.3, 0.4], [0.0, 0.0, 0.05]])
    v = nvf_votes(p, j, 0.2)
    assert v.shape == (1, 3, 4)
    np.testing.assert_allclose(v[0, 0], [0.5, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(v[0, 1], [0, 0, 0, 0])  # 0.5 m away: beyond r
    np.testing.assert_allclose(v[0, 2], [0.75, 0, 0, 1], atol=1e-12)


def test_random_against_reference_and_types():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(7, 3)) * 0.2
    j = rng.normal(size=(5, 3)) * 0.2
    v = nvf_votes(p, j, 0.25)
    ref = np.array([[reference_vote(pi, jj, 0.25) for jj in j] for pi in p])
    np.testing.assert_allclose(v, ref, atol=1e-12)
    assert isinstance(v, np.ndarray) and v.dtype == np.float64
    vt = nvf_votes(torch.from_numpy(p).float(), torch.from_numpy(j).float(), 0.25)
    assert torch.is_tensor(vt) and vt.dtype == torch.float32
    np.testing.assert_allclose(vt.numpy(), ref, atol=1e-6)


def test_broadcasting_over_batch():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(2, 3, 6, 3)) * 0.2
    j = rng.normal(size=(2, 3, 4, 3)) * 0.2
    v = nvf_votes(p, j, 0.3)
    assert v.shape == (2, 3, 6, 4, 4)
    np.testing.assert_allclose(v[1, 2], nvf_votes(p[1, 2], j[1, 2], 0.3))
    # joints shared by every batch entry broadcast too
    v_shared = nvf_votes(p, j[0, 0], 0.3)
    np.testing.assert_allclose(v_shared[1, 1], nvf_votes(p[1, 1], j[0, 0], 0.3))


def test_edge_cases_on_joint_and_beyond_radius():
    j = np.array([[0.1, 0.2, 3.0]])
    p = np.array([[0.1, 0.2, 3.0], [0.1, 0.2, 3.25], [0.1, 0.2, 3.5]])  # binary-exact offsets
    v = nvf_votes(p, j, 0.25)
    np.testing.assert_allclose(v[0, 0], [1, 0, 0, 0])  # on the joint: h = 1, u = 0
    np.testing.assert_allclose(v[1, 0], [0, 0, 0, 0], atol=1e-12)  # exactly r away
    np.testing.assert_allclose(v[2, 0], [0, 0, 0, 0])  # beyond r
    with pytest.raises(ValueError):
        nvf_votes(p, j, 0.0)


def test_gradient_finite_and_matches_finite_differences():
    p = torch.tensor([[0.01, 0.02, -0.03], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    j = torch.tensor([[0.05, -0.02, 0.04], [0.0, 0.0, 0.0]], dtype=torch.float64)
    v = nvf_votes(p, j, 0.2)
    v.sum().backward()
    assert torch.isfinite(p.grad).all()  # includes a point sitting on a joint
    p2 = p.detach()[:1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: nvf_votes(x, j[:1], 0.2), (p2,))


def test_decode_inverts_votes():
    rng = np.random.default_rng(2)
    j = rng.normal(size=(4, 3)) * 0.1
    p = j[rng.integers(0, 4, 50)] + rng.normal(size=(50, 3)) * 0.05
    v = nvf_votes(p, j, 0.3)
    est = decode_votes(p, v, 0.3)
    active = v[..., 0] > 0
    np.testing.assert_allclose(est[active], np.broadcast_to(j, est.shape)[active], atol=1e-12)
    joints = decode_votes(p, v, 0.3, weights=v[..., 0])
    np.testing.assert_allclose(joints, j, atol=1e-12)
    jt = decode_votes(torch.from_numpy(p), torch.from_numpy(v), 0.3, torch.from_numpy(v[..., 0]))
    np.testing.assert_allclose(jt.numpy(), j, atol=1e-12)
