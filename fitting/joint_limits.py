"""Anatomical limits of the 21 SMPL-X body joints as named data, and swing/twist geometry.

Each body joint's local rotation ``R`` (smplx ``body_pose``, parent frame, which at rest is
the model frame: y up, +z the body's front, +x the body's left) is split as
``R = R_swing @ R_twist``: first a twist about the joint's **bone axis** ``a`` (the rest
direction from the joint to its child, see ``BONE_CHILD``), then a swing whose rotation
vector is perpendicular to ``a`` (the bone's new direction is ``R_swing a``).

Limits per joint (``JOINT_LIMITS``, degrees, signed by the right-hand rule):
- swing: the swing rotation vector ``s`` (⟂ a) has components ``s_u = s·u``, ``s_v = s·v``
  on two axes ⟂ a: ``u`` = the model axis ``swing_ref`` ("x" or "y") made ⟂ a, ``v = a × u``.
  The allowed region is an ellipse per quadrant with semi-axes ``u_range`` / ``v_range``
  (the range's min for negative components, its max for positive ones); a swing outside is
  in violation by its radial distance to that boundary.
- twist: the twist angle about ``a`` lies in ``twist_range``.

Sources (public ranges of motion, active, adults): AAOS, *Joint Motion: Method of Measuring
and Recording* (American Academy of Orthopaedic Surgeons, 1965) and Norkin & White,
*Measurement of Joint Motion: A Guide to Goniometry* (its AAOS / AMA tables): hip, knee,
ankle/foot, shoulder, elbow, forearm, wrist, cervical and thoracolumbar spine. The
sternoclavicular ranges follow Kapandji, *The Physiology of the Joints*, vol. 1 (clavicle
elevation ~45°, depression ~10°, protraction/retraction ~30°, axial rotation ~30-45°).
SMPL-X joints lump anatomical joints: the three spine joints each take ``SPINE_SHARE`` of
the AAOS thoracolumbar range, neck and head each ``CERVICAL_SHARE`` of the cervical range;
forearm pronation/supination is carried by the elbow joint (its twist); the few motions no
table measures (knee varus/valgus, elbow ab/adduction, axial rotation at wrist, ankle and
toes) get small tolerances, marked "tol." below. Left-side and centre joints are given; right
joints are their mirror images (``mirrored``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from fitting.joint_sets import SMPLX55
from fitting.lbs_subset import right_jacobian, rodrigues
from fitting.rotations import quat_of_rotvec, rotvec_of_quat

BODY_JOINT_NAMES = SMPLX55.names[1:22]
"""smplx's ``body_pose`` joints in order (= ``smplx.joint_names.JOINT_NAMES[1:22]``)."""

DEG = math.pi / 180.0


@dataclass(frozen=True)
class JointLimit:
    """Allowed swing and twist of one joint, degrees, in its rest frame (module docstring)."""

    swing_ref: str
    """Model axis ("x" or "y") that, made perpendicular to the bone axis, is the swing axis u."""
    u_range: tuple[float, float]
    """(min, max) swing component about u, degrees; min < 0 < max."""
    v_range: tuple[float, float]
    """(min, max) swing component about v = a × u, degrees; min < 0 < max."""
    twist_range: tuple[float, float]
    """(min, max) twist about the bone axis a, degrees; min < 0 < max."""
    note: str = ""
    """What the signed ranges mean anatomically, for the left side / centre."""


def _flip(r: tuple[float, float]) -> tuple[float, float]:
    return (-r[1], -r[0])


def mirrored(lim: JointLimit) -> JointLimit:
    """The limit of the mirror-image joint (x -> -x): rotation vectors map as
    (wx, wy, wz) -> (wx, -wy, -wz); the bone axis, u and v follow, so the twist flips sign,
    and of the swing components the one about the mirrored model axis flips."""
    if lim.swing_ref == "x":
        return JointLimit("x", lim.u_range, _flip(lim.v_range), _flip(lim.twist_range), "mirror: " + lim.note)
    return JointLimit("y", _flip(lim.u_range), lim.v_range, _flip(lim.twist_range), "mirror: " + lim.note)


