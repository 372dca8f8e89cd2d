"""Device-agnostic torch kernels for exact unsigned distance and winding number.

Chunked brute force: every point against every triangle (Ericson's closest point, Van
Oosterom–Strackee solid angles), chunked over points and faces so that memory stays bounded
by ``max_pairs`` point-triangle pairs at a time. The same code runs on CPU (tests) and CUDA.
"""

from __future__ import annotations

import math

import torch

DEFAULT_MAX_PAIRS_CPU = 1 << 18
DEFAULT_MAX_PAIRS_CUDA = 1 << 24


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _segment_sqdist(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    u = b - a
    w = p - a
    uu = _dot(u, u)
    s = (_dot(w, u) / torch.where(uu > 0, uu, torch.ones_like(uu))).clamp(0.0, 1.0)
    d = w - s.unsqueeze(-1) * u
    return _dot(d, d)


def triangle_sqdist(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                    degenerate: torch.Tensor) -> torch.Tensor:
    """Squared point-triangle distance, Ericson's Voronoi regions, vectorised.

    Args:
        p: (n, 1, 3) points. a, b, c: (1, f, 3) triangle corners. degenerate: (1, f) bool.
    Returns:
        (n, f) squared distances.
    """
    ab, ac, ap = b - a, c - a, p - a
    bp, cp = p - b, p - c
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2

    def safe(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x != 0, x, torch.ones_like(x))

    denom = safe(va + vb + vc)
    v = (vb / denom).unsqueeze(-1)
    w = (vc / denom).unsqueeze(-1)
    q = a + ab * v + ac * w
    # regions in reverse priority: later where() calls win, as earlier returns do in Ericson's code
    w_bc = ((d4 - d3) / safe((d4 - d3) + (d5 - d6))).unsqueeze(-1)
    q = torch.where(((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)).unsqueeze(-1), b + w_bc * (c - b), q)
    w_ac = (d2 / safe(d2 - d6)).unsqueeze(-1)
    q = torch.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0)).unsqueeze(-1), a + w_ac * ac, q)
    q = torch.where(((d6 >= 0) & (d5 <= d6)).unsqueeze(-1), c.expand_as(q), q)
    v_ab = (d1 / safe(d1 - d3)).unsqueeze(-1)
    q = torch.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0)).unsqueeze(-1), a + v_ab * ab, q)
    q = torch.where(((d3 >= 0) & (d4 <= d3)).unsqueeze(-1), b.expand_as(q), q)
    q = torch.where(((d1 <= 0) & (d2 <= 0)).unsqueeze(-1), a.expand_as(q), q)
    diff = p - q
    sq = _dot(diff, diff)
    if bool(degenerate.any()):
        seg = torch.minimum(torch.minimum(_segment_sqdist(p, a, b), _segment_sqdist(p, b, c)),
                            _segment_sqdist(p, c, a))
        sq = torch.where(degenerate, seg, sq)
    return sq


def triangle_solid_angle(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                         degenerate: torch.Tensor) -> torch.Tensor:
    """(n, f) signed solid angles (Van Oosterom–Strackee) of triangles (1, f, 3) seen from (n, 1, 3)."""
    ra, rb, rc = a - p, b - p, c - p
    la, lb, lc = ra.norm(dim=-1), rb.norm(dim=-1), rc.norm(dim=-1)
    det = _dot(ra, torch.cross(rb, rc, dim=-1))
    den = la * lb * lc + _dot(ra, rb) * lc + _dot(ra, rc) * lb + _dot(rb, rc) * la
    omega = 2.0 * torch.atan2(det, den)
    return torch.where(degenerate, torch.zeros_like(omega), omega)


def degenerate_triangles(tri: torch.Tensor) -> torch.Tensor:
    """(F,) bool: zero-area triangles of (F, 3, 3) corners (same rule as the CPU backend)."""
    cross = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    edges = tri - tri[:, [1, 2, 0]]
    edge_sq = (edges * edges).sum((-1, -2))
    return _dot(cross, cross) <= (1e-10 * edge_sq) ** 2 + 1e-300


def distance_and_winding(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, *,
                         want_distance: bool = True, want_winding: bool = True,
                         max_pairs: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unsigned distance and generalized winding number by chunked brute force.

    Args:
        points: (N, 3) query points, any float dtype and device (computed in that dtype).
        vertices: (V, 3) vertices, converted to the points' dtype and device.
        faces: (F, 3) int vertex indices.
        max_pairs: point-triangle pairs per chunk (memory bound); default by device.
    Returns:
        (N,) distances (zeros when not wanted) and (N,) winding numbers (zeros when not wanted).
    """
    dtype, device = points.dtype, points.device
    tri = vertices.to(device=device, dtype=dtype)[faces.to(device=device, dtype=torch.long)]
    degenerate = degenerate_triangles(tri)
    n, f = points.shape[0], tri.shape[0]
    if max_pairs is None:
        max_pairs = DEFAULT_MAX_PAIRS_CUDA if device.type == "cuda" else DEFAULT_MAX_PAIRS_CPU
    face_chunk = max(1, min(f, max_pairs // 64))
    point_chunk = max(1, max_pairs // face_chunk)
    distance = torch.zeros(n, dtype=dtype, device=device)
    winding = torch.zeros(n, dtype=dtype, device=device)
    for p0 in range(0, n, point_chunk):
        p = points[p0:p0 + point_chunk].unsqueeze(1)
        best = torch.full((p.shape[0],), math.inf, dtype=dtype, device=device)
        omega = torch.zeros(p.shape[0], dtype=dtype, device=device)
        for f0 in range(0, f, face_chunk):
            t = tri[f0:f0 + face_chunk]
            a, b, c = t[None, :, 0], t[None, :, 1], t[None, :, 2]
            deg = degenerate[None, f0:f0 + face_chunk]
            if want_distance:
                best = torch.minimum(best, triangle_sqdist(p, a, b, c, deg).amin(dim=1))
            if want_winding:
                omega = omega + triangle_solid_angle(p, a, b, c, deg).sum(dim=1)
        if want_distance:
            distance[p0:p0 + point_chunk] = best.sqrt()
        if want_winding:
            winding[p0:p0 + point_chunk] = omega / (4.0 * math.pi)
    return distance, winding
