"""Procedural human motion for the synthetic release: SMPL-X joint rotations per frame.

Plausible, smooth motion built from a few named behaviours — walking along a curved path,
standing with arm gestures and slow turns, sitting down / standing up, seated gestures —
chosen by the Human3.6M action name. Every angle is a smooth function of time (sums of
sinusoids and smoothsteps) within human joint limits, with rotations about the bending
axes only (no limb twist).

Frames: SMPL-X's model frame is y up, +z the body's front, +x the body's left. Human3.6M's
world is z up (the floor is z = 0). ``global_orient`` maps model-up to world +z and then
turns the body about the world vertical to its heading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from fitting.joint_sets import SMPLX55

BODY_JOINTS = SMPLX55.names[1:22]
"""The 21 joints of smplx's ``body_pose`` (joint indices 1..21), in order."""

DEG = np.pi / 180.0

WALK_ACTIONS = frozenset({"Walking", "WalkDog", "WalkingDog", "WalkTogether", "WalkingTogether"})
SIT_ACTIONS = frozenset({"Sitting", "SittingDown", "Eating"})
"""Actions played seated (Sitting, Eating) or sitting down and standing up (SittingDown)."""

GESTURES = {
    "Directions": "point", "Discussion": "point", "Purchases": "point",
    "Greeting": "wave", "Phoning": "hand_to_ear", "Smoking": "hand_to_mouth",
    "Eating": "hand_to_mouth", "Posing": "both_up", "Photo": "both_up",
    "TakingPhoto": "both_up", "Sitting": "point", "Waiting": "none", "SittingDown": "none",
}
"""Arm behaviour per non-walking action."""

CAPTURE_CENTRE = np.array([0.0, 0.3])
"""World (x, y) in metres that all four cameras of every subject see best: points within
~1.3 m of it, from the floor to 1.9 m, project inside all images (checked on S1..S11)."""


@dataclass(frozen=True)
class BodyDims:
    """Rest-pose measures of one body shape that the motion needs (model frame, metres)."""

    pelvis_height: float
    """Height of the pelvis joint above the soles when standing straight."""
    knee_height: float
    """Height of the knee joints above the soles when standing straight."""
    left_arm_dir: tuple[float, float, float]
    """Unit vector left shoulder → left elbow in the rest pose."""
    right_arm_dir: tuple[float, float, float]
    """Unit vector right shoulder → right elbow in the rest pose."""

    @classmethod
    def from_rest(cls, joints: np.ndarray, vertices: np.ndarray) -> BodyDims:
        """From rest-pose joints (55, 3) and vertices (V, 3), model frame, metres."""
        floor = float(vertices[:, 1].min())
        j = {n: joints[SMPLX55.index(n)] for n in
             ("pelvis", "left_knee", "right_knee", "left_shoulder", "left_elbow",
              "right_shoulder", "right_elbow")}

        def unit(v):
            return tuple(float(x) for x in v / np.linalg.norm(v))

        return cls(
            pelvis_height=float(j["pelvis"][1]) - floor,
            knee_height=0.5 * float(j["left_knee"][1] + j["right_knee"][1]) - floor,
            left_arm_dir=unit(j["left_elbow"] - j["left_shoulder"]),
            right_arm_dir=unit(j["right_elbow"] - j["right_shoulder"]),
        )


@dataclass(frozen=True)
class Motion:
    """SMPL-X body motion of T frames in the Human3.6M world (metres, radians)."""

    global_orient: np.ndarray
    """(T, 3) axis-angle of the root, model frame → world frame."""
    body_pose: np.ndarray
    """(T, 63) axis-angle of the 21 body joints (parent-relative)."""
    pelvis: np.ndarray
    """(T, 3) world position of the pelvis joint (metres, z up)."""


def action_kind(action: str) -> str:
    """"walk", "sit" or "stand" for a Human3.6M action name (canonical or S1-style)."""
    if action in WALK_ACTIONS:
        return "walk"
    if action in SIT_ACTIONS:
        return "sit"
    return "stand"


# --- rotation helpers (batched over frames) ---------------------------------------------------


def _axis_rot(axis, angles) -> np.ndarray:
    """(T,) angles (radians) about a fixed unit axis (3,) → (T, 3, 3)."""
    axis = np.asarray(axis, dtype=np.float64)
    return Rotation.from_rotvec(np.asarray(angles)[:, None] * axis).as_matrix()