# AAOS thoracolumbar and cervical spine ranges (degrees) and the share of them that one
# SMPL-X joint may take (several joints bend together; each may take more than 1/n).
AAOS_THORACOLUMBAR = {"flexion": 80.0, "extension": 25.0, "lateral": 35.0, "rotation": 45.0}
AAOS_CERVICAL = {"flexion": 45.0, "extension": 45.0, "lateral": 45.0, "rotation": 60.0}
SPINE_SHARE = 0.6
CERVICAL_SHARE = 0.75


def _spine_like(rom: dict, share: float, note: str) -> JointLimit:
    # bone axis +y; u = x: +flexion (bends forward); v = y × x = -z: + bends to the body's left.
    return JointLimit("x", (-share * rom["extension"], share * rom["flexion"]),
                      (-share * rom["lateral"], share * rom["lateral"]),
                      (-share * rom["rotation"], share * rom["rotation"]), note)


_LEFT_AND_CENTRE: dict[str, JointLimit] = {
    # leg, bone axis ~ -y. u = x: -flexion (AAOS 120) / +extension (30); v = z: +abduction (45)
    # / -adduction (30); twist about -y: +internal (45) / -external (45).
    "left_hip": JointLimit("x", (-120.0, 30.0), (-30.0, 45.0), (-45.0, 45.0),
                           "u: flexion-/extension+, v: abduction+, twist: internal+"),
    # u = x: +flexion (AAOS 135) / -hyperextension (10, Norkin & White); v: varus/valgus tol. 10;
    # twist: tibial rotation 30 (Norkin & White, knee flexed).
    "left_knee": JointLimit("x", (-10.0, 135.0), (-10.0, 10.0), (-30.0, 30.0),
                            "u: flexion+, v: varus/valgus (tol.), twist: tibial rotation"),
    "spine1": _spine_like(AAOS_THORACOLUMBAR, SPINE_SHARE, "u: flexion+, v: lateral flexion left+, twist: rotation"),
    # bone axis ankle -> foot (forward, down). u = x: -dorsiflexion (AAOS 20) / +plantarflexion (50);
    # v ~ +y: +abduction (toe-out, 10) / -adduction (20) (Norkin & White forefoot);
    # twist about the foot axis: +eversion (15) / -inversion (35) (AAOS foot).
    "left_ankle": JointLimit("x", (-20.0, 50.0), (-20.0, 10.0), (-35.0, 15.0),
                             "u: dorsiflexion-/plantarflexion+, v: abduction+, twist: eversion+"),
    "spine2": _spine_like(AAOS_THORACOLUMBAR, SPINE_SHARE, "u: flexion+, v: lateral flexion left+, twist: rotation"),
    "spine3": _spine_like(AAOS_THORACOLUMBAR, SPINE_SHARE, "u: flexion+, v: lateral flexion left+, twist: rotation"),
    # toes (metatarsophalangeal): u = x: -extension (AAOS great toe 70) / +flexion (45); tol. 15 on
    # the other axes.
    "left_foot": JointLimit("x", (-70.0, 45.0), (-15.0, 15.0), (-15.0, 15.0),
                            "u: toe extension-/flexion+, v and twist: tol."),
    "neck": _spine_like(AAOS_CERVICAL, CERVICAL_SHARE, "u: flexion+, v: lateral flexion left+, twist: rotation"),
    # clavicle, bone axis ~ +x. u = y: +retraction / -protraction (30); v = z: +elevation (45) /
    # -depression (10); twist: axial rotation (45) (Kapandji).
    "left_collar": JointLimit("y", (-30.0, 30.0), (-10.0, 45.0), (-45.0, 45.0),
                              "u: retraction+, v: elevation+, twist: axial rotation"),
    "head": _spine_like(AAOS_CERVICAL, CERVICAL_SHARE, "u: flexion+, v: lateral flexion left+, twist: rotation"),
    # arm, bone axis +x (T-pose). u = y: -horizontal flexion (forward, AAOS 135) / +extension
    # (backward, AAOS extension 60); v = z: +elevation above horizontal (abduction 180 - 90) /
    # -lowering (90 to the side + 45 adduction across the body); twist about +x:
    # +internal (AAOS 70) / -external (90).
    "left_shoulder": JointLimit("y", (-135.0, 60.0), (-135.0, 90.0), (-90.0, 70.0),
                                "u: forward-/backward+, v: up+/down-, twist: internal+"),
    # u = y: -flexion (AAOS 150) / +hyperextension (10); v: tol. 15; twist: forearm
    # pronation / supination (AAOS 80 each), which SMPL-X carries at the elbow.
    "left_elbow": JointLimit("y", (-150.0, 10.0), (-15.0, 15.0), (-80.0, 80.0),
                             "u: flexion-, v: tol., twist: pronation/supination"),
    # hand, bone axis wrist -> middle finger base (+x), palm down. u = y: -radial (AAOS 20) /
    # +ulnar deviation (30); v = z: +extension (70) / -flexion (80); twist: tol. 30 (no axial
    # rotation at the radiocarpal joint; the model's skinning shares forearm rotation).
    "left_wrist": JointLimit("y", (-20.0, 30.0), (-80.0, 70.0), (-30.0, 30.0),
                             "u: radial-/ulnar+, v: extension+/flexion-, twist: tol."),
}


