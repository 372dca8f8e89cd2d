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


# --- whole-body sets for H3WB (owned by the H3WB module's author) ---------------------------

SMPLX144 = JointSet(
    "smplx144",
    (
        *SMPLX55.names,
        # vertex joints, in smplx's VertexJointSelector order
        "nose", "right_eye", "left_eye", "right_ear", "left_ear",
        "left_big_toe", "left_small_toe", "left_heel",
        "right_big_toe", "right_small_toe", "right_heel",
        "left_thumb", "left_index", "left_middle", "left_ring", "left_pinky",
        "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
        # 51 static face landmarks (iBUG-68 points 18..68)
        "right_eye_brow1", "right_eye_brow2", "right_eye_brow3", "right_eye_brow4",
        "right_eye_brow5", "left_eye_brow5", "left_eye_brow4", "left_eye_brow3",
        "left_eye_brow2", "left_eye_brow1", "nose1", "nose2", "nose3", "nose4",
        "right_nose_2", "right_nose_1", "nose_middle", "left_nose_1", "left_nose_2",
        "right_eye1", "right_eye2", "right_eye3", "right_eye4", "right_eye5", "right_eye6",
        "left_eye4", "left_eye3", "left_eye2", "left_eye1", "left_eye6", "left_eye5",
        "right_mouth_1", "right_mouth_2", "right_mouth_3", "mouth_top", "left_mouth_3",
        "left_mouth_2", "left_mouth_1", "left_mouth_5", "left_mouth_4", "mouth_bottom",
        "right_mouth_4", "right_mouth_5", "right_lip_1", "right_lip_2", "lip_top",
        "left_lip_2", "left_lip_1", "left_lip_3", "lip_bottom", "right_lip_3",
        # 17 dynamic face contour points (iBUG-68 points 1..17), only with use_face_contour=True
        *(f"right_contour_{k}" for k in range(1, 9)), "contour_middle",
        *(f"left_contour_{k}" for k in range(8, 0, -1)),
    ),
)
"""smplx's output joints with ``use_face_contour=True`` (order of ``smplx.joint_names.JOINT_NAMES``)."""

_COCO_FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")

COCOWB133 = JointSet(
    "cocowb133",
    (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
        "left_big_toe", "left_small_toe", "left_heel",
        "right_big_toe", "right_small_toe", "right_heel",
        *(f"face-{k}" for k in range(68)),
        *(
            name
            for side in ("left", "right")
            for name in (f"{side}_hand_root",
                         *(f"{side}_{f}{k}" for f in _COCO_FINGERS for k in (1, 2, 3, 4)))
        ),
    ),
)
"""COCO-WholeBody's 133 keypoints (H3WB layout; names as in COCO-WholeBody / mmpose):
0–16 body, 17–22 feet, 23–90 face (iBUG-68 order), 91–111 left hand, 112–132 right hand
(root, then thumb, index, middle, ring, pinky from base to tip)."""

JOINT_SETS.update({s.name: s for s in (SMPLX144, COCOWB133)})


def _cocowb133_from_smplx144() -> np.ndarray:
    import json
    from pathlib import Path

    path = Path(__file__).parent / "data" / "smplx144_to_cocowb133.json"
    index = np.array(json.loads(path.read_text())["smplx_idx_for_cocowb133"], dtype=np.int64)
    if index.shape != (len(COCOWB133),) or index.min() < 0 or index.max() >= len(SMPLX144):
        raise ValueError(f"{path}: expected {len(COCOWB133)} indices into {len(SMPLX144)} joints")
    index.setflags(write=False)
    return index


def cocowb133_from_smplx144() -> np.ndarray:
    """(133,) read-only indices: COCO-WholeBody keypoint k is smplx output joint ``index[k]``.

    Loaded once from ``fitting/data/smplx144_to_cocowb133.json`` (derived by name matching
    mmhuman3d's conventions; hand roots are the SMPL-X wrists).
    """
    global _COCOWB133_FROM_SMPLX144_CACHE
    if _COCOWB133_FROM_SMPLX144_CACHE is None:
        _COCOWB133_FROM_SMPLX144_CACHE = _cocowb133_from_smplx144()
    return _COCOWB133_FROM_SMPLX144_CACHE


_COCOWB133_FROM_SMPLX144_CACHE: np.ndarray | None = None


def __getattr__(name: str):
    # ``COCOWB133_FROM_SMPLX144`` reads its JSON on first access, not at import (PEP 562).
    if name == "COCOWB133_FROM_SMPLX144":
        return cocowb133_from_smplx144()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