def _rx(a):
    return _axis_rot((1.0, 0.0, 0.0), a)


def _ry(a):
    return _axis_rot((0.0, 1.0, 0.0), a)


def _rz(a):
    return _axis_rot((0.0, 0.0, 1.0), a)


def _align(src, dst) -> np.ndarray:
    """(3, 3) minimal rotation taking unit vector src to unit vector dst (no twist)."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    axis = np.cross(src, dst)
    s, c = np.linalg.norm(axis), float(np.dot(src, dst))
    if s < 1e-12:
        return np.eye(3)
    return Rotation.from_rotvec(axis / s * np.arctan2(s, c)).as_matrix()


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _wobble(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """Smooth random variation: two slow sinusoids with random phases, (T,) radians."""
    f = rng.uniform(0.15, 0.6, size=2)
    p = rng.uniform(0, 2 * np.pi, size=2)
    a = rng.uniform(0.3, 1.0, size=2) * amplitude
    return a[0] * np.sin(2 * np.pi * f[0] * t + p[0]) + a[1] * np.sin(2 * np.pi * f[1] * t + p[1])


# --- the behaviours ---------------------------------------------------------------------------


class _Pose:
    """Per-frame local rotations (T, 3, 3) of the body joints, identity unless set."""

    def __init__(self, n: int, dims: BodyDims):
        self.n = n
        self.dims = dims
        self.rot = {name: np.tile(np.eye(3), (n, 1, 1)) for name in BODY_JOINTS}

    def then(self, joint: str, R: np.ndarray) -> None:
        """Apply R after the joint's current local rotation (in the parent frame)."""
        self.rot[joint] = R @ self.rot[joint]

    def arm(self, side: str, flex, abduct, elbow) -> None:
        """Arm hanging at the side, then flexed forward / abducted, elbow bent (radians, (T,))."""
        d = np.array(self.dims.left_arm_dir if side == "left" else self.dims.right_arm_dir)
        sign = 1.0 if side == "left" else -1.0  # +x is the body's left
        hang = np.array([sign * np.sin(10 * DEG), -np.cos(10 * DEG), 0.0])
        shoulder = _rx(-flex) @ _rz(sign * abduct) @ _align(d, hang)
        self.then(f"{side}_shoulder", shoulder)
        bend_axis = np.cross(d, (0.0, 0.0, 1.0))
        self.then(f"{side}_elbow", _axis_rot(bend_axis / np.linalg.norm(bend_axis), elbow))

    def leg(self, side: str, hip_flex, knee, ankle, abduct=None) -> None:
        sign = 1.0 if side == "left" else -1.0
        R = _rx(-hip_flex)
        if abduct is not None:
            R = R @ _rz(sign * abduct)
        self.then(f"{side}_hip", R)
        self.then(f"{side}_knee", _rx(knee))
        self.then(f"{side}_ankle", _rx(-ankle))

    def body_pose(self) -> np.ndarray:
        mats = np.stack([self.rot[name] for name in BODY_JOINTS], axis=1)  # (T, 21, 3, 3)
        return Rotation.from_matrix(mats.reshape(-1, 3, 3)).as_rotvec().reshape(self.n, 63)


