"""Is the fitted body a plausible human? Pure functions from fit parameters and the body model.

The audit (:mod:`pipeline.checks.audit`) reads these figures per frame and aggregates them.
Everything is float64, metres and radians inside; degrees and millimetres only in the names of
values that carry them (``*_deg``, ``*_mm``). Definitions:

- **Rotation-vector norm** of each of the 22 rotations a frame stores (``global_orient`` and
  the 21 ``body_pose`` joints). A norm above π is the same rotation as a shorter vector (a
  fitter that leaves the principal range has wandered along an unobserved direction).
- **Joint-limit violation** of each body joint: degrees beyond its anatomical swing/twist
  limits (:func:`fitting.joint_limits.limit_violation_deg`, the table of
  :data:`fitting.joint_limits.JOINT_LIMITS`); a frame is *beyond the limits* when any joint
  exceeds its limit by more than a tolerance (the audit's ``limit_tolerance_deg``).
- **Twist per limb**: the twist angle about the rest bone axis of the joint that rotates the
  limb (upper arm = shoulder joint, forearm = elbow, thigh = hip, shin = knee), degrees in
  (-180, 180] (:data:`LIMB_JOINTS`); with a ground truth, the fitted minus the true twist,
  wrapped to (-180, 180].
- **Self-intersection depth** of the posed mesh (:func:`self_intersection_depth`): a vertex
  *intrudes* when the generalized winding number of the whole mesh at a probe point
  ``PROBE_M`` outside it along its normal exceeds 0.5, i.e. it lies inside another part of
  the body; vertices whose probe is already inside in the subject's rest pose (tight creases
  of the template) are excluded. Its depth is the exact distance from the vertex to the
  nearest triangle outside its own neighbourhood (triangles with a vertex within
  ``NEIGHBOURHOOD_M`` of it in the rest pose), searched up to ``DEPTH_CAP_M`` (5 cm each). A frame's
  depth is the largest over its vertices.
- **Skeleton mismatch** (:func:`bone_frame_residuals`, :func:`mismatch_stats`): the residual
  mocap minus fitted joint of each h36m32 joint, rotated into the world frame of its parent
  bone (the body joint that carries the mocap joint's parent). A different joint definition
  shows as a residual that is constant in that frame: its mean over frames is large and its
  spread (RMS distance of the per-frame residuals from the mean) small. Marker noise and
  fitting errors have a mean near zero or a large spread.
- **PVE** (per-vertex error) against a true mesh: Euclidean distance per vertex; by body
  region, the regions being groups of joints (:data:`REGIONS`) and each vertex belonging to
  the joint that skins it most (largest skinning weight).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fitting.correspondence import bone_frame_index, correspondence_vertex_ids, h36m32_from_smplx
from fitting.joint_limits import BODY_JOINT_NAMES, bone_axes, limit_violation_deg, swing_twist
from fitting.joint_sets import SMPLX55
from fitting.smplx_params import SMPLX_FRAME_PARAM_DIMS

NUM_BODY = 21
"""Body joints in ``body_pose`` (smplx joints 1..21)."""

LIMB_JOINTS: dict[str, str] = {
    "left_upper_arm": "left_shoulder", "right_upper_arm": "right_shoulder",
    "left_forearm": "left_elbow", "right_forearm": "right_elbow",
    "left_thigh": "left_hip", "right_thigh": "right_hip",
    "left_shin": "left_knee", "right_shin": "right_knee",
}
"""Limb -> the smplx body joint whose rotation turns it (its twist is the limb's twist)."""

REGIONS: dict[str, tuple[str, ...]] = {
    "head": ("neck", "head", "jaw", "left_eye_smplhf", "right_eye_smplhf"),
    "torso": ("pelvis", "spine1", "spine2", "spine3", "left_collar", "right_collar"),
    "upper_arms": ("left_shoulder", "right_shoulder"),
    "forearms": ("left_elbow", "right_elbow"),
    "hands": ("left_wrist", "right_wrist", *SMPLX55.names[25:55]),
    "thighs": ("left_hip", "right_hip"),
    "shins": ("left_knee", "right_knee"),
    "feet": ("left_ankle", "right_ankle", "left_foot", "right_foot"),
}
"""Body regions for PVE: groups of smplx55 joints (every joint in exactly one region)."""

PROBE_M = 1e-3
"""Self-intersection probe: distance outside the surface along the vertex normal, metres."""
NEIGHBOURHOOD_M = 0.05
"""A vertex's own neighbourhood: triangles with a vertex within this rest-pose distance."""
DEPTH_CAP_M = 0.05
"""Self-intersection depths are searched up to this distance (deeper reads as the cap; the
neighbourhood bounds what can be measured anyway)."""


# ----------------------------------------------------------------------------- rotations


def rotvec_norms(global_orient: np.ndarray, body_pose: np.ndarray) -> np.ndarray:
    """(..., 22) rotation angles (radians) of global_orient (..., 3) and body_pose (..., 63)."""
    rot = np.concatenate([global_orient[..., None, :], body_pose.reshape(*body_pose.shape[:-1], NUM_BODY, 3)], -2)
    return np.linalg.norm(rot, axis=-1)


def model_bone_axes(rest_joints55: np.ndarray) -> np.ndarray:
    """(21, 3) unit rest bone axes of the body joints (model frame) from rest joints (55, 3)."""
    return bone_axes(torch.as_tensor(rest_joints55, dtype=torch.float64)).numpy()


def limit_violations_deg(body_pose: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(..., 21) degrees beyond the anatomical limits per body joint (0 inside).

    Args:
        body_pose: (..., 63) smplx body_pose, radians (parent frames).
        axes: (21, 3) unit rest bone axes (:func:`model_bone_axes`).
    """
    pose = torch.as_tensor(body_pose, dtype=torch.float64).unflatten(-1, (NUM_BODY, 3))
    return limit_violation_deg(pose, torch.as_tensor(axes, dtype=torch.float64)).numpy()


def limb_twists_deg(body_pose: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(..., len(LIMB_JOINTS)) twist about the rest bone axis, degrees in [-180, 180], in
    the order of LIMB_JOINTS. body_pose (..., 63) radians; axes (21, 3) unit."""
    idx = [BODY_JOINT_NAMES.index(j) for j in LIMB_JOINTS.values()]
    pose = torch.as_tensor(body_pose, dtype=torch.float64).unflatten(-1, (NUM_BODY, 3))[..., idx, :]
    _, twist = swing_twist(pose, torch.as_tensor(axes[idx], dtype=torch.float64))
    return np.degrees(twist.numpy())


def wrap_deg(angle: np.ndarray) -> np.ndarray:
    """Angles (degrees) wrapped to [-180, 180)."""
    return (np.asarray(angle) + 180.0) % 360.0 - 180.0


# ----------------------------------------------------------------------------- mismatch


H36M32_FRAME_JOINT = bone_frame_index()
"""(32,) the smplx body joint whose world rotation is each h36m32 joint's parent-bone frame
(the named table ``fitting.correspondence.H36M32_BONE_FRAME``; the root's own frame for the root)."""


def fitted_h36m32(joints55: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """(T, 32, 3) h36m32 joints of posed bodies through the named correspondence.

    Args:
        joints55: (T, 55, 3) posed smplx joints, vertices (T, V, 3), world, metres.
    """
    vids = correspondence_vertex_ids()
    return h36m32_from_smplx(torch.as_tensor(joints55), torch.as_tensor(vertices[:, vids])).numpy()


def bone_frame_residuals(mocap: np.ndarray, fitted: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """(T, 32, 3) mocap minus fitted joints in each joint's parent-bone frame, metres.

    Args:
        mocap, fitted: (T, 32, 3) h36m32 joints, world, metres.
        rotations: (T, 22, 3, 3) world rotations of smplx joints 0..21 (``fitting.smplx_params.body_world_rotations``).
    """
    frame = rotations[:, H36M32_FRAME_JOINT]  # (T, 32, 3, 3) world_from_bone
    return np.einsum("tjik,tji->tjk", frame, mocap - fitted)


@dataclass(frozen=True)
class MismatchStats:
    """Per-joint bone-frame residual statistics over frames (h36m32 order)."""

    mean_m: np.ndarray
    """(32, 3) mean residual in the parent-bone frame, metres."""
    spread_m: np.ndarray
    """(32,) RMS distance of the per-frame residuals from their mean, metres."""

    @property
    def mean_norm_m(self) -> np.ndarray:
        """(32,) length of the mean residual, metres."""
        return np.linalg.norm(self.mean_m, axis=-1)

    def flagged(self, min_m: float, ratio: float) -> np.ndarray:
        """(32,) bool: joints whose mean residual is at least ``min_m`` long and at least
        ``ratio`` times its spread (a constant offset: a joint-definition mismatch)."""
        norm = self.mean_norm_m
        return (norm >= min_m) & (norm >= ratio * self.spread_m)


def mismatch_stats(residuals: np.ndarray) -> MismatchStats:
    """Mean and spread over frames of bone-frame residuals (T, 32, 3), metres."""
    mean = residuals.mean(0)
    spread = np.sqrt(((residuals - mean) ** 2).sum(-1).mean(0))
    return MismatchStats(mean, spread)


# ----------------------------------------------------------------------------- mesh


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals (zero for vertices in no face).

    vertices (V, 3) any unit; faces (F, 3) int, outward-oriented.
    """
    v = vertices[faces]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(length > 0, n / np.where(length > 0, length, 1.0), 0.0)


def intruding_vertices(vertices: np.ndarray, faces: np.ndarray, probe_m: float = PROBE_M) -> np.ndarray:
    """(V,) bool: vertices inside another part of the mesh (winding number > 0.5 at
    ``probe_m`` outside along the normal). vertices (V, 3) metres; faces (F, 3)."""
    from sampling.sdf import INSIDE_WINDING, winding_number

    normals = vertex_normals(vertices, faces)
    w = winding_number(vertices + probe_m * normals, vertices, faces, backend="cpu")
    return (w > INSIDE_WINDING) & (np.abs(normals).sum(-1) > 0)


def _point_triangle_sqdist(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N,) squared distance from points p (N, 3) to triangles (a, b, c) (N, 3) each, pairwise
    (Ericson, *Real-Time Collision Detection*, closest point on a triangle)."""
    dot = lambda x, y: np.einsum("ni,ni->n", x, y)  # noqa: E731
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = dot(ab, ap), dot(ac, ap)
    bp = p - b
    d3, d4 = dot(ab, bp), dot(ac, bp)
    cp = p - c
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = va + vb + vc
    with np.errstate(divide="ignore", invalid="ignore"):
        v = vb / denom
        w = vc / denom
        q = a + v[:, None] * ab + w[:, None] * ac  # interior
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    cases = [
        ((d1 <= 0) & (d2 <= 0), a),
        ((d3 >= 0) & (d4 <= d3), b),
        ((d6 >= 0) & (d5 <= d6), c),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + t_ab[:, None] * ab),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + t_ac[:, None] * ac),
        ((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), b + t_bc[:, None] * (c - b)),
    ]
    for mask, point in reversed(cases):  # the first matching case wins
        q = np.where(mask[:, None], point, q)
    d = p - q
    return dot(d, d)


def self_intersection_depth(vertices: np.ndarray, faces: np.ndarray, rest_vertices: np.ndarray,
                            excluded: np.ndarray | None = None, *, probe_m: float = PROBE_M,
                            neighbourhood_m: float = NEIGHBOURHOOD_M, cap_m: float = DEPTH_CAP_M) -> np.ndarray:
    """(V,) self-intersection depth per vertex, metres (0 for vertices that do not intrude).

    Args:
        vertices: (V, 3) posed mesh, metres. faces: (F, 3) int, outward-oriented.
        rest_vertices: (V, 3) the same mesh in its rest pose (defines each vertex's own
            neighbourhood: triangles with a vertex within ``neighbourhood_m`` there).
        excluded: (V,) bool vertices never counted (``intruding_vertices`` of the rest pose).
    See the module docstring for the definition.
    """
    from scipy.spatial import cKDTree

    depth = np.zeros(len(vertices))
    inside = intruding_vertices(vertices, faces, probe_m)
    if excluded is not None:
        inside &= ~excluded
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return depth
    tri = vertices[faces]
    centres = tri.mean(1)
    radius = np.linalg.norm(tri - centres[:, None], axis=-1).max(-1)  # (F,) centroid to farthest corner
    lists = cKDTree(centres).query_ball_point(vertices[idx], cap_m + radius.max())
    vi = np.repeat(idx, [len(x) for x in lists])
    fi = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
    # own neighbourhood: any corner of the triangle near the vertex in the rest pose
    rest_d = np.linalg.norm(rest_vertices[faces[fi]] - rest_vertices[vi][:, None], axis=-1).min(-1)
    keep = rest_d > neighbourhood_m
    vi, fi = vi[keep], fi[keep]
    # prune: a triangle is at least (centroid distance - its radius) away, and the nearest
    # centroid (a point of its triangle) bounds the answer from above
    cd = np.linalg.norm(centres[fi] - vertices[vi], axis=-1)
    bound = np.full(len(vertices), np.inf)
    np.minimum.at(bound, vi, cd)
    keep = cd - radius[fi] <= bound[vi]
    vi, fi = vi[keep], fi[keep]
    d = np.full(len(vertices), cap_m)
    if vi.size:
        sq = _point_triangle_sqdist(vertices[vi], tri[fi, 0], tri[fi, 1], tri[fi, 2])
        np.minimum.at(d, vi, np.sqrt(sq))
    depth[idx] = np.minimum(d[idx], cap_m)
    return depth


def vertex_regions(lbs_weights: np.ndarray) -> np.ndarray:
    """(V,) index into REGIONS of each vertex, by the joint with its largest skinning weight
    (lbs_weights (V, 55))."""
    region_of_joint = np.empty(len(SMPLX55), dtype=np.int64)
    for r, joints in enumerate(REGIONS.values()):
        for name in joints:
            region_of_joint[SMPLX55.index(name)] = r
    return region_of_joint[np.asarray(lbs_weights).argmax(1)]


def per_vertex_error(vertices: np.ndarray, true_vertices: np.ndarray) -> np.ndarray:
    """(..., V) distance per vertex between fitted and true meshes (..., V, 3), same unit."""
    return np.linalg.norm(vertices - true_vertices, axis=-1)


def region_means(errors: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(..., len(REGIONS)) mean of per-vertex values (..., V) over each region's vertices."""
    counts = np.bincount(regions, minlength=len(REGIONS)).astype(np.float64)
    onehot = np.zeros((errors.shape[-1], len(REGIONS)))
    onehot[np.arange(errors.shape[-1]), regions] = 1.0
    return (errors @ onehot) / np.maximum(counts, 1.0)


# ----------------------------------------------------------------------------- posing


def posed_bodies(model, params: dict[str, np.ndarray], rows: np.ndarray | None = None,
                 chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """smplx forward of fit parameters: (vertices (T, V, 3), joints55 (T, 55, 3)) float64.

    Args:
        model: a float64 ``smplx.SMPLX`` (e.g. ``fitting.bodymodel.cached_body_model_f64``).
        params: smplx kwargs as stored in a fit npz: ``betas (NB,)``, per-frame (T_all, ...)
            ``global_orient``, ``body_pose``, ``transl``, hands, face, ``expression``.
        rows: (T,) rows to pose (default all).
    """
    keys = tuple(SMPLX_FRAME_PARAM_DIMS)
    n = len(params["transl"])
    rows = np.arange(n) if rows is None else np.asarray(rows)
    verts, joints = [], []
    for s in range(0, len(rows), chunk):
        r = rows[s:s + chunk]
        kwargs = {k: torch.as_tensor(np.asarray(params[k])[r], dtype=torch.float64) for k in keys if k in params}
        kwargs["betas"] = torch.as_tensor(np.asarray(params["betas"]), dtype=torch.float64).reshape(1, -1) \
            .expand(len(r), -1)
        with torch.no_grad():
            out = model(**kwargs)
        verts.append(out.vertices.numpy())
        joints.append(out.joints[:, :55].numpy())
    if not verts:
        v = model.v_template.shape[0]
        return np.zeros((0, v, 3)), np.zeros((0, 55, 3))
    return np.concatenate(verts), np.concatenate(joints)


def rest_body(model, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3), joints55 (55, 3)) of the shape ``betas`` in the rest pose, float64."""
    zeros = lambda n: np.zeros((1, n))  # noqa: E731
    params = {"betas": betas, "global_orient": zeros(3), "body_pose": zeros(63), "transl": zeros(3),
              "left_hand_pose": zeros(45), "right_hand_pose": zeros(45), "jaw_pose": zeros(3),
              "leye_pose": zeros(3), "reye_pose": zeros(3),
              "expression": zeros(int(getattr(model, "num_expression_coeffs", 10)))}
    v, j = posed_bodies(model, params)
    return v[0], j[0]


RAD_TO_DEG = 180.0 / math.pi