def _build_table() -> dict[str, JointLimit]:
    table = {}
    for name in BODY_JOINT_NAMES:
        if name in _LEFT_AND_CENTRE:
            table[name] = _LEFT_AND_CENTRE[name]
        else:
            table[name] = mirrored(_LEFT_AND_CENTRE["left_" + name.removeprefix("right_")])
    return table


JOINT_LIMITS: dict[str, JointLimit] = _build_table()
"""smplx body joint name -> its anatomical limit (all 21 body joints)."""

BONE_CHILD: dict[str, str | None] = {
    "left_hip": "left_knee", "right_hip": "right_knee", "spine1": "spine2",
    "left_knee": "left_ankle", "right_knee": "right_ankle", "spine2": "spine3",
    "left_ankle": "left_foot", "right_ankle": "right_foot", "spine3": "neck",
    "left_foot": None, "right_foot": None, "neck": "head",
    "left_collar": "left_shoulder", "right_collar": "right_shoulder", "head": None,
    "left_shoulder": "left_elbow", "right_shoulder": "right_elbow",
    "left_elbow": "left_wrist", "right_elbow": "right_wrist",
    "left_wrist": "left_middle1", "right_wrist": "right_middle1",
}
"""Child that defines each body joint's bone axis (joint -> child, rest pose). Joints with
several children: spine3 -> neck (not the collars), wrists -> middle finger base. None: a
leaf of the body (feet, head; the head's jaw/eyes point nowhere useful) uses its own parent
bone's direction (parent -> joint)."""


def bone_axes(rest_joints: torch.Tensor) -> torch.Tensor:
    """(..., 21, 3) unit bone axes of the body joints from rest joints (..., 55, 3), model frame."""
    idx_j, idx_c = [], []
    for name in BODY_JOINT_NAMES:
        j = SMPLX55.index(name)
        child = BONE_CHILD[name]
        if child is None:
            idx_j.append(SMPLX55.parents[j])
            idx_c.append(j)
        else:
            idx_j.append(j)
            idx_c.append(SMPLX55.index(child))
    d = rest_joints[..., idx_c, :] - rest_joints[..., idx_j, :]
    return d / torch.linalg.norm(d, dim=-1, keepdim=True)