def _gesture_arms(pose: _Pose, gesture: str, t: np.ndarray, rng: np.random.Generator) -> None:
    """Arm motion of a standing or seated gesture."""
    n = len(t)
    period = rng.uniform(1.6, 2.6)
    phase = rng.uniform(0, 2 * np.pi)
    bump = 0.5 - 0.5 * np.cos(2 * np.pi * t / period + phase)  # 0..1, smooth
    side = "right" if rng.random() < 0.6 else "left"
    other = "left" if side == "right" else "right"
    rest_flex = 8 * DEG + _wobble(rng, t, 4 * DEG)
    rest_elbow = 15 * DEG + _wobble(rng, t, 5 * DEG)
    zero = np.zeros(n)
    if gesture == "point":
        pose.arm(side, 10 * DEG + 65 * DEG * bump, 10 * DEG * bump, 30 * DEG - 20 * DEG * bump)
        pose.arm(other, rest_flex, zero, rest_elbow)
    elif gesture == "wave":
        pose.arm(side, 30 * DEG + 20 * DEG * bump, 35 * DEG + 10 * DEG * bump,
                 100 * DEG + 25 * DEG * np.sin(2 * np.pi * 1.5 * t + phase))
        pose.arm(other, rest_flex, zero, rest_elbow)
    elif gesture == "hand_to_mouth":
        pose.arm(side, 20 * DEG + 25 * DEG * bump, 10 * DEG + zero, 30 * DEG + 95 * DEG * bump)
        pose.arm(other, 25 * DEG + zero, 5 * DEG + zero, 70 * DEG + _wobble(rng, t, 8 * DEG))
    elif gesture == "hand_to_ear":
        pose.arm(side, 25 * DEG + 5 * bump * DEG, 40 * DEG + zero, 135 * DEG + 5 * DEG * bump)
        pose.arm(other, rest_flex, zero, rest_elbow)
    elif gesture == "both_up":
        for s in ("left", "right"):
            pose.arm(s, 35 * DEG + 30 * DEG * bump, 15 * DEG + zero, 60 * DEG + 50 * DEG * bump)
    else:  # "none": arms hanging with a little life
        pose.arm("left", rest_flex, zero, rest_elbow)
        pose.arm("right", 8 * DEG + _wobble(rng, t, 4 * DEG), zero, 15 * DEG + _wobble(rng, t, 5 * DEG))


def _heading_rotation(heading: np.ndarray) -> np.ndarray:
    """(T,) heading → (T, 3, 3) world_from_model: model-up → world +z, then yaw about z.

    Heading 0 faces world -y; the facing direction is (sin h, -cos h, 0).
    """
    up_to_z = Rotation.from_euler("x", 90, degrees=True).as_matrix()
    return _rz(heading) @ up_to_z


def _heading_of(direction_xy: np.ndarray) -> np.ndarray:
    return np.arctan2(direction_xy[..., 0], -direction_xy[..., 1])


def _walk(n: int, fps: float, dims: BodyDims, rng: np.random.Generator):
    t = np.arange(n) / fps
    pose = _Pose(n, dims)
    speed = rng.uniform(0.9, 1.2)  # m/s
    cadence = rng.uniform(0.8, 0.95)  # gait cycles per second (two steps each)
    radius = rng.uniform(0.8, 1.05)  # a tight circle keeps the person in every view
    centre = CAPTURE_CENTRE + rng.uniform(-0.15, 0.15, size=2)
    turn = 1.0 if rng.random() < 0.5 else -1.0
    alpha = rng.uniform(0, 2 * np.pi) + turn * speed / radius * t
    pelvis_xy = centre + radius * np.stack([np.cos(alpha), np.sin(alpha)], -1)
    heading = _heading_of(turn * np.stack([-np.sin(alpha), np.cos(alpha)], -1))
    phi = 2 * np.pi * cadence * t + rng.uniform(0, 2 * np.pi)

    for side, ph in (("left", phi), ("right", phi + np.pi)):
        hip = 5 * DEG + 22 * DEG * np.sin(ph)
        knee = 6 * DEG + 50 * DEG * (0.5 + 0.5 * np.cos(ph - 0.4)) ** 3
        ankle = 8 * DEG * np.sin(ph + 0.8)
        pose.leg(side, hip, knee, ankle)
        arm_flex = 8 * DEG - 18 * DEG * np.sin(ph)  # swings against the same-side leg
        pose.arm(side, arm_flex, 3 * DEG + np.zeros(n), 18 * DEG + 10 * DEG * np.clip(-np.sin(ph), 0, 1))
    pose.then("spine1", _rx(4 * DEG + np.zeros(n)))
    pose.then("spine3", _ry(-4 * DEG * np.sin(phi)))  # counter-rotation of the chest
    pose.then("head", _rx(_wobble(rng, t, 4 * DEG)) @ _ry(_wobble(rng, t, 8 * DEG)))
    pelvis_twist = _ry(4 * DEG * np.sin(phi))
    z = dims.pelvis_height - 0.02 + 0.015 * np.cos(2 * phi)
    pelvis = np.concatenate([pelvis_xy, z[:, None]], axis=-1)
    return pose, _heading_rotation(heading) @ pelvis_twist, pelvis


