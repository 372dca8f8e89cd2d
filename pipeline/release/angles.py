"""Human3.6M ``D3_Angles`` / ``D3_Angles_mono``: the joint-angle pose format and its kinematics.

Real release files::

    <root>/S1/MyPoseFeatures/D3_Angles/<basename>.cdf                 Pose (1, T, 78)
    <root>/S1/MyPoseFeatures/D3_Angles_mono/<basename>.<camera>.cdf   Pose (1, T, 78)

The 78 columns follow metadata.xml's ``skel_angles`` tree (a BVH skeleton): columns 1..3
(1-based, ``posInd`` of the root) the root position in mm, then, for each of the 25 joints
that carry channels (the 32 joints less the 7 end sites), three rotation channels in the
order ``Zrotation Xrotation Yrotation`` (degrees; the item's ``rotInd`` lists the columns of
the x, y, z angles, e.g. the root's ``[5 6 4]``). Readers (h36m-tools, H36M-to-BVH) skip the
first three columns and read 25 × 3 angles.

Kinematics (BVH, order ``zxy``, column vectors): a joint's local rotation is
``L = Rz(z) @ Rx(x) @ Ry(y)``; its global rotation ``G = G_parent @ L`` (the root's ``G = L``);
a child sits at ``p_child = p_parent + G_parent @ offset_child`` with the ``offset`` of the
``skel_angles`` item (mm, in the parent's frame). ``D3_Angles_mono`` holds the same local
angles with the root's position and rotation in the camera frame.
"""

from __future__ import annotations

import numpy as np

ANGLE_COLUMNS = 78
"""D of a D3_Angles pose file: 3 root positions + 25 joints × 3 angles."""
ANGLE_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
"""The rotation channels of every joint, in column order."""
ROTATION_ORDER = "zxy"
"""metadata.xml ``order`` of every skel_angles joint."""


def site_joints(names) -> tuple[int, ...]:
    """Indices of the end sites (joints without channels): the "Site" items (or "...Site")."""
    return tuple(i for i, n in enumerate(names) if n == "Site" or n.endswith("Site"))


def channel_joints(names) -> tuple[int, ...]:
    """The joints with rotation channels, index order (25 of the 32)."""
    sites = set(site_joints(names))
    return tuple(i for i in range(len(names)) if i not in sites)


def rotation_columns(names) -> dict[int, tuple[int, int, int]]:
    """{joint: 0-based columns of its (z, x, y) angles}."""
    return {j: (3 + 3 * k, 4 + 3 * k, 5 + 3 * k) for k, j in enumerate(channel_joints(names))}


def rot_ind(names, joint: int) -> tuple[int, int, int] | None:
    """metadata.xml ``rotInd`` of a joint: 1-based columns of its x, y, z angles (None for sites)."""
    cols = rotation_columns(names).get(joint)
    if cols is None:
        return None
    z, x, y = cols
    return x + 1, y + 1, z + 1


def _axis(angle: np.ndarray, axis: int) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(c), np.zeros_like(c)
    rows = {0: ((one, zero, zero), (zero, c, -s), (zero, s, c)),
            1: ((c, zero, s), (zero, one, zero), (-s, zero, c)),
            2: ((c, -s, zero), (s, c, zero), (zero, zero, one))}[axis]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def matrix_from_zxy(angles_deg: np.ndarray) -> np.ndarray:
    """(..., 3) angles (z, x, y) in degrees → (..., 3, 3) ``Rz(z) @ Rx(x) @ Ry(y)``."""
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return _axis(a[..., 0], 2) @ _axis(a[..., 1], 0) @ _axis(a[..., 2], 1)


def zxy_from_matrix(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations → (..., 3) angles (z, x, y) in degrees with ``R = Rz Rx Ry``.

    x in [-90, 90]; exact away from x = ±90° (gimbal lock, where z and y share one axis).
    """
    R = np.asarray(R, dtype=np.float64)
    # Rz Rx Ry: R[2,1] = sin x, R[0,1] = -sin z cos x, R[1,1] = cos z cos x,
    # R[2,0] = -cos x sin y, R[2,2] = cos x cos y
    x = np.arcsin(np.clip(R[..., 2, 1], -1.0, 1.0))
    z = np.arctan2(-R[..., 0, 1], R[..., 1, 1])
    y = np.arctan2(-R[..., 2, 0], R[..., 2, 2])
    return np.rad2deg(np.stack([z, x, y], -1))


def angles_from_rotations(root_mm: np.ndarray, global_rotations: np.ndarray, parents,
                          names) -> np.ndarray:
    """(T, 78) D3_Angles rows from the root position (T, 3) mm and each joint's global
    rotation (T, 32, 3, 3) (only the channel joints are read)."""
    T = len(root_mm)
    out = np.zeros((T, ANGLE_COLUMNS))
    out[:, :3] = root_mm
    for joint, cols in rotation_columns(names).items():
        parent = parents[joint]
        G = global_rotations[:, joint]
        local = G if parent < 0 else np.swapaxes(global_rotations[:, parent], -1, -2) @ G
        out[:, list(cols)] = zxy_from_matrix(local)
    return out


def forward_kinematics(angles: np.ndarray, offsets_mm: np.ndarray, parents, names) -> np.ndarray:
    """(T, 78) D3_Angles rows and (32, 3) skel_angles offsets (mm) → (T, 32, 3) joints, mm."""
    angles = np.asarray(angles, dtype=np.float64)
    T = len(angles)
    columns = rotation_columns(names)
    G = np.zeros((T, len(parents), 3, 3))
    p = np.zeros((T, len(parents), 3))
    for j, parent in enumerate(parents):
        local = matrix_from_zxy(angles[:, list(columns[j])]) if j in columns else np.eye(3)
        if parent < 0:
            G[:, j] = local
            p[:, j] = angles[:, :3]
        else:
            G[:, j] = G[:, parent] @ local
            p[:, j] = p[:, parent] + G[:, parent] @ np.asarray(offsets_mm[j], dtype=np.float64)
    return p


def angles_in_camera(angles: np.ndarray, R: np.ndarray, t_mm: np.ndarray, names) -> np.ndarray:
    """D3_Angles rows → D3_Angles_mono rows of a camera (R cam_from_world, t in mm): the root's
    position ``R p + t`` and rotation ``R G_root``; every other joint's local angles unchanged."""
    out = np.array(angles, dtype=np.float64, copy=True)
    out[:, :3] = out[:, :3] @ np.asarray(R).T + np.asarray(t_mm)
    cols = list(rotation_columns(names)[0])
    out[:, cols] = zxy_from_matrix(np.asarray(R) @ matrix_from_zxy(out[:, cols]))
    return out
