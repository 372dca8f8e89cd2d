"""Neural Voting Field vote targets and their decoding.

A vote of query point p towards joint j with radius r is ``[h, ux, uy, uz]`` with
``h = max(0, 1 - |j - p| / r)`` (closeness, 1 on the joint, 0 at distance r and beyond) and
``u = (j - p) / |j - p|`` (unit direction, 0 where h = 0 and where p is on the joint).
Decoding inverts it: ``ĵ = p + u (1 - h) r``; a joint is the h-weighted mean of the ĵ of the
points that vote for it. Functions are pure and batched over leading dims; they accept numpy
arrays or torch tensors and return the same kind (dtype and device from the inputs).
"""

from __future__ import annotations

import numpy as np
import torch

VOTE_CHANNELS = 4
"""Channels per vote: h, ux, uy, uz."""


def _as_tensor(x):
    return (torch.from_numpy(np.asarray(x)), True) if not torch.is_tensor(x) else (x, False)


def nvf_votes(points, joints, radius: float):
    """Vote targets of every point towards every joint.

    Args:
        points: (..., N, 3) query points, metres, any frame.
        joints: (..., J, 3) joints in the same frame, metres.
        radius: vote radius r in metres (> 0).

    Returns:
        (..., N, J, 4) ``[h, ux, uy, uz]``; numpy in → numpy out, torch in → torch out.
        Differentiable in torch (u's gradient is 0 where the vote is cut off).
    """
    if radius <= 0:
        raise ValueError(f"vote radius must be positive, got {radius}")
    p, was_numpy = _as_tensor(points)
    j, _ = _as_tensor(joints)
    dtype = torch.promote_types(p.dtype, j.dtype)
    p, j = p.to(dtype), j.to(dtype)
    offset = j.unsqueeze(-3) - p.unsqueeze(-2)  # (..., N, J, 3)
    sq = (offset * offset).sum(-1, keepdim=True)
    active = sq > 0
    # sqrt of a clamped value keeps the gradient finite on a joint (point == joint).
    dist = torch.sqrt(torch.where(active, sq, torch.ones_like(sq)))
    h = torch.clamp(1.0 - dist / radius, min=0.0)
    active = active & (h > 0)
    u = torch.where(active, offset / dist, torch.zeros_like(offset))
    h = torch.where(sq > 0, h, torch.ones_like(h))  # on the joint: h = 1, u = 0
    out = torch.cat([h, u], dim=-1)
    return out.numpy() if was_numpy else out


def decode_votes(points, votes, radius: float, weights=None):
    """Per-point joint estimates and (optionally) their weighted mean.

    Args:
        points: (..., N, 3) query points, metres.
        votes: (..., N, J, 4) ``[h, ux, uy, uz]`` (u is used as given: normalise predictions first).
        radius: vote radius r, metres.
        weights: optional (..., N, J) non-negative weights (e.g. h times a selection mask).

    Returns:
        Without weights: (..., N, J, 3) estimates ``p + u (1 - h) r`` in the points' frame.
        With weights: (..., J, 3) the weighted mean over N (zero total weight gives NaN).
    """
    p, was_numpy = _as_tensor(points)
    v, _ = _as_tensor(votes)
    dtype = torch.promote_types(p.dtype, v.dtype)
    p, v = p.to(dtype), v.to(dtype)
    h, u = v[..., :1], v[..., 1:]
    estimates = p.unsqueeze(-2) + u * (1.0 - h) * radius
    if weights is not None:
        w, _ = _as_tensor(weights)
        w = w.to(dtype).unsqueeze(-1)
        estimates = (w * estimates).sum(-3) / w.sum(-3)
    return estimates.numpy() if was_numpy else estimates
