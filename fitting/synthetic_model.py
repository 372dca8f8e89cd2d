"""A synthetic body model in the exact SMPL-X v1.1 file format (the embedded default).

Nothing licensed is used: the body is designed here from a few dozen measurements.

Construction
------------
1. Skeleton: the 55 SMPL-X joints of an adult of about 1.70 m in the SMPL-X rest pose
   (T-pose with arms out, palms down, y up, facing +z, the subject's left at +x).
2. Implicit surface: a smooth union (polynomial smooth-min) of round cones and ellipsoids,
   one or more per bone (torso, limbs, head, nose, ears, feet with heels and toes, hands
   with five fingers of three segments each). Each primitive belongs to one joint.
3. Marching cubes (scikit-image) on a rectilinear grid (7 mm, 3.5 mm in the slabs holding
   the hands), evaluated only inside the primitives' bounding boxes; the largest component
   is a closed genus-0 surface.
4. Decimation by half-edge collapses in vectorised rounds (numpy): each round takes the
   shortest edges relative to a size field (hands and face finer than the trunk), drops
   collapses that break the link condition or flip or degrade a triangle, keeps a set with
   disjoint 1-rings and collapses it; down to exactly ``NUM_BODY_VERTICES`` vertices. Then
   a few rounds of tangential smoothing projected back onto the implicit surface.
5. Topology: SMPL-X has F = 20908 faces and V = 10475 vertices. A closed genus-0 manifold has
   F = 2V - 4, so the body uses V = 10456 vertices (F = 20908 exactly) and the remaining
   19 vertices (indices 10456..10474) are unreferenced spares that duplicate body vertices
   (same position, weights, shape and expression directions, no regressor weight). The
   mesh of referenced vertices is watertight, edge-manifold and free of self-intersection.
6. The vertex order is permuted so that the indices hard-coded by smplx
   (``vertex_ids["smplx"]``: nose, eyes, ears, toes, heels, fingertips) fall on the matching
   body parts; the 51 static and 79 x 17 dynamic face landmarks are ray-cast onto the face.
7. Skinning weights from smooth primitive membership (each vertex bound only to the joints
   of primitives within a blend band of its nearest one); a joint regressor whose rows are
   affine combinations of vertices around each joint, reproducing the joints exactly;
   shape directions 0..9 (height, girth, leg length, arm length, torso length, shoulder
   width, hip width, belly, head size, arm girth) built as smooth injective deformations,
   10..299 seed-dependent local girth variations; 100 expression directions with support on
   the face only; zero pose correctives; an orthonormal hand basis and a mild mean curl.

The seed changes only the higher shape directions (10..299), the extra expression
directions (6..99) and the order of the hand basis beyond its first row; the geometry,
joints and first ten shape directions are the same for every seed. The file is a zip
written with fixed timestamps, so the same seed gives a byte-identical file.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fitting.correspondence import SMPLX_VERTEX_IDS
from fitting.joint_sets import SMPLX55

NUM_VERTICES = 10475
NUM_FACES = 20908
NUM_BODY_VERTICES = NUM_FACES // 2 + 2
"""Referenced vertices of the closed genus-0 body (F = 2V - 4)."""
NUM_SPARE_VERTICES = NUM_VERTICES - NUM_BODY_VERTICES
NUM_JOINTS = 55
NUM_SHAPE_DIRS = 300
NUM_EXPRESSION_DIRS = 100
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9
MODEL_FILENAME = "SMPLX_NEUTRAL.npz"

FLOOR_Y = -1.28
"""Height (m) of the soles in the model frame; puts the pelvis near y = -0.35 like SMPL-X."""

GRID_COARSE = 0.007
"""Marching-cubes grid spacing (m) away from the hands."""
GRID_FINE = 0.0035
"""Grid spacing (m) in the slabs that hold the hands: fingers are 1.2 to 1.8 cm thick."""

SMPLX_PARENTS = np.array(SMPLX55.parents, dtype=np.int64)

# Hard-coded vertex ids of smplx (smplx/vertex_ids.py, "smplx"); tests compare with smplx.
LANDMARK_VERTEX_IDS = SMPLX_VERTEX_IDS

_FINGER_ORDER = ("index", "middle", "pinky", "ring", "thumb")  # SMPL-X joint order

# Left hand, design frame (soles at y = 0). Per finger: base offset from the wrist (m),
# direction, segment lengths (m) and radii at base and tip (m).
_FINGERS = {
    "index": ((0.095, 0.0, 0.031), (np.cos(np.radians(10)), 0.0, np.sin(np.radians(10))),
              (0.042, 0.025, 0.021), 0.0085, 0.0070),
    "middle": ((0.098, 0.0, 0.007), (np.cos(np.radians(2)), 0.0, np.sin(np.radians(2))),
               (0.046, 0.029, 0.022), 0.0088, 0.0072),
    "ring": ((0.094, -0.001, -0.016), (np.cos(np.radians(-7)), 0.0, np.sin(np.radians(-7))),
             (0.043, 0.027, 0.021), 0.0082, 0.0068),
    "pinky": ((0.085, -0.002, -0.038), (np.cos(np.radians(-16)), 0.0, np.sin(np.radians(-16))),
              (0.034, 0.020, 0.018), 0.0072, 0.0060),
    "thumb": ((0.025, -0.006, 0.016), (0.55, -0.15, 0.82), (0.042, 0.032, 0.024), 0.0110, 0.0082),
}

# Joints of the left half and the midline in the design frame (soles at y = 0, metres).
_DESIGN_JOINTS = {
    "pelvis": (0.0, 0.93, 0.0),
    "left_hip": (0.09, 0.84, 0.0),
    "spine1": (0.0, 1.04, -0.01),
    "left_knee": (0.115, 0.48, 0.01),
    "spine2": (0.0, 1.17, 0.0),
    "left_ankle": (0.125, 0.08, -0.03),
    "spine3": (0.0, 1.23, 0.005),
    "left_foot": (0.13, 0.03, 0.085),
    "neck": (0.0, 1.50, -0.012),
    "left_collar": (0.07, 1.41, -0.015),
    "head": (0.0, 1.58, 0.0),
    "left_shoulder": (0.18, 1.43, -0.015),
    "left_elbow": (0.44, 1.43, -0.025),
    "left_wrist": (0.69, 1.43, -0.01),
    "jaw": (0.0, 1.55, 0.02),
    "left_eye_smplhf": (0.032, 1.625, 0.072),
}


@dataclass(frozen=True)
class Primitive:
    """One building block of the implicit body (design frame, metres)."""

    kind: str
    """"cone" (round cone from a to b) or "ellipsoid" (centre a, radii in scale)."""
    a: tuple[float, float, float]
    """Start point of the axis (cone) or centre (ellipsoid)."""
    b: tuple[float, float, float]
    """End point of the axis (cone); unused for ellipsoids."""
    ra: float
    """Radius at a (cone)."""
    rb: float
    """Radius at b (cone)."""
    scale: tuple[float, float, float]
    """Cone: per-axis squash about the axis midpoint; ellipsoid: the three radii."""
    joint: int
    """SMPL-X joint that moves this part (index into SMPLX55)."""
    k: float
    """Smooth-union blend radius with what was added before (m); also the skinning band."""


def _mirror(p):
    return (-p[0], p[1], p[2])


def _finger_chain(side: str, name: str, wrist: np.ndarray):
    """(joint positions (3, 3), tip position (3,), direction (3,)) of one finger."""
    offset, direction, lengths, _, _ = _FINGERS[name]
    d = np.asarray(direction, float)
    d /= np.linalg.norm(d)
    off = np.asarray(offset, float)
    if side == "right":
        d[0] = -d[0]
        off[0] = -off[0]
    pts = [wrist + off]
    for length in lengths:
        pts.append(pts[-1] + length * d)
    return np.array(pts[:3]), pts[3], d


def design_joints() -> np.ndarray:
    """(55, 3) float64 rest joints in the design frame (soles at y = 0), metres."""
    joints = np.zeros((NUM_JOINTS, 3))
    for name, pos in _DESIGN_JOINTS.items():
        joints[SMPLX55.index(name)] = pos
        if name.startswith("left_"):
            joints[SMPLX55.index("right_" + name[5:])] = _mirror(pos)
    for side in ("left", "right"):
        wrist = joints[SMPLX55.index(f"{side}_wrist")]
        for name in _FINGER_ORDER:
            chain, _, _ = _finger_chain(side, name, wrist)
            for k in range(3):
                joints[SMPLX55.index(f"{side}_{name}{k + 1}")] = chain[k]
    return joints


def rest_joints() -> np.ndarray:
    """(55, 3) float64 rest joints of the written model (model frame), metres."""
    return design_joints() + np.array([0.0, FLOOR_Y, 0.0])


def _primitives() -> list[Primitive]:
    """The body's primitives in union order (design frame)."""
    J = design_joints()
    j = SMPLX55.index
    prims: list[Primitive] = []

    def cone(a, b, ra, rb, joint, k, scale=(1.0, 1.0, 1.0)):
        prims.append(Primitive("cone", tuple(map(float, a)), tuple(map(float, b)), ra, rb,
                               tuple(scale), joint, k))

    def ellipsoid(c, radii, joint, k):
        prims.append(Primitive("ellipsoid", tuple(map(float, c)), tuple(map(float, c)), 0.0, 0.0,
                               tuple(map(float, radii)), joint, k))

    # Trunk: stacked ellipsoids, blended wide.
    ellipsoid((0, 0.93, 0.0), (0.165, 0.13, 0.115), j("pelvis"), 0.04)
    ellipsoid((0, 1.10, 0.005), (0.148, 0.14, 0.108), j("spine1"), 0.05)
    ellipsoid((0, 1.19, 0.008), (0.158, 0.08, 0.112), j("spine2"), 0.05)
    ellipsoid((0, 1.30, 0.0), (0.172, 0.16, 0.112), j("spine3"), 0.05)
    cone((0, 1.40, -0.02), (0, 1.565, -0.005), 0.06, 0.052, j("neck"), 0.04)
    ellipsoid((0, 1.60, 0.005), (0.078, 0.105, 0.098), j("head"), 0.04)
    cone((0, 1.545, 0.005), (0, 1.51, 0.058), 0.05, 0.028, j("jaw"), 0.03, scale=(1.15, 1.0, 1.0))
    cone((0, 1.612, 0.088), (0, 1.58, 0.106), 0.008, 0.0115, j("head"), 0.012)
    for s in (1.0, -1.0):
        side = "left" if s > 0 else "right"
        ellipsoid((s * 0.08, 1.60, -0.008), (0.013, 0.031, 0.019), j("head"), 0.008)
        # Arm.
        cone((s * 0.06, 1.40, -0.015), J[j(f"{side}_shoulder")], 0.062, 0.058,
             j(f"{side}_collar"), 0.04)
        cone(J[j(f"{side}_shoulder")], J[j(f"{side}_elbow")], 0.052, 0.040,
             j(f"{side}_shoulder"), 0.03)
        cone(J[j(f"{side}_elbow")], J[j(f"{side}_wrist")], 0.042, 0.030,
             j(f"{side}_elbow"), 0.03, scale=(1.0, 0.8, 1.0))
        wrist = J[j(f"{side}_wrist")]
        cone(wrist + (s * -0.005, 0, 0.005), wrist + (s * 0.085, 0, 0.002), 0.035, 0.040,
             j(f"{side}_wrist"), 0.012, scale=(1.0, 0.42, 1.0))
        for name in _FINGER_ORDER:
            chain, tip, _ = _finger_chain(side, name, wrist)
            _, _, _, r0, r1 = _FINGERS[name]
            ends = [*chain, tip]
            for k in range(3):
                ra = r0 + (r1 - r0) * k / 3
                rb = r0 + (r1 - r0) * (k + 1) / 3
                cone(ends[k], ends[k + 1], ra, rb, j(f"{side}_{name}{k + 1}"), 0.006)
        # Leg.
        cone(J[j(f"{side}_hip")], J[j(f"{side}_knee")], 0.082, 0.052, j(f"{side}_hip"), 0.04)
        cone(J[j(f"{side}_knee")], J[j(f"{side}_ankle")], 0.052, 0.033, j(f"{side}_knee"), 0.03)
        ellipsoid((s * 0.118, 0.36, -0.018), (0.05, 0.10, 0.05), j(f"{side}_knee"), 0.03)
        ellipsoid((s * 0.125, 0.042, -0.05), (0.033, 0.04, 0.04), j(f"{side}_ankle"), 0.02)
        cone((s * 0.125, 0.045, -0.03), (s * 0.13, 0.03, 0.085), 0.036, 0.040,
             j(f"{side}_ankle"), 0.02, scale=(1.0, 0.7, 1.0))
        cone((s * 0.138, 0.025, 0.095), (s * 0.152, 0.02, 0.145), 0.028, 0.019,
             j(f"{side}_foot"), 0.012, scale=(1.0, 0.65, 1.0))
        cone((s * 0.11, 0.027, 0.1), (s * 0.106, 0.024, 0.152), 0.017, 0.0135,
             j(f"{side}_foot"), 0.008)
    return prims


