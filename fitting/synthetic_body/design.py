"""The synthetic body's design: skeleton, primitives (round cones, ellipsoids) and their
smooth implicit surface, sampled on a rectilinear grid (steps 1-3 of fitting.synthetic_model)."""

from __future__ import annotations

from dataclasses import dataclass

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
