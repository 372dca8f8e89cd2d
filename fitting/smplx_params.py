"""SMPL-X forward parameters: their names and widths, and re-expressing them in another frame.

One place for the parameter layout that the fit files, the shards and the trainer share.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fitting.joint_sets import SMPLX55

NUM_BETAS = 10
"""Shape coefficients fitted and stored (smplx's default ``num_betas``)."""
SMPLX_FRAME_PARAM_DIMS = {"global_orient": 3, "body_pose": 63, "transl": 3, "left_hand_pose": 45,
                          "right_hand_pose": 45, "jaw_pose": 3, "leye_pose": 3, "reye_pose": 3,
                          "expression": 10}
"""Per-frame smplx forward kwargs and their widths (axis-angle radians, full hand poses, transl
in metres, 10 expression coefficients)."""
NUM_BODY_JOINTS = 21
"""Body joints in ``body_pose`` (smplx joints 1..21, pelvis excluded)."""
SMPLX_PARAM_DIMS = {"betas": NUM_BETAS, **SMPLX_FRAME_PARAM_DIMS}
"""Every stored SMPL-X parameter (per-frame ones plus the subject's betas)."""


def _rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    flat = rotvec.reshape(-1, 3).astype(np.float64)
    return Rotation.from_rotvec(flat).as_matrix().reshape(*rotvec.shape[:-1], 3, 3)


def _matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    flat = matrix.reshape(-1, 3, 3).astype(np.float64)
    return Rotation.from_matrix(flat).as_rotvec().reshape(*matrix.shape[:-2], 3)


def smplx_params_to_camera(params: Mapping[str, np.ndarray], R, t, pelvis_rest) -> dict:
    """Re-express world-frame SMPL-X params so that the posed mesh lands in the camera frame.

    SMPL-X rotates the body about its pelvis joint J0(betas), not about the origin, then adds
    ``transl``: ``X = G (X_rest - J0) + J0 + transl`` for the root transform G. Wanting
    ``R X + t`` gives ``orient' = R ∘ orient`` and ``transl' = R (transl + J0) + t - J0``.

    Args:
        params: world-frame params with at least ``global_orient`` (..., 3) axis-angle and
            ``transl`` (..., 3) metres; every other key is copied unchanged.
        R: (..., 3, 3) cam_from_world rotation.
        t: (..., 3) cam_from_world translation, metres.
        pelvis_rest: (..., 3) rest-pose pelvis J0(betas) of the shaped body without translation
            (e.g. smplx output joints[:, 0] at zero pose and zero transl), metres.

    Returns:
        A new dict with camera-frame ``global_orient`` and ``transl`` (float32 like the input).
    """
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64)
    j0 = np.asarray(pelvis_rest, np.float64)
    orient = np.asarray(params["global_orient"], np.float64)
    transl = np.asarray(params["transl"], np.float64)
    out = {k: np.asarray(v) for k, v in params.items()}
    orient_cam = _matrix_to_rotvec(R @ _rotvec_to_matrix(orient))
    transl_cam = np.einsum("...ij,...j->...i", R, transl + j0) + t - j0
    dtype = np.asarray(params["transl"]).dtype
    dtype = dtype if np.issubdtype(dtype, np.floating) else np.float32
    out["global_orient"] = orient_cam.astype(dtype)
    out["transl"] = transl_cam.astype(dtype)
    return out


def rotvec_to_matrix_np(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices of rotation vectors (..., 3), radians (numpy, Rodrigues)."""
    theta = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    k = rotvec / np.where(theta > 1e-12, theta, 1.0)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(*k.shape[:-1], 3, 3)
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def body_world_rotations(global_orient: np.ndarray, body_pose: np.ndarray) -> np.ndarray:
    """(..., 22, 3, 3) world rotations of the smplx joints 0..21 (pelvis to wrists).

    Args:
        global_orient: (..., 3) and body_pose: (..., 63) axis-angle, radians.
    """
    local = rotvec_to_matrix_np(np.concatenate([global_orient[..., None, :],
                                       body_pose.reshape(*body_pose.shape[:-1], NUM_BODY_JOINTS, 3)], -2))
    world = [local[..., 0, :, :]]
    for j in range(1, NUM_BODY_JOINTS + 1):
        world.append(world[SMPLX55.parents[j]] @ local[..., j, :, :])
    return np.stack(world, -3)
