"""Inference by voting: predicted SDF and votes at query points → joints.

Keep near-surface points (small |predicted SDF|), then per joint the top fraction of them by
predicted h, and average their estimates ``p + u (1 - h) r`` weighted by h (reference README,
NVF). Batched torch; also the query-point generator for a crop frustum grid.
"""

from __future__ import annotations

import torch

from sampling.votes import decode_votes


def select_near_surface(sdf, threshold: float, min_points: int):
    """(B, N) SDF → (B, N) bool: |sdf| < threshold, or the ``min_points`` smallest |sdf| if more."""
    near = sdf.abs() < threshold
    k = min(min_points, sdf.shape[-1])
    kth = sdf.abs().topk(k, dim=-1, largest=False).values[..., -1:]
    return near | (sdf.abs() <= kth)


def vote_weights(sdf, votes, sdf_threshold: float = 0.02, top_fraction: float = 0.5,
                 min_points: int = 16, min_h: float = 0.05):
    """Which points vote for which joint, and how much.

    Args:
        sdf: (B, N) (predicted) SDF, metres.
        votes: (B, N, J, 4) ``[h, u]``; only h is read (clamped to [0, 1]).
        sdf_threshold, top_fraction, min_points, min_h: as in :func:`vote_joints`.

    Returns:
        (weights (B, N, J), near (B, N) bool): the h-weights of the chosen voters (0 for
        the others; a joint whose chosen points all predict h = 0 gets weight 1 on each of
        them), and the near-surface mask.
    """
    h = votes[..., 0].clamp(0.0, 1.0)
    near = select_near_surface(sdf, sdf_threshold, min_points)
    near_j = near.unsqueeze(-1)  # (B, N, 1)
    # Candidates of a joint: near-surface points that vote for it at all (h > min_h); with 17
    # joints most near-surface points are out of a joint's radius, and their noisy small h
    # and arbitrary u would otherwise outweigh the real voters.
    candidates = (near_j & (h > min_h)).sum(1, keepdim=True)  # (B, 1, J)
    k = torch.clamp(torch.ceil(candidates * top_fraction), min=1).long()
    score = torch.where(near_j, h, torch.full_like(h, -1.0))  # (B, N, J)
    rank = score.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = largest h
    chosen = (rank < k) & near_j
    weights = torch.where(chosen, h, torch.zeros_like(h))
    # A joint whose chosen points all predict h = 0 gets their plain mean rather than NaN.
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, chosen.to(h.dtype))
    return weights, near


def _unit_votes(votes):
    """(..., 4) votes with h clamped to [0, 1] and u normalised."""
    u = votes[..., 1:]
    u = u / u.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    return torch.cat([votes[..., :1].clamp(0.0, 1.0), u], -1)


def vote_joints(points, sdf, votes, radius: float, sdf_threshold: float = 0.02,
                top_fraction: float = 0.5, min_points: int = 16, min_h: float = 0.05):
    """Joints from per-point predictions.

    Args:
        points: (B, N, 3) query points, camera frame, metres.
        sdf: (B, N) predicted SDF, metres.
        votes: (B, N, J, 4) predicted ``[h, u]`` (h is clamped to [0, 1], u normalised here).
        radius: vote radius r, metres (the shards' ``radius``).
        sdf_threshold: keep points with |sdf| below it (at least ``min_points`` per sample).
        top_fraction: per joint, the fraction of its candidates (kept points with h > min_h)
            with the largest h that vote (at least the single largest).

    Returns:
        (B, J, 3) joints, camera frame, metres.
    """
    weights, _ = vote_weights(sdf, votes, sdf_threshold, top_fraction, min_points, min_h)
    return decode_votes(points, _unit_votes(votes), radius, weights)


def vote_diagnostics(points, sdf, votes, radius: float, sdf_threshold: float = 0.02,
                     top_fraction: float = 0.5, min_points: int = 16, min_h: float = 0.05) -> dict:
    """What the decoder of :func:`vote_joints` did, per sample and joint.

    Same arguments as :func:`vote_joints`. Returns a dict of tensors:
        ``joints`` (B, J, 3) the decoded joints, metres;
        ``near`` (B,) points kept by the SDF test (|sdf| < threshold, or the ``min_points``
        smallest); ``passed`` (B,) points with |sdf| < threshold (no fallback);
        ``voters`` (B, J) chosen voters with non-zero weight;
        ``spread`` (B, J) weighted RMS distance (metres) of the voters' estimates from the joint;
        ``max_h`` (B, J) the largest h among near-surface points.
    """
    weights, near = vote_weights(sdf, votes, sdf_threshold, top_fraction, min_points, min_h)
    unit = _unit_votes(votes)
    estimates = decode_votes(points, unit, radius)  # (B, N, J, 3)
    w = weights.unsqueeze(-1)
    joints = (w * estimates).sum(1) / w.sum(1)
    spread = ((w * (estimates - joints.unsqueeze(1)) ** 2).sum((1, -1)) / weights.sum(1)).sqrt()
    h = torch.where(near.unsqueeze(-1), unit[..., 0], torch.zeros_like(unit[..., 0]))
    return {"joints": joints, "near": near.sum(1), "passed": (sdf.abs() < sdf_threshold).sum(1),
            "voters": (weights > 0).sum(1), "spread": spread, "max_h": h.amax(1)}


def frustum_grid(K, image_size: int, root, steps: int = 32, depth_steps: int = 32,
                 depth_margin: float = 1.0):
    """Query points on a regular grid in a crop's frustum around the root's depth.

    Args:
        K: (B, 3, 3) crop intrinsics. image_size: crop side in pixels.
        root: (B, 3) root joint, camera frame, metres.
        steps: grid steps along u and v; depth_steps along z in root_z ± depth_margin (metres).

    Returns:
        (B, steps * steps * depth_steps, 3) points, camera frame, metres.
    """
    dtype, device = K.dtype, K.device
    pix = (torch.arange(steps, dtype=dtype, device=device) + 0.5) * image_size / steps - 0.5
    offs = torch.linspace(-depth_margin, depth_margin, depth_steps, dtype=dtype, device=device)
    v, u, dz = torch.meshgrid(pix, pix, offs, indexing="ij")
    u, v, dz = u.reshape(1, -1), v.reshape(1, -1), dz.reshape(1, -1)
    z = root[:, 2:3] + dz
    y = (v - K[:, 1, 2:3]) / K[:, 1, 1:2] * z
    x = (u - K[:, 0, 2:3] - K[:, 0, 1:2] * y / z) / K[:, 0, 0:1] * z
    return torch.stack([x, y, z], -1)

