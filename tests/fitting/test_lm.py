"""fitting.lm.lm_batched: what ``converged`` means (sticky, a rejected step at a minimum
counts, converged problems are left alone), against closed-form minima."""

import numpy as np
import torch

from fitting.lm import lm_batched


def _rosenbrock(p, jacobian):
    """Residuals (10 (y - x^2), 1 - x) per row; minimum 0 at (1, 1)."""
    x, y = p[:, 0], p[:, 1]
    r = torch.stack([10 * (y - x * x), 1 - x], -1)
    jac = None
    if jacobian:
        jac = torch.zeros(p.shape[0], 2, 2, dtype=p.dtype)
        jac[:, 0, 0], jac[:, 0, 1], jac[:, 1, 0] = -20 * x, 10.0, -1.0
    return r, jac, (r * r).sum(-1)


def _linear(a: torch.Tensor, b: torch.Tensor):
    def fn(p, jacobian):
        r = (a @ p[..., None])[..., 0] - b
        return r, a.expand(p.shape[0], -1, -1) if jacobian else None, (r * r).sum(-1)
    return fn


def test_start_at_the_minimum_is_converged_after_one_rejected_step():
    a = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    best = np.linalg.lstsq(a.numpy(), b.numpy(), rcond=None)[0]
    p0 = torch.as_tensor(best)[None].clone()
    res = lm_batched(_linear(a, b), p0, iters=20, tol=1e-6)
    assert bool(res.converged.all())
    assert res.iterations == 1
    np.testing.assert_allclose(res.params[0].numpy(), best, atol=1e-12)


def test_linear_problems_converge_to_the_least_squares_solution():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    best = np.linalg.lstsq(a.numpy(), b.numpy(), rcond=None)[0]
    res = lm_batched(_linear(a, b), torch.randn(4, 3, generator=gen, dtype=torch.float64) * 10, iters=50, tol=1e-9)
    assert bool(res.converged.all()) and res.iterations < 50
    np.testing.assert_allclose(res.params.numpy(), np.tile(best, (4, 1)), atol=1e-6)


def test_far_from_the_minimum_is_not_converged():
    res = lm_batched(_rosenbrock, torch.tensor([[-1.2, 1.0]], dtype=torch.float64), iters=2, tol=1e-9)
    assert not bool(res.converged.any())
    assert float(res.cost[0]) > 1e-3


def test_converged_problems_are_not_updated_and_stay_converged():
    start = torch.tensor([[0.9, 0.8], [-1.2, 1.0]], dtype=torch.float64)  # near, far
    both = lm_batched(_rosenbrock, start, iters=200, tol=1e-8)
    alone = lm_batched(_rosenbrock, start[:1], iters=200, tol=1e-8)
    assert bool(both.converged.all())
    assert alone.iterations < both.iterations  # the far one kept the batch going
    assert torch.equal(both.params[0], alone.params[0])  # frozen once converged, bit for bit
    np.testing.assert_allclose(both.params.numpy(), np.ones((2, 2)), atol=1e-3)