@functools.lru_cache(maxsize=16)
def limit_arrays(dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The table as tensors: ``ref (21, 3)`` unit model axes, ``lower (21, 3)`` and
    ``upper (21, 3)`` radians of [u, v, twist] per body joint (cached: do not modify)."""
    axes = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0)}
    lims = [JOINT_LIMITS[n] for n in BODY_JOINT_NAMES]
    ref = torch.tensor([axes[lim.swing_ref] for lim in lims], dtype=dtype, device=device)
    lo = torch.tensor([[lim.u_range[0], lim.v_range[0], lim.twist_range[0]] for lim in lims],
                      dtype=dtype, device=device) * DEG
    hi = torch.tensor([[lim.u_range[1], lim.v_range[1], lim.twist_range[1]] for lim in lims],
                      dtype=dtype, device=device) * DEG
    return ref, lo, hi


# ----------------------------------------------------------------------------- geometry


def swing_twist(rotvec: torch.Tensor, bone_axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split rotations as ``R(rotvec) = R(swing) @ R(twist * bone_axis)``.

    Args:
        rotvec: (..., 3) axis-angle, radians, any norm.
        bone_axis: (..., 3) unit axis (broadcasts with rotvec), same frame.
    Returns:
        swing (..., 3) rotation vector perpendicular to bone_axis, norm in [0, π];
        twist (...,) angle about bone_axis, radians in [-π, π].
    Smooth (finite forward-mode derivatives) except at swings of exactly π.
    """
    w, v = quat_of_rotvec(rotvec)
    sign = torch.where(w < 0, -1.0, 1.0).to(w.dtype)
    w, v = w * sign, v * sign[..., None]
    a = bone_axis.expand_as(v)
    t = (v * a).sum(-1)
    n2 = w * w + t * t
    n = torch.sqrt(n2.clamp_min(1e-30))
    twist = 2.0 * torch.atan2(t, w)
    v_perp = v - t[..., None] * a
    s2 = (v_perp * v_perp).sum(-1)
    s_small = s2 < 1e-14
    s = torch.sqrt(torch.where(s_small, torch.ones_like(s2), s2))
    # swing quaternion (n, (w v_perp - t v×a) / n); its rotation vector is axis * 2 atan2(|v_perp|, n)
    ratio = torch.where(s_small, 2.0 / n, 2.0 * torch.atan2(s, n) / s)
    swing = (w[..., None] * v_perp - t[..., None] * torch.cross(v, a, dim=-1)) * (ratio / n)[..., None]
    return swing, twist


def _frames(bone_axes_: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Swing axes u, v (21, 3) perpendicular to bone axes (21, 3), from model axes ref (21, 3)."""
    u = ref - (ref * bone_axes_).sum(-1, keepdim=True) * bone_axes_
    u = u / torch.linalg.norm(u, dim=-1, keepdim=True)
    return u, torch.cross(bone_axes_, u, dim=-1)


def _against_limits(body_pose: torch.Tensor, bone_axes_: torch.Tensor, slack_rad: float = 0.0) -> dict:
    """The swing/twist split of body_pose (..., 21, 3) against the limits (each range widened
    by slack_rad, within ±π): what projection and the hinges share."""
    ref, lo, hi = limit_arrays(body_pose.dtype, body_pose.device)
    if slack_rad:
        lo, hi = (lo - slack_rad).clamp_min(-math.pi), (hi + slack_rad).clamp_max(math.pi)
    axes = bone_axes_.to(body_pose.dtype)
    u, v = _frames(axes, ref)
    swing, twist = swing_twist(body_pose, axes)
    su, sv = (swing * u).sum(-1), (swing * v).sum(-1)
    lu = torch.where(su >= 0, hi[:, 0], -lo[:, 0])
    lv = torch.where(sv >= 0, hi[:, 1], -lo[:, 1])
    rho2 = (su / lu) ** 2 + (sv / lv) ** 2
    out = rho2 > 1.0
    return dict(lo=lo, hi=hi, axes=axes, u=u, v=v, swing=swing, twist=twist, su=su, sv=sv, lu=lu, lv=lv, out=out,
                rho=torch.sqrt(torch.where(out, rho2, torch.ones_like(rho2))),  # 1 inside
                above=twist > hi[:, 2], below=twist < lo[:, 2])


def _hinges(body_pose: torch.Tensor, bone_axes_: torch.Tensor) -> dict[str, torch.Tensor]:
    """``_against_limits`` plus the hinges: every part that ``limit_excess`` and
    ``limit_residual_jacobian`` read (see there)."""
    h = _against_limits(body_pose, bone_axes_)
    su, sv, out, rho, twist, lo, hi = h["su"], h["sv"], h["out"], h["rho"], h["twist"], h["lo"], h["hi"]
    mag2 = su * su + sv * sv
    mag = torch.sqrt(torch.where(out, mag2, torch.ones_like(mag2)))
    return dict(h, mag=mag, swing_ex=torch.where(out, mag * (1.0 - 1.0 / rho), torch.zeros_like(mag)),
                twist_ex=torch.relu(twist - hi[:, 2]) + torch.relu(lo[:, 2] - twist))


def limit_excess(body_pose: torch.Tensor, bone_axes_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How far each body joint is beyond its limits.

    Args:
        body_pose: (..., 21, 3) axis-angle of smplx's body joints (parent frame), radians.
        bone_axes_: (21, 3) unit rest bone axes (``bone_axes``), model frame.
    Returns:
        swing excess (..., 21) and twist excess (..., 21), radians, 0 inside the limits:
        the radial distance of the swing vector beyond its elliptical boundary and the twist
        angle's distance beyond [min, max].
    """
    h = _hinges(body_pose, bone_axes_)
    return h["swing_ex"], h["twist_ex"]


def limit_violation_deg(body_pose: torch.Tensor, bone_axes_: torch.Tensor) -> torch.Tensor:
    """(..., 21) degrees beyond the limits per body joint (0 inside): the larger of the
    swing and twist excess. body_pose (..., 21, 3) radians; bone_axes_ (21, 3) unit."""
    s, t = limit_excess(body_pose, bone_axes_)
    return torch.maximum(s, t) / DEG


def limit_residual(body_pose: torch.Tensor, bone_axes_: torch.Tensor) -> torch.Tensor:
    """(..., 42) hinge residuals, radians: [swing excess (21), twist excess (21)] of
    body_pose (..., 63) axis-angle (radians); |r|^2 is the limit energy (LM form)."""
    s, t = limit_excess(body_pose.unflatten(-1, (21, 3)), bone_axes_)
    return torch.cat([s, t], -1)


def check_table() -> None:
    """Raise ValueError when the table misses a body joint or a range does not contain 0."""
    missing = [n for n in BODY_JOINT_NAMES if n not in JOINT_LIMITS]
    if missing:
        raise ValueError(f"joint limit table misses {missing}")
    for name, lim in JOINT_LIMITS.items():
        for r in (lim.u_range, lim.v_range, lim.twist_range):
            if not r[0] < 0 < r[1] or not np.all(np.abs(r) <= 180):
                raise ValueError(f"joint limit {name}: range {r} must hold 0 and lie in [-180, 180]")


def _swing_twist_jacobian(rotvec: torch.Tensor, axes: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                          swing: torch.Tensor, twist: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) d [swing·u, swing·v, twist] / d rotvec, analytically.

    With R(θ) = R(σ) R(τ a) and a body-frame increment ω = J_r(θ) dθ (right Jacobian):
    R(θ) exp(ω) = R(σ) exp(R(τ a) ω) R(τ a), and to first order
    R(τ a) ω = J_r(σ) dσ + dτ a with dσ = dsu u + dsv v (the swing stays perpendicular to a),
    so [dsu, dsv, dτ] = [J_r(σ) u | J_r(σ) v | a]^-1 R(τ a) J_r(θ) dθ.

    Args: rotvec (..., 3); axes, u, v (..., 3) unit bone axis and swing axes; swing (..., 3)
    and twist (...,) from ``swing_twist``. Singular only at swings of π.
    """
    jr_swing = right_jacobian(swing)
    m = torch.stack([(jr_swing @ u.expand_as(swing)[..., None])[..., 0],
                     (jr_swing @ v.expand_as(swing)[..., None])[..., 0], axes.expand_as(swing)], -1)
    r_twist = rodrigues(twist[..., None] * axes)
    return torch.linalg.solve(m, r_twist @ right_jacobian(rotvec))


def limit_residual_jacobian(body_pose: torch.Tensor, bone_axes_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hinge residuals and their exact Jacobian, for the LM solver.

    Args:
        body_pose: (B, 63) axis-angle of the 21 body joints, radians.
        bone_axes_: (21, 3) unit rest bone axes.
    Returns:
        r (B, 42) as ``limit_residual``; J (B, 42, 63), d r / d body_pose: each joint's two
        residuals depend on its own 3 components only, through d [swing u, swing v, twist] /
        d rotvec (``_swing_twist_jacobian``, closed form; autograd through the decomposition
        cost a short sequence's fit 15 %, forward mode 80 %) and the hinges' own derivatives.
    """
    b = body_pose.shape[0]
    rv = body_pose.unflatten(-1, (21, 3))
    h = _hinges(rv, bone_axes_)
    r = torch.cat([h["swing_ex"], h["twist_ex"]], -1)
    jac = body_pose.new_zeros((b, 2, 21, 21, 3))
    active = h["out"] | h["above"] | h["below"]  # (B, 21): joints with a nonzero hinge (usually few)
    if bool(active.any()):
        f, j = torch.nonzero(active, as_tuple=True)
        d = _swing_twist_jacobian(rv[f, j], h["axes"][j], h["u"][j], h["v"][j], h["swing"][f, j],
                                  h["twist"][f, j])  # (K, 3, 3)
        # swing_ex = |s| (1 - 1/rho): d/ds = s/|s| (1 - 1/rho) + |s| s / (l^2 rho^3)
        s_fj = torch.stack([h["su"][f, j], h["sv"][f, j]], -1)
        m_fj, rho_fj = h["mag"][f, j, None], h["rho"][f, j, None]
        l2 = torch.stack([h["lu"][f, j], h["lv"][f, j]], -1) ** 2
        g_swing = s_fj / m_fj * (1.0 - 1.0 / rho_fj) + m_fj * s_fj / (l2 * rho_fj**3)
        g_swing = torch.where(h["out"][f, j, None], g_swing, torch.zeros_like(g_swing))
        g_twist = h["above"][f, j].to(rv.dtype) - h["below"][f, j].to(rv.dtype)
        jac[f, 0, j, j] = (g_swing[:, None, :] @ d[:, :2])[:, 0]
        jac[f, 1, j, j] = g_twist[:, None] * d[:, 2]
    return r, jac.flatten(-2).flatten(1, 2)


def project_to_limits(body_pose: torch.Tensor, bone_axes_: torch.Tensor, slack_rad: float = 0.0) -> torch.Tensor:
    """(..., 21, 3) the nearest rotations within the limits (twist clamped to its range, swing
    scaled back along its ray to the elliptical boundary); joints inside are returned as
    given (bit for bit). body_pose (..., 21, 3) radians; bone_axes_ (21, 3) unit;
    slack_rad widens every range on both sides (kept within ±π)."""
    h = _against_limits(body_pose, bone_axes_, slack_rad)
    out = h["out"] | h["above"] | h["below"]
    if not bool(out.any()):  # the usual case in a fit: nothing to recompose
        return body_pose
    axes = h["axes"]
    twist_c = torch.minimum(torch.maximum(h["twist"], h["lo"][:, 2]), h["hi"][:, 2])
    swing = h["swing"] / h["rho"][..., None]  # onto the boundary where beyond (rho 1 inside)
    ws, vs = quat_of_rotvec(swing)
    wt, st = torch.cos(0.5 * twist_c), torch.sin(0.5 * twist_c)
    vt = st[..., None] * axes
    # q = q_swing * q_twist
    w = ws * wt - (vs * vt).sum(-1)
    vec = ws[..., None] * vt + wt[..., None] * vs + torch.cross(vs, vt, dim=-1)
    return torch.where(out[..., None], rotvec_of_quat(w, vec), body_pose)


def range_normalised_axes(bone_axes_: torch.Tensor) -> torch.Tensor:
    """(63, 63) block-diagonal map M of body-pose rotation vectors (63,) to each joint's
    [swing u, swing v, twist] components divided by the half range of motion on that axis
    (the mean of |min| and max, radians): |M θ|² is a pose prior whose spread on every
    joint axis follows its range of motion (small-angle swing/twist, exact at rest)."""
    ref, lo, hi = limit_arrays(bone_axes_.dtype, bone_axes_.device)
    u, v = _frames(bone_axes_, ref)
    half = 0.5 * (hi - lo)  # (21, 3)
    rows = torch.stack([u, v, bone_axes_], -2) / half[..., None]  # (21, 3, 3)
    return torch.block_diag(*rows)
