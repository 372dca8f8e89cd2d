"""Rigging the synthetic body: skinning weights, landmark vertex order, joint regressor, shape and
expression directions, face landmarks, hand basis (steps 6-7 of fitting.synthetic_model)."""

from __future__ import annotations

import numpy as np

from fitting.joint_sets import SMPLX55
from fitting.synthetic_body.design import (
    _FINGER_ORDER,
    LANDMARK_VERTEX_IDS,
    NUM_EXPRESSION_DIRS,
    NUM_JOINTS,
    NUM_SHAPE_DIRS,
    SMPLX_PARENTS,
    Primitive,
    _finger_chain,
    primitive_sdf,
)

# --------------------------------------------------------------------------------------
# Skinning, landmarks, regressor


def skinning_weights(prims: list[Primitive], verts: np.ndarray):
    """Smooth primitive membership of each vertex.

    Returns ``(weights (N, 55), membership (N, P))``: a vertex is bound to the joints of the
    primitives whose surface lies within that primitive's blend band of the nearest one,
    with a C1 falloff; rows sum to 1.
    """
    dist = np.stack([primitive_sdf(p, verts) for p in prims], axis=1)
    band = np.array([max(p.k, 0.004) for p in prims])
    t = (dist - dist.min(axis=1, keepdims=True)) / band
    member = np.clip(1.0 - t, 0.0, None) ** 2
    member /= member.sum(axis=1, keepdims=True)
    onehot = np.zeros((len(prims), NUM_JOINTS))
    onehot[np.arange(len(prims)), [p.joint for p in prims]] = 1.0
    weights = member @ onehot
    weights[weights < 1e-8] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return weights, member


def _landmark_targets(joints: np.ndarray, verts: np.ndarray, weights: np.ndarray) -> dict[str, int]:
    """Body vertex chosen for each smplx landmark name (design frame)."""
    j = SMPLX55.index
    chosen: dict[str, int] = {}

    def nearest(point, mask=None):
        d = np.linalg.norm(verts - np.asarray(point), axis=1)
        if mask is not None:
            d = np.where(mask, d, np.inf)
        return int(np.argmin(d))

    head = verts[:, 1] > 1.47
    nose_zone = head & (np.abs(verts[:, 0]) < 0.03)
    chosen["nose"] = int(np.argmax(np.where(nose_zone, verts[:, 2], -np.inf)))
    for s, side in ((1, "l"), (-1, "r")):
        front = head & (verts[:, 2] > 0.06)
        eye_xy = np.hypot(verts[:, 0] - s * 0.032, verts[:, 1] - 1.625)
        chosen[f"{side}eye"] = int(np.argmin(np.where(front, eye_xy, np.inf)))
        chosen[f"{side}ear"] = nearest((s * 0.11, 1.60, -0.008), head)
        up = "L" if s > 0 else "R"
        foot = weights[:, j(f"{'left' if s > 0 else 'right'}_ankle")] + \
            weights[:, j(f"{'left' if s > 0 else 'right'}_foot")] > 0.5
        chosen[f"{up}Heel"] = nearest((s * 0.125, 0.02, -0.12), foot)
        chosen[f"{up}BigToe"] = nearest((s * 0.106, 0.022, 0.20), foot)
        chosen[f"{up}SmallToe"] = nearest((s * 0.17, 0.018, 0.19), foot)
        wrist = joints[j(f"{'left' if s > 0 else 'right'}_wrist")]
        for name in _FINGER_ORDER:
            _, tip, d = _finger_chain("left" if s > 0 else "right", name, wrist)
            on_tip = weights[:, j(f"{'left' if s > 0 else 'right'}_{name}3")] > 0.5
            chosen[f"{side}{name}"] = int(np.argmax(np.where(on_tip, (verts - tip) @ d, -np.inf)))
    if len(set(chosen.values())) != len(chosen):
        raise RuntimeError("two smplx landmarks landed on the same synthetic vertex")
    return chosen


def _landmark_permutation(chosen: dict[str, int], n: int) -> np.ndarray:
    """perm (n,): new vertex i is old vertex perm[i]; landmarks land on smplx's indices."""
    perm = np.arange(n)
    where = np.arange(n)  # where[old] = current new index
    for name, old in chosen.items():
        new = LANDMARK_VERTEX_IDS[name]
        cur = where[old]
        other = perm[new]
        perm[new], perm[cur] = old, other
        where[old], where[other] = new, cur
    return perm


