"""Residual-form losses for the batched least-squares fitter.

The fitter writes every term as a residual vector (its squared norm is the energy, the
robust joint term via IRLS), so one Levenberg–Marquardt solver handles data, priors and
smoothness alike.
"""

from __future__ import annotations

import torch

M_TO_MM = 1000.0
"""Metres to millimetres (reports only; everything inside is metres)."""


def gmof_energy(err: torch.Tensor, sigma: float) -> torch.Tensor:
    """(..., N) Geman–McClure energy of point errors err (..., N, 3), metres^2."""
    sq = (err * err).sum(-1)
    return sigma * sigma * sq / (sigma * sigma + sq)


def per_joint_error_mm(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(..., J) Euclidean joint errors in mm of pred and target (..., J, 3) in metres."""
    return torch.linalg.norm(pred - target, dim=-1) * M_TO_MM


def neighbour_mean(x: torch.Tensor) -> torch.Tensor:
    """(T, C) mean of each frame's temporal neighbours (one neighbour at the ends; itself if T=1).

    The smoothness residual of frame t is ``x_t - neighbour_mean(x)_t`` (a scaled second
    difference in the interior), which the fitter applies with the neighbours held fixed.
    """
    if x.shape[0] < 2:
        return x.clone()
    prev = torch.cat([x[1:2], x[:-1]], 0)
    nxt = torch.cat([x[1:], x[-2:-1]], 0)
    return 0.5 * (prev + nxt)
