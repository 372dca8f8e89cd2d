"""Rotation-vector helpers of the fitter: principal range, matrix <-> axis-angle, rigid fits.

Axis-angle vectors are radians; every function broadcasts over leading dims and keeps the
input's dtype and device.
"""

from __future__ import annotations

import math

import torch


def principal_rotvec(r: torch.Tensor) -> torch.Tensor:
    """(..., 3) the same rotations as r (..., 3) with norm in [0, π].

    A rotation by θ about n equals one by θ - 2πk about n: the angle is brought into
    (-π, π] and a negative angle expressed about -n. Vectors already in range are returned
    unchanged (bit for bit).
    """
    theta = torch.linalg.norm(r, dim=-1, keepdim=True)
    out = theta > math.pi
    wrapped = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi  # in [-π, π)
    scale = torch.where(out, wrapped / torch.where(out, theta, torch.ones_like(theta)), torch.ones_like(theta))
    return r * scale


def quat_of_rotvec(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w (...,), v (..., 3)) unit quaternion of rotation vectors r (..., 3), smooth at 0."""
    t2 = (r * r).sum(-1)
    small = t2 < 1e-10
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    k = torch.where(small, 0.5 - t2 / 48.0, torch.sin(0.5 * t) / t)
    w = torch.where(small, 1.0 - t2 / 8.0, torch.cos(0.5 * t))
    return w, k[..., None] * r


def rotvec_of_quat(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors (norm <= π) of unit quaternions (w (...,), v (..., 3))."""
    sign = torch.where(w < 0, -1.0, 1.0).to(w.dtype)
    w, v = w * sign, v * sign[..., None]
    s2 = (v * v).sum(-1)
    small = s2 < 1e-14
    s = torch.sqrt(torch.where(small, torch.ones_like(s2), s2))
    ratio = torch.where(small, 2.0 / w.clamp_min(1e-30), 2.0 * torch.atan2(s, w) / s)
    return v * ratio[..., None]


def interpolate_rotvec(r0: torch.Tensor, r1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotations a fraction t (...,) of the way from r0 to r1 (..., 3), along the
    shorter arc (normalised quaternion interpolation: the geodesic's path at a slightly
    uneven speed, exact at t = 0, 1/2 and 1); norm <= π."""
    w0, v0 = quat_of_rotvec(r0)
    w1, v1 = quat_of_rotvec(r1)
    sign = torch.where(w0 * w1 + (v0 * v1).sum(-1) < 0, -1.0, 1.0).to(w0.dtype)
    w = (1 - t) * w0 + t * sign * w1
    v = (1 - t)[..., None] * v0 + (t * sign)[..., None] * v1
    n = torch.sqrt(w * w + (v * v).sum(-1)).clamp_min(1e-30)
    return rotvec_of_quat(w / n, v / n[..., None])


def matrix_to_rotvec(r: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle of rotation matrices (..., 3, 3), robust up to angle pi."""
    m = r
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Quaternion via the largest of four candidates (Shepperd), then 2 atan2(|v|, w).
    cands = torch.stack([
        torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], -2)  # (..., 4, 4): row i is 4 q_i q
    diag = torch.stack([1 + tr, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = diag.argmax(-1)
    q = torch.take_along_dim(cands, best[..., None, None], dim=-2)[..., 0, :]
    q = q / torch.linalg.norm(q, dim=-1, keepdim=True)
    q = q * torch.where(q[..., :1] < 0, -1.0, 1.0)
    v = q[..., 1:]
    s = torch.linalg.norm(v, dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    scale = torch.where(s > 1e-8, angle / s.clamp_min(1e-12), 2.0 + 0 * s)
    return v * scale


def kabsch(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigid (R, t) with dst ≈ R src + t, least squares. src, dst (..., N, 3) -> R (..., 3, 3), t (..., 3)."""
    cs, cd = src.mean(-2, keepdim=True), dst.mean(-2, keepdim=True)
    h = (src - cs).transpose(-1, -2) @ (dst - cd)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    fix = torch.ones_like(h[..., 0])
    fix = torch.cat([fix[..., :2], d[..., None]], -1)
    r = vt.transpose(-1, -2) @ torch.diag_embed(fix) @ u.transpose(-1, -2)
    t = cd[..., 0, :] - (r @ cs[..., 0, :, None])[..., 0]
    return r, t