# --------------------------------------------------------------------------------------
# Signed distances


def _round_cone_sdf(p: np.ndarray, a: np.ndarray, b: np.ndarray, r1: float, r2: float) -> np.ndarray:
    """Signed distance (N,) from points p (N, 3) to a round cone (Quilez's exact formula)."""
    ba = b - a
    l2 = float(ba @ ba)
    rr = r1 - r2
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    pa = p - a
    y = pa @ ba
    z = y - l2
    x2 = np.sum((pa * l2 - y[:, None] * ba) ** 2, axis=1)
    y2 = y * y * l2
    z2 = z * z * l2
    k = np.sign(rr) * rr * rr * x2
    d_end = np.sqrt(x2 + z2) * il2 - r2
    d_start = np.sqrt(x2 + y2) * il2 - r1
    d_side = (np.sqrt(np.maximum(x2 * a2 * il2, 0.0)) + y * rr) * il2 - r1
    return np.where(np.sign(z) * a2 * z2 > k, d_end, np.where(np.sign(y) * a2 * y2 < k, d_start, d_side))


def _ellipsoid_sdf(p: np.ndarray, c: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Approximate signed distance (N,) to an ellipsoid (exact zero set)."""
    q = p - c
    k0 = np.linalg.norm(q / radii, axis=1)
    k1 = np.linalg.norm(q / (radii * radii), axis=1)
    return np.where(k1 > 1e-12, k0 * (k0 - 1.0) / np.maximum(k1, 1e-12), -radii.min())


def primitive_sdf(prim: Primitive, p: np.ndarray) -> np.ndarray:
    """Signed distance (N,) of points p (N, 3) to one primitive (design frame, metres)."""
    a = np.asarray(prim.a)
    if prim.kind == "ellipsoid":
        return _ellipsoid_sdf(p, a, np.asarray(prim.scale))
    b = np.asarray(prim.b)
    s = np.asarray(prim.scale)
    if np.all(s == 1.0):
        return _round_cone_sdf(p, a, b, prim.ra, prim.rb)
    c = 0.5 * (a + b)
    q = c + (p - c) / s
    return _round_cone_sdf(q, c + (a - c) / s, c + (b - c) / s, prim.ra, prim.rb) * s.min()


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def body_sdf(prims: list[Primitive], p: np.ndarray) -> np.ndarray:
    """Signed distance (N,) of the smooth union at points p (N, 3); negative inside."""
    f = np.full(len(p), 1.0)
    for prim in prims:
        f = _smin(f, primitive_sdf(prim, p), prim.k)
    return f


def _primitive_box(prim: Primitive, margin: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(prim.a)
    if prim.kind == "ellipsoid":
        r = np.asarray(prim.scale)
        return a - r - margin, a + r + margin
    b = np.asarray(prim.b)
    r = max(prim.ra, prim.rb)
    lo, hi = np.minimum(a, b) - r, np.maximum(a, b) + r
    c = 0.5 * (a + b)
    s = np.asarray(prim.scale)
    return c + (lo - c) * s - margin, c + (hi - c) * s + margin


# Axis intervals (design frame, m) sampled at the fine spacing: they hold the hands.
_FINE_INTERVALS = (
    ((-1.0, -0.62), (0.62, 1.0)),  # x
    ((1.385, 1.475),),  # y
    ((-0.065, 0.125),),  # z
)


def _grid_axis(lo: float, hi: float, coarse: float, fine: float, intervals) -> np.ndarray:
    """Monotone sample positions from lo to hi: ``fine`` spacing inside the intervals."""
    xs = [lo]
    while xs[-1] < hi:
        x = xs[-1]
        step = fine if any(a - coarse <= x <= b for a, b in intervals) else coarse
        xs.append(x + step)
    return np.array(xs)


def _sample_grid(prims: list[Primitive], coarse: float, fine: float):
    """Implicit field on a rectilinear grid, evaluated only inside the primitives' boxes.

    Returns ``(field (X, Y, Z) float32, axes [x (X,), y (Y,), z (Z,)])``.
    """
    boxes = [_primitive_box(p, p.k + 2 * coarse) for p in prims]
    lo = np.min([b[0] for b in boxes], axis=0) - 2 * coarse
    hi = np.max([b[1] for b in boxes], axis=0) + 2 * coarse
    axes = [_grid_axis(lo[d], hi[d], coarse, fine, _FINE_INTERVALS[d]) for d in range(3)]
    field = np.full([len(ax) for ax in axes], 1.0, dtype=np.float32)
    for prim, (blo, bhi) in zip(prims, boxes, strict=True):
        sl = []
        for d in range(3):
            i0 = int(np.searchsorted(axes[d], blo[d]))
            i1 = int(np.searchsorted(axes[d], bhi[d], side="right"))
            sl.append(slice(i0, i1))
        gx, gy, gz = np.meshgrid(axes[0][sl[0]], axes[1][sl[1]], axes[2][sl[2]], indexing="ij")
        pts = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)
        d = primitive_sdf(prim, pts).reshape(gx.shape)
        block = field[tuple(sl)].astype(np.float64)
        field[tuple(sl)] = _smin(block, d, prim.k)
    return field, axes


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


# --------------------------------------------------------------------------------------
# Assembly and file


def build_model_arrays(seed: int = 0, body: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> dict[str, np.ndarray]:
    """Every array of the SMPL-X v1.1 file, keyed as smplx reads them (model frame).

    ``body``: the output of ``build_body_mesh()`` when already at hand (it does not depend
    on the seed and is the slow part).
    """
    rng = np.random.default_rng([seed, 0x5A17])
    prims = _primitives()
    joints = design_joints()
    verts, faces = build_body_mesh() if body is None else body
    weights, member = skinning_weights(prims, verts)
    chosen = _landmark_targets(joints, verts, weights)
    # Spares: duplicates of the first body vertices that are not landmarks.
    landmark_old = set(chosen.values())
    spares = [i for i in range(len(verts)) if i not in landmark_old][:NUM_SPARE_VERTICES]
    src = np.concatenate([np.arange(len(verts)), spares])  # all vertices -> body source vertex
    perm = _landmark_permutation(chosen, NUM_BODY_VERTICES)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    order = np.concatenate([perm, np.arange(NUM_BODY_VERTICES, NUM_VERTICES)])
    src = src[order]
    v_all = verts[src]
    faces_new = inv[faces]
    w_all = weights[src]
    member_all = member[src]
    regressor = joint_regressor(v_all[:NUM_BODY_VERTICES], w_all[:NUM_BODY_VERTICES], joints)
    regressor = np.concatenate([regressor, np.zeros((NUM_JOINTS, NUM_SPARE_VERTICES))], axis=1)
    shapedirs = shape_directions(prims, v_all, member_all, w_all, rng)
    exprdirs = expression_directions(v_all, rng)
    lmk_faces, lmk_bary, dyn_faces, dyn_bary = face_landmarks(v_all, faces_new)
    hml, hmr, hcl, hcr = hand_mean_and_components(rng)
    offset = np.array([0.0, FLOOR_Y, 0.0])
    kintree = np.stack([SMPLX_PARENTS, np.arange(NUM_JOINTS)]).astype(np.int64)
    return {
        "v_template": (v_all + offset).astype(np.float64),
        "f": faces_new.astype(np.int64),
        "shapedirs": np.concatenate([shapedirs, exprdirs], axis=2).astype(np.float32),
        "posedirs": np.zeros((NUM_VERTICES, 3, NUM_POSE_BASIS), dtype=np.float32),
        "J_regressor": regressor.astype(np.float64),
        "weights": w_all.astype(np.float64),
        "kintree_table": kintree,
        "hands_componentsl": hcl.astype(np.float64),
        "hands_componentsr": hcr.astype(np.float64),
        "hands_meanl": hml.astype(np.float64),
        "hands_meanr": hmr.astype(np.float64),
        "lmk_faces_idx": lmk_faces,
        "lmk_bary_coords": lmk_bary.astype(np.float64),
        "dynamic_lmk_faces_idx": dyn_faces,
        "dynamic_lmk_bary_coords": dyn_bary.astype(np.float64),
    }


_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def write_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz (zip of .npy, deflated) with fixed timestamps, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=1)
    os.replace(tmp, path)


def write_synthetic_model(out_dir: str | Path, seed: int = 0,
                          body: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Generate the synthetic model and write ``out_dir/SMPLX_NEUTRAL.npz``; returns its path.

    smplx.create(path) loads it; smplx.create(folder) expects ``folder/smplx/SMPLX_NEUTRAL.npz``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILENAME
    write_npz_deterministic(path, build_model_arrays(seed, body))
    return path

