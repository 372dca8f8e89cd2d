"""Batched Levenberg–Marquardt: many small independent least-squares problems at once.

Each problem b has parameters p_b (P,) and residuals r_b (R,); the solver keeps one damping
factor per problem, accepts a step only where the true energy drops and stops updating a
problem once it has converged (``LMResult.converged``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _solve_spd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x = a^-1 b for batched SPD a (..., n, n), b (..., n); float64 inside for stability."""
    a64, b64 = a.double(), b.double()
    chol, info = torch.linalg.cholesky_ex(a64)
    x = torch.cholesky_solve(b64[..., None], chol)[..., 0]
    bad = info != 0
    if bool(bad.any()):
        x = torch.where(bad[..., None], torch.linalg.lstsq(a64, b64[..., None]).solution[..., 0], x)
    return x.to(a.dtype)


@dataclass
class LMResult:
    params: torch.Tensor
    """(B, P) solution."""
    cost: torch.Tensor
    """(B,) final energy."""
    converged: torch.Tensor
    """(B,) bool, sticky: an accepted step lowered the energy by less than tol x (E + 1), or a
    rejected step came where the undamped Gauss-Newton model promises less than that
    (0.5 g^T A^-1 g, a minimum up to tol). Converged problems are not updated again."""
    iterations: int = 0


def lm_batched(fn, params: torch.Tensor, iters: int, tol: float, lam0: float = 1e-3, *,
               damping_floor: torch.Tensor | None = None, retract=None) -> LMResult:
    """Levenberg–Marquardt on B independent problems at once, with per-problem damping.

    Args:
        fn: ``fn(p (B, P), jacobian: bool) -> (r (B, R), J (B, R, P) or None, cost (B,))``:
            Gauss–Newton residuals (|r|^2 = cost except for IRLS-weighted robust terms) and
            the true energy; problems must be independent (row b depends on row b of p only).
        params: (B, P) start.
        damping_floor: optional (P,) lower bound of the diagonal that scales the damping
            (Marquardt's diag(J^T J)): directions the residuals barely see get damped like
            observed ones instead of taking unbounded steps. None: 1e-6.
        retract: optional ``retract(p (B, P), step (B, P)) -> trial (B, P)`` (default
            ``p + step``): where a step may be limited and the trial re-expressed (e.g.
            rotation vectors brought into their principal range).
    """
    b = params.shape[0]
    lam = params.new_full((b,), lam0)
    converged = torch.zeros(b, dtype=torch.bool, device=params.device)
    floor = params.new_full((params.shape[1],), 1e-6) if damping_floor is None else damping_floor.to(params)
    r, jac, cost = fn(params, True)
    done = 0
    for it in range(1, iters + 1):
        done = it
        a = jac.transpose(-1, -2) @ jac
        g = (jac.transpose(-1, -2) @ r[..., None])[..., 0]
        diag = torch.maximum(a.diagonal(dim1=-2, dim2=-1), floor)
        step = -_solve_spd(a + torch.diag_embed(lam[:, None] * diag), g)
        trial = params + step if retract is None else retract(params, step)
        r_new, jac_new, cost_new = fn(trial, True)
        threshold = tol * (cost + 1.0)
        accept = torch.isfinite(cost_new) & (cost_new < cost) & ~converged
        small_step = accept & ((cost - cost_new) < threshold)
        # A rejected step at a minimum: the undamped Gauss-Newton model promises less than tol.
        rejected = ~accept & ~converged
        converged = converged | small_step
        if bool(rejected.any()):  # only those rows: one more batched solve
            rows = torch.nonzero(rejected)[:, 0]
            converged[rows] |= predicted_decrease(a[rows], g[rows], floor) < threshold[rows]
        params = torch.where(accept[:, None], trial, params)
        r = torch.where(accept[:, None], r_new, r)
        jac = torch.where(accept[:, None, None], jac_new, jac)
        cost = torch.where(accept, cost_new, cost)
        lam = torch.where(accept, lam / 3, torch.where(converged, lam, lam * 4)).clamp(1e-9, 1e9)
        if bool(converged.all()):
            break
    return LMResult(params, cost, converged, done)


def predicted_decrease(a: torch.Tensor, g: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """(B,) the energy decrease an undamped Gauss-Newton step promises, 0.5 g^T A^-1 g, for
    A = J^T J (B, P, P) (plus 1e-9 x the damping scale for directions nothing sees) and the
    gradient g = J^T r (B, P)."""
    eps = 1e-9 * torch.maximum(a.diagonal(dim1=-2, dim2=-1), floor)
    x = _solve_spd(a + torch.diag_embed(eps), g)
    return 0.5 * (g * x).sum(-1)
