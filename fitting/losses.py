"""Residual-form losses for the batched least-squares fitter.

The fitter writes every term as a residual vector (its squared norm is the energy, the
robust joint term via IRLS), so one Levenberg–Marquardt solver handles data, priors and
smoothness alike.
"""

from __future__ import annotations

import torch

from common.units import MM_PER_M


def gmof_energy(err: torch.Tensor, sigma: float) -> torch.Tensor:
    """(..., N) Geman–McClure energy of point errors err (..., N, 3), metres^2."""
    sq = (err * err).sum(-1)
    return sigma * sigma * sq / (sigma * sigma + sq)


def per_joint_error_mm(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(..., J) Euclidean joint errors in mm of pred and target (..., J, 3) in metres."""
    return torch.linalg.norm(pred - target, dim=-1) * MM_PER_M


def neighbour_mean(x: torch.Tensor) -> torch.Tensor:
    """(T, C) smoothness anchor of each frame: the mean of its two temporal neighbours.

    The smoothness residual of frame t is ``x_t - neighbour_mean(x)_t``, half the second
    difference, which the fitter applies with the anchors held fixed. At the ends the anchor
    is chosen so that the residual is half the second difference of the first (last) three
    frames: a frame at constant velocity is not pulled back (the mean of the single
    neighbour would penalise the velocity itself). Fewer than 3 frames: the frames
    themselves (no smoothness).
    """
    if x.shape[0] < 3:
        return x.clone()
    mid = 0.5 * (x[:-2] + x[2:])
    first = 0.5 * x[:1] + x[1:2] - 0.5 * x[2:3]
    last = 0.5 * x[-1:] + x[-2:-1] - 0.5 * x[-3:-2]
    return torch.cat([first, mid, last], 0)
