"""The named correspondence from the Human3.6M 32-joint mocap skeleton to SMPL-X.

Each Human3.6M joint is an affine combination (weights sum to 1) of posed SMPL-X skeleton
joints and of posed surface vertices named in ``smplx.vertex_ids.vertex_ids["smplx"]``
(whose indices are fixed by the smplx package, so the same table serves the real SMPL-X
model and the project's synthetic one). The synthetic release makes its mocap through this
table and the fitter fits through it, so on synthetic data the ground truth is exact.
A user's regressor file (17 x V or 32 x V, applied to posed vertices) replaces it.
"""

from __future__ import annotations

import numpy as np
import torch

from fitting.joint_sets import H36M32, SMPLX55

# Landmark vertices hard-coded by smplx (vertex_ids["smplx"]); copied as data so that the
# table needs no import of smplx internals. Checked against smplx in tests.
SMPLX_VERTEX_IDS = {
    "nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6,
    "LBigToe": 5770, "LSmallToe": 5780, "LHeel": 8846,
    "RBigToe": 8463, "RSmallToe": 8474, "RHeel": 8635,
    "lthumb": 5361, "lindex": 4933, "lmiddle": 5058, "lring": 5169, "lpinky": 5286,
    "rthumb": 8079, "rindex": 7669, "rmiddle": 7794, "rring": 7905, "rpinky": 8022,
}

# h36m32 joint -> {smplx55 joint name or "v:<vertex name>": weight}
H36M32_FROM_SMPLX: dict[str, dict[str, float]] = {
    "Hips": {"pelvis": 1.0},
    "RightUpLeg": {"right_hip": 1.0},
    "RightLeg": {"right_knee": 1.0},
    "RightFoot": {"right_ankle": 1.0},
    "RightToeBase": {"right_foot": 1.0},
    "RightToeSite": {"v:RBigToe": 0.5, "v:RSmallToe": 0.5},
    "LeftUpLeg": {"left_hip": 1.0},
    "LeftLeg": {"left_knee": 1.0},
    "LeftFoot": {"left_ankle": 1.0},
    "LeftToeBase": {"left_foot": 1.0},
    "LeftToeSite": {"v:LBigToe": 0.5, "v:LSmallToe": 0.5},
    "Spine": {"spine1": 1.0},
    "Spine1": {"spine3": 1.0},
    "Neck": {"neck": 1.0},
    "Head": {"head": 0.5, "v:nose": 0.5},
    "HeadSite": {"head": 2.0, "neck": -1.0},
    "LeftShoulder": {"left_collar": 1.0},
    "LeftArm": {"left_shoulder": 1.0},
    "LeftForeArm": {"left_elbow": 1.0},
    "LeftHand": {"left_wrist": 1.0},
    "LeftHandThumb": {"left_thumb2": 1.0},
    "LeftThumbSite": {"v:lthumb": 1.0},
    "L_Wrist_End": {"left_middle1": 1.0},
    "LeftWristSite": {"v:lmiddle": 1.0},
    "RightShoulder": {"right_collar": 1.0},
    "RightArm": {"right_shoulder": 1.0},
    "RightForeArm": {"right_elbow": 1.0},
    "RightHand": {"right_wrist": 1.0},
    "RightHandThumb": {"right_thumb2": 1.0},
    "RightThumbSite": {"v:rthumb": 1.0},
    "R_Wrist_End": {"right_middle1": 1.0},
    "RightWristSite": {"v:rmiddle": 1.0},
}


def correspondence_vertex_ids() -> np.ndarray:
    """(K,) int64 indices of the posed vertices the table reads, in a fixed order."""
    names = sorted({k[2:] for row in H36M32_FROM_SMPLX.values() for k in row if k.startswith("v:")})
    return np.array([SMPLX_VERTEX_IDS[n] for n in names], dtype=np.int64)


def correspondence_weights() -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(W_joints (32, 55), W_vertices (32, K))`` of the table, float64.

    ``h36m = W_joints @ joints55 + W_vertices @ vertices[correspondence_vertex_ids()]``.
    """
    vids = correspondence_vertex_ids().tolist()
    w_j = np.zeros((len(H36M32), len(SMPLX55)))
    w_v = np.zeros((len(H36M32), len(vids)))
    for i, name in enumerate(H36M32.names):
        for key, w in H36M32_FROM_SMPLX[name].items():
            if key.startswith("v:"):
                w_v[i, vids.index(SMPLX_VERTEX_IDS[key[2:]])] += w
            else:
                w_j[i, SMPLX55.index(key)] += w
    return w_j, w_v


def h36m32_from_smplx(joints55: torch.Tensor, landmark_vertices: torch.Tensor) -> torch.Tensor:
    """Human3.6M mocap joints from a posed SMPL-X body.

    Args:
        joints55: (..., 55, 3) posed SMPL-X skeleton joints, metres, any frame.
        landmark_vertices: (..., K, 3) posed vertices at ``correspondence_vertex_ids()``,
            same frame and unit.
    Returns:
        (..., 32, 3) joints in the h36m32 order, same frame, unit, dtype and device.
    """
    w_j, w_v = correspondence_weights()
    w_j = torch.as_tensor(w_j, dtype=joints55.dtype, device=joints55.device)
    w_v = torch.as_tensor(w_v, dtype=joints55.dtype, device=joints55.device)
    return w_j @ joints55 + w_v @ landmark_vertices


# h36m32 joint -> the smplx55 joint whose world rotation is the frame of the joint's parent
# bone (the segment from the joint's h36m32 parent to the joint): a joint defined differently
# by a mocap system (a Vicon joint centre against SMPL-X's) sits at a fixed offset in this
# frame. The root's frame is the pelvis; joints read off the hand (thumb, middle finger, their
# surface sites) move with the wrist, the foot's surface sites with the toes.
H36M32_BONE_FRAME: dict[str, str] = {
    "Hips": "pelvis",
    "RightUpLeg": "pelvis", "RightLeg": "right_hip", "RightFoot": "right_knee",
    "RightToeBase": "right_ankle", "RightToeSite": "right_foot",
    "LeftUpLeg": "pelvis", "LeftLeg": "left_hip", "LeftFoot": "left_knee",
    "LeftToeBase": "left_ankle", "LeftToeSite": "left_foot",
    "Spine": "pelvis", "Spine1": "spine2", "Neck": "spine3", "Head": "neck", "HeadSite": "head",
    "LeftShoulder": "spine3", "LeftArm": "left_collar", "LeftForeArm": "left_shoulder",
    "LeftHand": "left_elbow", "LeftHandThumb": "left_wrist", "LeftThumbSite": "left_wrist",
    "L_Wrist_End": "left_wrist", "LeftWristSite": "left_wrist",
    "RightShoulder": "spine3", "RightArm": "right_collar", "RightForeArm": "right_shoulder",
    "RightHand": "right_elbow", "RightHandThumb": "right_wrist", "RightThumbSite": "right_wrist",
    "R_Wrist_End": "right_wrist", "RightWristSite": "right_wrist",
}


def bone_frame_index() -> np.ndarray:
    """(32,) smplx55 index of each h36m32 joint's bone frame (``H36M32_BONE_FRAME``), h36m32 order."""
    return np.array([SMPLX55.index(H36M32_BONE_FRAME[n]) for n in H36M32.names], dtype=np.int64)
