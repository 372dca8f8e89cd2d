"""Joint sets as named data: names, parents and index maps.

One vocabulary for the whole project: ``h36m32`` (the Human3.6M mocap skeleton),
``h36m17`` (the standard evaluation subset), ``smplx55`` (the SMPL-X kinematic tree),
``smplx144`` (smplx's output joints with face contour) and ``cocowb133`` (H3WB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointSet:
    """A named list of joints with its kinematic parents (-1 for a root)."""

    name: str
    """Identifier used on the command line and in shard attributes."""
    names: tuple[str, ...]
    """Joint names in index order."""
    parents: tuple[int, ...] | None = None
    """Parent index of each joint, or None for sets without a tree (keypoint sets)."""

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


H36M32 = JointSet(
    "h36m32",
    (
        "Hips", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase", "RightToeSite",
        "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "LeftToeSite",
        "Spine", "Spine1", "Neck", "Head", "HeadSite",
        "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftHandThumb", "LeftThumbSite",
        "L_Wrist_End", "LeftWristSite",
        "RightShoulder", "RightArm", "RightForeArm", "RightHand", "RightHandThumb",
        "RightThumbSite", "R_Wrist_End", "RightWristSite",
    ),
    (-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20, 19, 22,
     12, 24, 25, 26, 27, 28, 27, 30),
)

H36M17_FROM_H36M32 = np.array([0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27])
"""Indices of the standard 17 evaluation joints in the 32-joint mocap skeleton."""

H36M17 = JointSet(
    "h36m17",
    (
        "Pelvis", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Spine", "Thorax",
        "Neck/Nose", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist",
    ),
    (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
)

_SMPLX_FINGERS = ("index", "middle", "pinky", "ring", "thumb")

SMPLX55 = JointSet(
    "smplx55",
    (
        "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
        "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
        "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw",
        "left_eye_smplhf", "right_eye_smplhf",
        *(f"{side}_{f}{k}" for side in ("left", "right") for f in _SMPLX_FINGERS for k in (1, 2, 3)),
    ),
    (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
     20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
     21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53),
)

JOINT_SETS = {s.name: s for s in (H36M32, H36M17, SMPLX55)}
"""Joint sets by name; ``cocowb133`` and ``smplx144`` are registered by the H3WB module."""


def get_joint_set(name: str) -> JointSet:
    """The joint set called ``name``; ValueError naming the known sets otherwise."""
    try:
        return JOINT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown joint set {name!r}; known: {', '.join(sorted(JOINT_SETS))}") from None