def _direction_set() -> np.ndarray:
    g = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                  if (i, j, k) != (0, 0, 0)], dtype=float)
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def joint_regressor(verts: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(55, N) regressor whose rows are affine combinations (sum 1) of vertices around each
    joint, exact on ``verts``.

    For each of 26 directions the vertex (skinned to the joint, its parent or its children)
    that lies most in that direction from the joint is picked, so the joint sits inside their
    hull; the minimum-norm weights with sum 1 and weighted mean = joint are used.
    """
    reg = np.zeros((NUM_JOINTS, len(verts)))
    children = [np.nonzero(SMPLX_PARENTS == i)[0] for i in range(NUM_JOINTS)]
    dirs = _direction_set()
    for i in range(NUM_JOINTS):
        related = [i, *children[i]] + ([SMPLX_PARENTS[i]] if SMPLX_PARENTS[i] >= 0 else [])
        if i in (SMPLX55.index("left_eye_smplhf"), SMPLX55.index("right_eye_smplhf")):
            related = [SMPLX55.index("head")]
        cand = np.nonzero(weights[:, related].sum(axis=1) > 0.05)[0]
        off = verts[cand] - joints[i]
        dist = np.linalg.norm(off, axis=1)
        near = dist <= 3.0 * np.sort(dist)[min(8, len(dist) - 1)]
        cand, off, dist = cand[near], off[near], dist[near]
        score = (off / dist[:, None]) @ dirs.T - 0.5 * (dist / dist.max())[:, None]
        idx = np.unique(cand[np.argmax(score, axis=0)])
        A = np.vstack([np.ones(len(idx)), (verts[idx] - joints[i]).T])  # (4, k)
        w = A.T @ np.linalg.solve(A @ A.T, np.array([1.0, 0.0, 0.0, 0.0]))
        reg[i, idx] = w
    return reg


# --------------------------------------------------------------------------------------
# Shape and expression directions


def _smoothstep(t, t0, t1):
    u = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _soft_ramp(t, t0, w):
    """C1 ramp: 0 below t0, slope 1 beyond t0 + w (a softened max(t - t0, 0))."""
    u = np.clip(t - t0, 0.0, None)
    return np.where(u < w, u * u / (2 * w), u - w / 2)


def _soft_clamp(t, t0, t1, w):
    """C1 version of clip(t, t0, t1) - t0."""
    return _soft_ramp(t, t0, w) - _soft_ramp(t, t1, w)


def _axis_points(prims, member: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """(N, 3) membership-blended closest points on the primitives' axes (or centres)."""
    out = np.zeros_like(verts)
    for i, p in enumerate(prims):
        a = np.asarray(p.a)
        if p.kind == "ellipsoid":
            q = np.broadcast_to(a, verts.shape)
        else:
            ba = np.asarray(p.b) - a
            t = np.clip((verts - a) @ ba / (ba @ ba), 0.0, 1.0)
            q = a + t[:, None] * ba
        out += member[:, i:i + 1] * q
    return out


def shape_directions(prims, verts: np.ndarray, member: np.ndarray, weights: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """(N, 3, 300) displacement (m) per unit beta, design frame.

    0 height (uniform scale about the soles), 1 girth, 2 leg length, 3 arm length,
    4 torso length, 5 shoulder width, 6 hip width, 7 belly, 8 head size, 9 arm girth;
    10..299 seed-dependent local girth variations of decreasing amplitude.
    """
    j = SMPLX55.index
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    ax = np.abs(x)
    sx = np.sign(x)
    dirs = np.zeros((len(verts), 3, NUM_SHAPE_DIRS))
    radial = verts - _axis_points(prims, member, verts)
    hand = weights[:, [j("left_wrist"), j("right_wrist")] + list(range(25, 55))].sum(axis=1)
    head = weights[:, [j("head"), j("jaw")]].sum(axis=1)
    arm = weights[:, [j(f"{s}_{p}") for s in ("left", "right") for p in ("shoulder", "elbow")]].sum(axis=1)
    # 0: height, a similarity about the point between the soles: never self-intersects.
    dirs[:, :, 0] = 0.035 * (verts - np.array([0.0, 0.0, 0.0]))
    # 1: girth, radial inflation about the bones (hands and head kept).
    dirs[:, :, 1] = 0.07 * radial * (1.0 - hand - head)[:, None]
    # 2: leg length, stretch in y below the hips (monotone map of y).
    dirs[:, 1, 2] = -0.06 * _soft_ramp(0.86 - y, 0.0, 0.06)
    # 3: arm length, stretch in |x| beyond the shoulders.
    dirs[:, 0, 3] = 0.06 * sx * _soft_ramp(ax, 0.2, 0.06)
    # 4: torso length, stretch in y between hips and shoulders.
    dirs[:, 1, 4] = 0.08 * _soft_clamp(y, 0.95, 1.40, 0.06)
    # 5: shoulder width, stretch in |x| between neck and shoulder for the upper body.
    dirs[:, 0, 5] = 0.15 * sx * _soft_clamp(ax, 0.04, 0.2, 0.04) * _smoothstep(y, 1.15, 1.32)
    # 6: hip width, scale x of the pelvis and legs.
    dirs[:, 0, 6] = 0.06 * x * (1.0 - _smoothstep(y, 0.95, 1.12))
    # 7: belly, push the front of the abdomen forward.
    dirs[:, 2, 7] = 0.25 * _soft_ramp(z, 0.0, 0.04) * _smoothstep(y, 0.88, 1.0) \
        * (1 - _smoothstep(y, 1.18, 1.3)) * (1 - _smoothstep(ax, 0.12, 0.2))
    # 8: head size, scale about the head centre, fading out on the neck.
    centre = np.array([0.0, 1.58, 0.0])
    dirs[:, :, 8] = 0.04 * (verts - centre) * _smoothstep(y, 1.44, 1.52)[:, None]
    # 9: arm girth.
    dirs[:, :, 9] = 0.08 * radial * arm[:, None]
    # 10..299: local girth bumps with compact support (Wendland), amplitude decaying.
    body = np.nonzero((1.0 - hand) > 0.5)[0]
    for k in range(10, NUM_SHAPE_DIRS):
        c = verts[body[rng.integers(len(body))]]
        radius = 0.12 + 0.1 * rng.random()
        r = np.linalg.norm(verts - c, axis=1) / radius
        bump = np.clip(1 - r, 0, None) ** 4 * (4 * r + 1)
        amp = rng.normal() * 0.04 / np.sqrt(k - 8)
        dirs[:, :, k] = amp * radial * (bump * (1.0 - hand))[:, None]
    return dirs


def face_mask(verts: np.ndarray) -> np.ndarray:
    """(N,) weight in [0, 1] of the face region (front of the head), exactly 0 elsewhere."""
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    return (_smoothstep(z, 0.035, 0.07) * _smoothstep(y, 1.475, 1.50)
            * (1 - _smoothstep(y, 1.66, 1.69)) * (1 - _smoothstep(np.abs(x), 0.07, 0.09)))


def expression_directions(verts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3, 100) face-only displacement (m) per unit expression coefficient, design frame.

    0 jaw drop, 1 smile, 2 brow raise, 3 cheek puff, 4 lip pucker, 5 eye squint;
    6..99 seed-dependent smooth local face motions.
    """
    m = face_mask(verts)
    x, y = verts[:, 0], verts[:, 1]
    dirs = np.zeros((len(verts), 3, NUM_EXPRESSION_DIRS))

    def blob(cx, cy, r):
        return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))

    lower = 1 - _smoothstep(y, 1.525, 1.545)
    dirs[:, 1, 0] = -0.008 * lower * m
    dirs[:, 2, 0] = -0.002 * lower * m
    corners = blob(0.025, 1.535, 0.012) + blob(-0.025, 1.535, 0.012)
    dirs[:, 0, 1] = 0.003 * np.sign(x) * corners * m
    dirs[:, 1, 1] = 0.003 * corners * m
    brows = blob(0.032, 1.645, 0.015) + blob(-0.032, 1.645, 0.015)
    dirs[:, 1, 2] = 0.004 * brows * m
    cheeks = blob(0.045, 1.56, 0.02) + blob(-0.045, 1.56, 0.02)
    dirs[:, 0, 3] = 0.003 * np.sign(x) * cheeks * m
    dirs[:, 2, 3] = 0.003 * cheeks * m
    dirs[:, 2, 4] = 0.004 * blob(0.0, 1.535, 0.015) * m
    eyes = blob(0.032, 1.618, 0.012) + blob(-0.032, 1.618, 0.012)
    dirs[:, 1, 5] = -0.002 * eyes * m
    for k in range(6, NUM_EXPRESSION_DIRS):
        cx, cy = rng.uniform(-0.05, 0.05), rng.uniform(1.51, 1.65)
        d = rng.normal(size=3)
        d *= 0.002 / np.linalg.norm(d) / np.sqrt(k - 4)
        dirs[:, :, k] = (blob(cx, cy, 0.015) * m)[:, None] * d
    return dirs


# --------------------------------------------------------------------------------------
# Face landmarks (ray cast from inside the head)


def _ray_cast(origins: np.ndarray, dirs: np.ndarray, tris: np.ndarray):
    """First hit of each ray (R,) on triangles (T, 3, 3): (triangle index, barycentrics)."""
    e1 = tris[:, 1] - tris[:, 0]
    e2 = tris[:, 2] - tris[:, 0]
    face_idx = np.full(len(origins), -1)
    bary = np.zeros((len(origins), 3))
    for r in range(len(origins)):
        pvec = np.cross(dirs[r], e2)
        det = np.einsum("ij,ij->i", e1, pvec)
        ok = np.abs(det) > 1e-14
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        tvec = origins[r] - tris[:, 0]
        u = np.einsum("ij,ij->i", tvec, pvec) * inv
        qvec = np.cross(tvec, e1)
        v = (qvec @ dirs[r]) * inv
        t = np.einsum("ij,ij->i", e2, qvec) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        if not hit.any():
            raise RuntimeError("face landmark ray missed the head")
        i = int(np.argmin(np.where(hit, t, np.inf)))
        face_idx[r] = i
        bary[r] = (1 - u[i] - v[i], u[i], v[i])
    return face_idx, bary


def _static_landmark_points() -> np.ndarray:
    """(51, 3) iBUG-68 points 17..67 (brows, nose, eyes, mouth) in front of the face."""
    pts = []
    for s in (-1, 1):  # image-left (subject's right) first
        xs = np.linspace(0.055, 0.015, 5) if s < 0 else np.linspace(0.015, 0.055, 5)
        pts += [(s * xx, 1.645 + 0.006 * np.sin(np.pi * (xx - 0.015) / 0.04), 0.2) for xx in xs]
    pts += [(0.0, yy, 0.2) for yy in np.linspace(1.632, 1.592, 4)]
    pts += [(xx, 1.575, 0.2) for xx in np.linspace(-0.016, 0.016, 5)]
    for cx in (-0.032, 0.032):
        ang = np.radians([180, 120, 60, 0, -60, -120]) if cx < 0 else np.radians([180, 120, 60, 0, -60, -120])
        pts += [(cx + 0.012 * np.cos(a), 1.622 + 0.005 * np.sin(a), 0.2) for a in ang]
    ang = np.radians(np.linspace(180, -150, 12))
    pts += [(0.026 * np.cos(a), 1.535 + 0.011 * np.sin(a), 0.2) for a in ang]
    ang = np.radians(np.linspace(180, -135, 8))
    pts += [(0.018 * np.cos(a), 1.535 + 0.004 * np.sin(a), 0.2) for a in ang]
    return np.array(pts)


def face_landmarks(verts: np.ndarray, faces: np.ndarray):
    """Static (51,) and dynamic (79, 17) landmark faces with barycentric coordinates."""
    head_faces = np.nonzero(verts[faces].mean(axis=1)[:, 1] > 1.45)[0]
    tris = verts[faces[head_faces]]
    centre = np.array([0.0, 1.585, 0.0])
    targets = _static_landmark_points()
    targets[:, 2] = 0.09
    f_idx, bary = _ray_cast(np.repeat(centre[None], len(targets), 0), targets - centre, tris)
    lmk_faces = head_faces[f_idx]
    # Contour: 17 points from ear to chin to ear; the yaw bin shifts them around the head.
    k = np.arange(17)
    dyn_faces = np.zeros((79, 17), dtype=np.int64)
    dyn_bary = np.zeros((79, 17, 3))
    for b in range(79):
        yaw = np.radians(b - 39 if b < 40 else 39 - b) * 0.5
        theta = np.radians(-80 + 10 * k) + yaw
        dirs = np.stack([np.sin(theta), -0.9 * np.cos(np.radians(-80 + 10 * k)) - 0.1,
                         np.cos(theta)], axis=1)
        fi, ba = _ray_cast(np.repeat(centre[None], 17, 0), dirs, tris)
        dyn_faces[b] = head_faces[fi]
        dyn_bary[b] = ba
    return lmk_faces.astype(np.int64), bary, dyn_faces, dyn_bary


# --------------------------------------------------------------------------------------
# Hands


def hand_mean_and_components(rng: np.random.Generator):
    """Mean hand poses (45,) and orthonormal components (45, 45) for left and right."""
    curl = {"index": (0.15, 0.2, 0.12), "middle": (0.18, 0.22, 0.12), "pinky": (0.22, 0.22, 0.12),
            "ring": (0.2, 0.22, 0.12), "thumb": (0.05, 0.1, 0.1)}
    left = np.zeros((15, 3))
    for f, name in enumerate(_FINGER_ORDER):
        for k in range(3):
            # Palms face down: flexion turns +x towards -y, a rotation about -z (left hand).
            left[3 * f + k] = (0.0, 0.0, -curl[name][k]) if name != "thumb" else (0.0, -curl[name][k], 0.0)
    right = left * np.array([1.0, -1.0, -1.0])  # mirror x: axis-angle (a, -b, -c)
    comps = []
    for mean in (left.ravel(), right.ravel()):
        first = mean / np.linalg.norm(mean)
        rest = rng.normal(size=(44, 45))
        q, _ = np.linalg.qr(np.vstack([first, rest]).T)  # first column is +-first
        q = q.T
        q[0] = first
        comps.append(q)
    return left.ravel(), right.ravel(), comps[0], comps[1]
