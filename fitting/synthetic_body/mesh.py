"""Meshing the synthetic body: largest component, vectorised half-edge decimation to the SMPL-X
vertex count, smoothing on the implicit surface (steps 3-5 of fitting.synthetic_model)."""

from __future__ import annotations

import os

import numpy as np

from fitting.synthetic_body.design import (
    GRID_COARSE,
    GRID_FINE,
    NUM_BODY_VERTICES,
    NUM_FACES,
    _primitives,
    _sample_grid,
    body_sdf,
)

# --------------------------------------------------------------------------------------
# Meshing


def _largest_component(verts: np.ndarray, faces: np.ndarray):
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = len(verts)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    g = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    face_label = labels[faces[:, 0]]
    keep_label = np.bincount(face_label).argmax()
    faces = faces[face_label == keep_label]
    used = np.unique(faces)
    remap = np.full(n, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return verts[used], remap[faces]


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _unique_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) int64 undirected edges, smaller index first, sorted."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    e.sort(axis=1)
    n = int(faces.max()) + 1
    key = np.unique(e[:, 0] * n + e[:, 1])
    return np.stack([key // n, key % n], axis=1)


def _size_field(p: np.ndarray) -> np.ndarray:
    """Relative target edge length (N,) at design-frame points p (N, 3): small on hands/face."""

    def ramp(t, t0, t1):
        u = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
        return u * u * (3 - 2 * u)

    x, y = np.abs(p[:, 0]), p[:, 1]
    hand = ramp(x, 0.60, 0.68)
    head = ramp(y, 1.46, 1.53) * (1 - ramp(x, 0.10, 0.16))
    feet = 1 - ramp(y, 0.08, 0.16)
    s = 2.8 - 1.8 * hand - 1.2 * head - 0.9 * feet
    return s


def _tri_normals(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    u, v = p1 - p0, p2 - p0
    return np.stack([u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1], u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
                     u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]], axis=1)


def _tri_quality(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """(N,) 4*sqrt(3)*area / sum of squared edges: 1 for equilateral, 0 for degenerate."""
    area2 = np.linalg.norm(_tri_normals(p0, p1, p2), axis=1)
    s = np.sum((p1 - p0) ** 2 + (p2 - p1) ** 2 + (p0 - p2) ** 2, axis=1)
    return 2.0 * np.sqrt(3.0) * area2 / np.maximum(s, 1e-30)


def _collapse_scores(V, F, vf_ptr, vf_idx, rem, keep, min_cos):
    """(K,) worst quality of the faces around ``rem`` after moving it onto ``keep``; -1 if a
    face would flip (normal turning by more than acos(min_cos)) or degenerate."""
    counts = vf_ptr[rem + 1] - vf_ptr[rem]
    owner = np.repeat(np.arange(len(rem)), counts)
    start = np.repeat(vf_ptr[rem] - np.cumsum(counts) + counts, counts)
    fid = vf_idx[start + np.arange(counts.sum())]
    tri = F[fid]
    k = keep[owner]
    r = rem[owner]
    live = ~np.any(tri == k[:, None], axis=1)  # faces with both vertices disappear
    p = V[tri]
    q = np.where((tri == r[:, None])[:, :, None], V[k][:, None, :], p)
    n_old = _tri_normals(p[:, 0], p[:, 1], p[:, 2])
    n_new = _tri_normals(q[:, 0], q[:, 1], q[:, 2])
    lo, ln = np.linalg.norm(n_old, axis=1), np.linalg.norm(n_new, axis=1)
    cos = np.sum(n_old * n_new, axis=1) / np.maximum(lo * ln, 1e-30)
    qual = np.where(cos >= min_cos, _tri_quality(q[:, 0], q[:, 1], q[:, 2]), -1.0)
    # A collapse may keep a bad triangle bad; judge it against the worst it replaces.
    old_q = np.where(live, _tri_quality(p[:, 0], p[:, 1], p[:, 2]), 2.0)
    worst_old = np.full(len(rem), 2.0)
    np.minimum.at(worst_old, owner, old_q)
    qual = np.where(ln > 0, qual, -1.0)
    qual = np.where(live, qual, 2.0)
    worst = np.full(len(rem), 2.0)
    np.minimum.at(worst, owner, qual)
    return np.where(worst >= 0, np.maximum(worst, np.minimum(worst / np.maximum(worst_old, 1e-9), 1.0)
                                           * (worst >= 0.5 * worst_old)), -1.0)


def _independent_edges(reg_e: np.ndarray, reg_v: np.ndarray, rank: np.ndarray, n: int,
                       rounds: int = 16) -> np.ndarray:
    """Indices of edges with pairwise disjoint regions, preferring low rank (Luby rounds).

    ``(reg_e[i], reg_v[i])`` lists the vertices of each edge's region. An edge wins when
    its rank is the lowest on its whole region among the edges still in play; edges that
    touch a winner's region leave play; repeat.
    """
    in_play = np.ones(len(rank), dtype=bool)
    taken = np.zeros(n, dtype=bool)
    winners = []
    for _ in range(rounds):
        live = in_play[reg_e]
        e, v = reg_e[live], reg_v[live]
        if len(e) == 0:
            break
        best = np.full(n, np.inf)
        np.minimum.at(best, v, rank[e])
        lowest = np.full(len(rank), np.inf)  # best[v] <= rank on the region; equal = win
        np.minimum.at(lowest, e, best[v])
        won = np.nonzero(in_play & (lowest == rank))[0]
        winners.append(won)
        is_won = np.zeros(len(rank), dtype=bool)
        is_won[won] = True
        taken[v[is_won[e]]] = True
        touched = np.zeros(len(rank), dtype=bool)
        touched[e[taken[v]]] = True
        in_play &= ~touched
    win = np.concatenate(winners) if winners else np.zeros(0, dtype=np.int64)
    return np.sort(win)


def _decimate(verts: np.ndarray, faces: np.ndarray, target: int):
    """Half-edge collapses in rounds of independent, valid, shortest (relative) edges.

    Each round: candidate edges by length over the size field; keep those that pass the
    link condition, keep vertex degrees in 4..12 and flip or degrade no triangle; pick a
    set whose endpoint 1-rings are disjoint (so the checks stay valid) and collapse them
    all at once. Stops at exactly ``target`` vertices.
    """
    import scipy.sparse as sp

    V = np.asarray(verts, dtype=np.float64).copy()
    F = np.asarray(faces, dtype=np.int64).copy()
    n = len(V)
    nv = len(np.unique(F))
    min_quality = 0.15
    while nv > target:
        he_from, he_to, he_opp = F.ravel(), F[:, [1, 2, 0]].ravel(), F[:, [2, 0, 1]].ravel()
        key = he_from * n + he_to
        sort = np.argsort(key)
        fwd = he_from < he_to
        ea, eb, ec = he_from[fwd], he_to[fwd], he_opp[fwd]
        ed = he_opp[sort[np.searchsorted(key[sort], eb * n + ea)]]
        deg = np.bincount(he_from, minlength=n)
        cost = np.linalg.norm(V[ea] - V[eb], axis=1) / _size_field(0.5 * (V[ea] + V[eb]))
        need = nv - target
        ncand = min(len(ea), max(8 * need if need < 2000 else 0, len(ea) // 16))
        # Order by cost bucket (15 % wide) with a fixed pseudo-random tie-break: sorting by
        # exact cost makes winners rare (costs are spatially smooth, few local minima).
        bucket = np.floor(np.log(np.maximum(cost, 1e-12)) / np.log(1.15))
        jitter = np.random.default_rng(len(ea)).random(len(ea))
        cand = np.lexsort((jitter, bucket))[:ncand]
        ea, eb, ec, ed, cost = ea[cand], eb[cand], ec[cand], ed[cand], cost[cand]
        A = sp.csr_matrix((np.ones(len(he_from)), (he_from, he_to)), shape=(n, n))
        common = np.asarray(A[ea].multiply(A[eb]).sum(axis=1)).ravel()
        ok = (common == 2) & (deg[ec] > 3) & (deg[ed] > 3) & (deg[ea] + deg[eb] - 4 <= 12)
        ea, eb, ec, ed, cost = ea[ok], eb[ok], ec[ok], ed[ok], cost[ok]
        vf_order = np.argsort(he_from, kind="stable")
        vf_idx = (np.arange(len(he_from)) // 3)[vf_order]
        vf_ptr = np.concatenate([[0], np.cumsum(deg)])
        s_keep_a = _collapse_scores(V, F, vf_ptr, vf_idx, eb, ea, 0.3)
        s_keep_b = _collapse_scores(V, F, vf_ptr, vf_idx, ea, eb, 0.3)
        keep_a = s_keep_a >= s_keep_b
        ok = np.maximum(s_keep_a, s_keep_b) >= min_quality
        keep = np.where(keep_a, ea, eb)[ok]
        rem = np.where(keep_a, eb, ea)[ok]
        # Independent set: disjoint regions (both endpoints and their 1-rings), so that
        # the checks above stay valid when all winners collapse at once.
        region = (A[keep] + A[rem]).tocoo()
        reg_e = np.concatenate([region.row, np.arange(len(keep)), np.arange(len(keep))])
        reg_v = np.concatenate([region.col, keep, rem])
        win = _independent_edges(reg_e, reg_v, np.arange(len(keep), dtype=np.float64), n)[:need]
        if os.environ.get("H36M_NVF_DEBUG_DECIMATE"):
            print("cand", ncand, "valid", len(keep), "win", len(win))
        if len(win) == 0:
            if min_quality <= 0.01:
                raise RuntimeError("decimation stalled before reaching the vertex target")
            min_quality *= 0.5
            continue
        remap = np.arange(n)
        remap[rem[win]] = keep[win]
        F = remap[F]
        F = F[(F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 2] != F[:, 0])]
        nv -= len(win)
        if os.environ.get("H36M_NVF_DEBUG_DECIMATE"):
            print("round", nv, len(win), min_quality, len(F))
    used = np.unique(F)
    remap = np.full(n, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return V[used], remap[F]


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    vn = np.zeros_like(verts)
    for c in range(3):
        np.add.at(vn, faces[:, c], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def _project_to_surface(prims, p: np.ndarray, iters: int = 2) -> np.ndarray:
    eps = 1e-5
    for _ in range(iters):
        f = body_sdf(prims, p)
        g = np.stack([(body_sdf(prims, p + eps * np.eye(3)[d]) - f) / eps for d in range(3)], axis=1)
        p = p - (f / np.maximum(np.sum(g * g, axis=1), 1e-12))[:, None] * g
    return p


def _smooth_on_surface(prims, verts: np.ndarray, faces: np.ndarray, rounds: int = 4) -> np.ndarray:
    """Tangential Laplacian relaxation, re-projected on the implicit; reverted where it flips."""
    import scipy.sparse as sp

    n = len(verts)
    e = _unique_edges(faces)
    adj = sp.coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])),
                        shape=(n, n)).tocsr()
    deg = np.asarray(adj.sum(axis=1)).ravel()

    def face_normals(v):
        fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
        return fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-15)

    for _ in range(rounds):
        nrm = _vertex_normals(verts, faces)
        delta = adj @ verts / deg[:, None] - verts
        delta -= np.sum(delta * nrm, axis=1, keepdims=True) * nrm
        moved = _project_to_surface(prims, verts + 0.5 * delta)
        old_n, new_n = face_normals(verts), face_normals(moved)
        bad = np.sum(old_n * new_n, axis=1) < 0.7
        bad_v = np.zeros(n, dtype=bool)
        bad_v[faces[bad].ravel()] = True
        moved[bad_v] = verts[bad_v]
        verts = moved
    return verts


def build_body_mesh() -> tuple[np.ndarray, np.ndarray]:
    """The closed genus-0 body: (verts (10456, 3) float64, faces (20908, 3) int64), design frame."""
    from skimage.measure import marching_cubes

    prims = _primitives()
    field, axes = _sample_grid(prims, GRID_COARSE, GRID_FINE)
    idx, faces, _, _ = marching_cubes(field, level=0.0, allow_degenerate=False)
    verts = np.stack([np.interp(idx[:, d], np.arange(len(axes[d])), axes[d]) for d in range(3)], axis=1)
    faces = faces.astype(np.int64)
    verts, faces = _largest_component(verts, faces)
    if _signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    verts, faces = _decimate(verts, faces, NUM_BODY_VERTICES)
    verts = _smooth_on_surface(prims, verts, faces)
    if len(faces) != NUM_FACES:
        raise RuntimeError(f"synthetic body has {len(faces)} faces, expected {NUM_FACES} (genus != 0)")
    return verts, faces