def _stand(n: int, fps: float, dims: BodyDims, rng: np.random.Generator, gesture: str):
    t = np.arange(n) / fps
    pose = _Pose(n, dims)
    start = CAPTURE_CENTRE + rng.uniform(-0.6, 0.6, size=2)
    heading = rng.uniform(-np.pi, np.pi) + rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * t / rng.uniform(4, 8))
    sway = 0.03 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    side_dir = np.stack([np.cos(heading), np.sin(heading)], -1)  # roughly the body's side
    pelvis_xy = start + sway[:, None] * side_dir
    for side, sign in (("left", 1.0), ("right", -1.0)):
        knee = 4 * DEG + np.clip(sign * sway / 0.03, 0, 1) * 6 * DEG
        pose.leg(side, 2 * DEG + knee / 2, knee, knee / 2, abduct=3 * DEG + np.zeros(n))
    pose.then("spine1", _rx(2 * DEG + _wobble(rng, t, 2 * DEG)))
    pose.then("spine3", _ry(_wobble(rng, t, 5 * DEG)))
    pose.then("head", _rx(_wobble(rng, t, 6 * DEG)) @ _ry(_wobble(rng, t, 15 * DEG)))
    _gesture_arms(pose, gesture, t, rng)
    z = dims.pelvis_height - 0.01 - 0.01 * np.abs(sway / 0.03)
    pelvis = np.concatenate([pelvis_xy, z[:, None]], axis=-1)
    return pose, _heading_rotation(heading), pelvis


def _sit(n: int, fps: float, dims: BodyDims, rng: np.random.Generator, action: str):
    t = np.arange(n) / fps
    s = np.arange(n) / max(n - 1, 1)  # normalised time 0..1
    pose = _Pose(n, dims)
    if action == "SittingDown":  # stand, sit down, stay, stand up
        seated = _smoothstep((s - 0.1) / 0.35) - _smoothstep((s - 0.65) / 0.3)
    elif action == "Sitting":  # sits down, then stays seated
        seated = _smoothstep(s / 0.4)
    else:  # Eating: seated throughout
        seated = np.ones(n)
    transition = np.sin(np.pi * seated)  # 0 at both ends, 1 mid-way: lean forward to rise/sit
    start = CAPTURE_CENTRE + rng.uniform(-0.4, 0.4, size=2)
    heading = rng.uniform(-np.pi, np.pi) + _wobble(rng, t, 3 * DEG)
    for side in ("left", "right"):
        hip = 88 * DEG * seated + 15 * DEG * transition
        knee = 90 * DEG * seated + 4 * DEG
        pose.leg(side, hip, knee, 3 * DEG * seated, abduct=(3 + 5 * seated) * DEG)
    pose.then("spine1", _rx(30 * DEG * transition + 3 * DEG + _wobble(rng, t, 2 * DEG)))
    pose.then("spine3", _ry(_wobble(rng, t, 5 * DEG)))
    pose.then("head", _rx(_wobble(rng, t, 5 * DEG)) @ _ry(_wobble(rng, t, 12 * DEG)))
    _gesture_arms(pose, GESTURES.get(action, "none"), t, rng)
    z = dims.pelvis_height - 0.01 + (dims.knee_height + 0.02 - dims.pelvis_height) * seated
    # The pelvis moves back over the (fixed) feet as the thighs come up to horizontal.
    facing = np.stack([np.sin(heading), -np.cos(heading)], -1)
    thigh = dims.pelvis_height - dims.knee_height
    pelvis_xy = start - (thigh * np.sin(88 * DEG * seated))[:, None] * facing
    pelvis = np.concatenate([pelvis_xy, z[:, None]], axis=-1)
    return pose, _heading_rotation(heading), pelvis


def make_motion(action: str, n_frames: int, fps: float, dims: BodyDims,
                rng: np.random.Generator) -> Motion:
    """Motion of ``n_frames`` frames at ``fps`` for a Human3.6M action, drawn from ``rng``.

    action: canonical or S1-style action name ("Walking", "WalkingDog", "Eating", ...).
    dims: the body's rest measures (place the feet on the floor, hang the arms).
    """
    kind = action_kind(action)
    if kind == "walk":
        pose, root, pelvis = _walk(n_frames, fps, dims, rng)
    elif kind == "sit":
        pose, root, pelvis = _sit(n_frames, fps, dims, rng, action)
    else:
        pose, root, pelvis = _stand(n_frames, fps, dims, rng, GESTURES.get(action, "point"))
    return Motion(
        global_orient=Rotation.from_matrix(root).as_rotvec(),
        body_pose=pose.body_pose(),
        pelvis=pelvis,
    )
