"""Cameras of Human3.6M: the Camera record, the H36M lens model, projection, undistortion.

Conventions (DESIGN.md): camera frame = OpenCV (x right, y down, z forward),
``X_cam = R @ X_world + t`` with (R, t) = cam_from_world, metres; pixels (u, v) = (column,
row) with pixel centres at integers.

The lens model is the official ``ProjectPointRadial`` of Human3.6M, with the distortion
vector in metadata.xml order ``[k1, k2, k3, pA, pB]``. It is *not* OpenCV's tangential model
(the roles of the two tangential terms differ): never hand these numbers to
``cv2.projectPoints`` / ``cv2.undistort``. Exact undistortion goes through
:func:`undistort_remap`, which pushes every target pixel's ray through the formula.

Geometry functions are pure and batched: they broadcast over leading dims and accept numpy
arrays or torch tensors (result type, dtype and device follow the points argument).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.units import MM_PER_M

W0_LENGTH = 300
"""Numbers in metadata.xml's ``w0``: 4 cameras × 11 subjects × 6 extrinsics + 4 × 9 intrinsics."""
W0_SUBJECTS = 11
"""Subjects S1..S11 in ``w0``'s extrinsic block."""
W0_INTRINSICS_OFFSET = 264
"""Start of the intrinsic block: ``fx, fy, cx, cy, k1, k2, k3, pA, pB`` per camera index."""


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _like(a, ref):
    """``a`` as the array type, float dtype and device of ``ref`` (numpy array or torch tensor)."""
    if _is_torch(ref):
        import torch

        dtype = ref.dtype if ref.is_floating_point() else torch.float64
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            a = a.copy()  # torch warns on read-only arrays (Camera fields are read-only)
        return torch.as_tensor(a, dtype=dtype, device=ref.device)
    ref_dtype = np.asarray(ref).dtype
    dtype = ref_dtype if np.issubdtype(ref_dtype, np.floating) else np.float64
    if _is_torch(a):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def _stack(items, axis: int = -1):
    if _is_torch(items[0]):
        import torch

        return torch.stack(items, dim=axis)
    return np.stack(items, axis=axis)


def _as_float(x):
    """Floating array or tensor (integers become float64), untouched otherwise."""
    if _is_torch(x):
        return x if x.is_floating_point() else x.double()
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated camera of one subject's capture (arrays are read-only float64)."""

    id: str
    """Camera id as in metadata.xml, e.g. "54138969"."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    K: np.ndarray
    """(3, 3) intrinsics in pixels (pixel centres at integers)."""
    dist: np.ndarray
    """(5,) H36M lens model ``[k1, k2, k3, pA, pB]`` (metadata.xml order)."""
    R: np.ndarray
    """(3, 3) rotation cam_from_world."""
    t: np.ndarray
    """(3,) translation cam_from_world in metres: ``X_cam = R @ X_world + t``."""

    def __post_init__(self):
        for name, shape in (("K", (3, 3)), ("dist", (5,)), ("R", (3, 3)), ("t", (3,))):
            value = np.array(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"Camera {self.id}: {name} has shape {value.shape}, expected {shape}")
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return (self.id, self.width, self.height) == (other.id, other.width, other.height) and all(
            np.array_equal(getattr(self, n), getattr(other, n)) for n in ("K", "dist", "R", "t")
        )

    def __hash__(self) -> int:
        return hash((self.id, self.width, self.height, self.K.tobytes(), self.dist.tobytes(),
                     self.R.tobytes(), self.t.tobytes()))

    def __reduce__(self):  # through __init__, so unpickled arrays are read-only too
        return (Camera, (self.id, self.width, self.height, self.K, self.dist, self.R, self.t))

    @property
    def center_world(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, metres."""
        return -self.R.T @ self.t

    def to_json(self) -> dict:
        """Plain JSON: lists of floats (repr-exact), units as in the fields."""
        return {
            "id": self.id,
            "width": self.width,
            "height": self.height,
            "K": self.K.tolist(),
            "dist": self.dist.tolist(),
            "dist_model": "h36m [k1, k2, k3, pA, pB]",
            "R": self.R.tolist(),
            "t": self.t.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> Camera:
        return cls(id=data["id"], width=data["width"], height=data["height"], K=data["K"],
                   dist=data["dist"], R=data["R"], t=data["t"])

    def scaled(self, scale: float) -> Camera:
        """The camera of this image resized by ``scale`` (0.5 = half width and height).

        Sizes round to whole pixels; K follows the exact per-axis ratio with pixel centres
        at integers: ``u' = (u + 0.5) * sx - 0.5`` (what cv2.resize does).
        """
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        width = max(1, round(self.width * scale))
        height = max(1, round(self.height * scale))
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        K[0, 2] = (self.K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (self.K[1, 2] + 0.5) * sy - 0.5
        return Camera(self.id, width, height, K, self.dist, self.R, self.t)

    def project(self, points_world):
        """(..., 3) world points, metres → (..., 2) distorted pixels (H36M lens model)."""
        return project_h36m(cam_from_world(points_world, self.R, self.t), self.K, self.dist)


# --- rigid transforms -------------------------------------------------------------------------


def cam_from_world(points_world, R, t):
    """World → camera: ``X_cam = R @ X_world + t``.

    points_world (..., 3) metres; R (..., 3, 3) and t (..., 3) cam_from_world, broadcast
    against the points' leading dims. Returns (..., 3) camera-frame metres.
    """
    points_world = _as_float(points_world)
    R, t = _like(R, points_world), _like(t, points_world)
    return (R @ points_world[..., None])[..., 0] + t


def world_from_cam(points_cam, R, t):
    """Camera → world, the inverse of :func:`cam_from_world`: ``X_world = Rᵀ (X_cam - t)``.

    points_cam (..., 3) metres; R (..., 3, 3), t (..., 3) cam_from_world. Returns (..., 3).
    """
    points_cam = _as_float(points_cam)
    R, t = _like(R, points_cam), _like(t, points_cam)
    return (R.swapaxes(-1, -2) @ (points_cam - t)[..., None])[..., 0]


# --- lens model -------------------------------------------------------------------------------


def distort_h36m(xy, dist):
    """The H36M lens model on normalized coordinates (official ProjectPointRadial).

    xy (..., 2) undistorted normalized coords (X/Z, Y/Z); dist (..., 5) ``[k1, k2, k3, pA,
    pB]``. Returns (..., 2) distorted normalized coords.
    """
    xy = _as_float(xy)
    dist = _like(dist, xy)
    k1, k2, k3, pA, pB = (dist[..., i] for i in range(5))
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    tan = pA * y + pB * x
    return _stack([x * (radial + tan) + pB * r2, y * (radial + tan) + pA * r2])


def _max_abs(x) -> float:
    if x.size == 0 if not _is_torch(x) else x.numel() == 0:
        return 0.0
    return float(x.detach().abs().max()) if _is_torch(x) else float(np.abs(x).max())


def _distort_jacobian(x, y, dist):
    """Entries (a, b, c, d) of ∂(x', y')/∂(x, y) of :func:`distort_h36m`."""
    k1, k2, k3, pA, pB = (dist[..., i] for i in range(5))
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    d_radial = k1 + 2 * k2 * r2 + 3 * k3 * r2 * r2
    s = radial + pA * y + pB * x
    ds_dx = 2 * x * d_radial + pB
    ds_dy = 2 * y * d_radial + pA
    return (s + x * ds_dx + 2 * pB * x, x * ds_dy + 2 * pB * y,
            y * ds_dx + 2 * pA * x, s + y * ds_dy + 2 * pA * y)


def undistort_h36m(xy_distorted, dist, iterations: int = 20, tol: float = 1e-12):
    """Inverse of :func:`distort_h36m` by Newton's method (quadratic convergence).

    xy_distorted (..., 2) distorted normalized coords; dist (..., 5). Returns (..., 2)
    undistorted normalized coords, converged to ``tol`` on the distorted side within the
    lens's monotonic range (all Human3.6M cameras over their whole image). Differentiable
    (torch) through the unrolled iterations.
    """
    target = _as_float(xy_distorted)
    dist = _like(dist, target)
    xy = target
    for _ in range(iterations):
        residual = distort_h36m(xy, dist) - target
        if _max_abs(residual) < tol:
            break
        a, b, c, d = _distort_jacobian(xy[..., 0], xy[..., 1], dist)
        det = a * d - b * c
        rx, ry = residual[..., 0], residual[..., 1]
        xy = xy - _stack([(d * rx - b * ry) / det, (a * ry - c * rx) / det])
    return xy


def _apply_K(xy, K):
    K = _like(K, xy)
    x, y = xy[..., 0], xy[..., 1]
    u = K[..., 0, 0] * x + K[..., 0, 1] * y + K[..., 0, 2]
    v = K[..., 1, 1] * y + K[..., 1, 2]
    return _stack([u, v])


def _unapply_K(uv, K):
    K = _like(K, uv)
    y = (uv[..., 1] - K[..., 1, 2]) / K[..., 1, 1]
    x = (uv[..., 0] - K[..., 0, 2] - K[..., 0, 1] * y) / K[..., 0, 0]
    return _stack([x, y])


def project_pinhole(points_cam, K):
    """Pinhole projection without distortion: (..., 3) camera metres → (..., 2) pixels.

    K (..., 3, 3) intrinsics (upper triangular, K[2] = [0, 0, 1]).
    """
    points_cam = _as_float(points_cam)
    return _apply_K(points_cam[..., :2] / points_cam[..., 2:3], K)


def project_h36m(points_cam, K, dist):
    """Projection through the H36M lens model: (..., 3) camera metres → (..., 2) pixels.

    K (..., 3, 3) intrinsics; dist (..., 5) ``[k1, k2, k3, pA, pB]``.
    """
    points_cam = _as_float(points_cam)
    return _apply_K(distort_h36m(points_cam[..., :2] / points_cam[..., 2:3], dist), K)


def undistort_pixels_h36m(uv, K, dist, K_out=None, iterations: int = 20):
    """Distorted pixels → undistorted pinhole pixels.

    uv (..., 2) pixels of the camera (K, dist); K_out (..., 3, 3) the target pinhole
    intrinsics (default K). Returns (..., 2) pixels of the pinhole camera K_out.
    """
    uv = _as_float(uv)
    xy = undistort_h36m(_unapply_K(uv, K), dist, iterations=iterations)
    return _apply_K(xy, K if K_out is None else K_out)


# --- calibration from metadata.xml ------------------------------------------------------------


def rotation_xyz(angles):
    """``Rx(a0) @ Ry(a1) @ Rz(a2)`` (right-handed, radians): angles (..., 3) → (..., 3, 3)."""
    angles = _as_float(angles)
    if _is_torch(angles):
        c, s = angles.cos(), angles.sin()
    else:
        c, s = np.cos(angles), np.sin(angles)
    one, zero = c[..., 0] * 0 + 1, c[..., 0] * 0

    def mat(rows):
        return _stack([_stack(r, -1) for r in rows], -2)

    cx, cy, cz, sx, sy, sz = c[..., 0], c[..., 1], c[..., 2], s[..., 0], s[..., 1], s[..., 2]
    rx = mat([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
    ry = mat([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    rz = mat([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
    return rx @ ry @ rz


def camera_from_w0(w0, subject_index: int, camera_index: int, width: int, height: int,
                   camera_id: str | None = None) -> Camera:
    """The Camera of (subject, camera) decoded from metadata.xml's 300-number ``w0``.

    w0 (300,): extrinsics at ``b = 6 * (camera_index * 11 + subject_index)`` (angles in
    radians, then the camera centre T in world mm), intrinsics at ``264 + 9 * camera_index``
    (``fx, fy, cx, cy, k1, k2, k3, pA, pB``). subject_index 0..10 for S1..S11,
    camera_index 0..3. ``camera_id`` defaults to the index as a string.
    """
    w0 = np.asarray(w0, dtype=np.float64)
    if w0.shape != (W0_LENGTH,):
        raise ValueError(f"w0 must hold {W0_LENGTH} numbers, got shape {w0.shape}")
    if not (0 <= subject_index < W0_SUBJECTS and 0 <= camera_index < 4):
        raise ValueError(f"subject_index {subject_index} / camera_index {camera_index} out of range")
    b = 6 * (camera_index * W0_SUBJECTS + subject_index)
    R = rotation_xyz(w0[b:b + 3])
    centre_m = w0[b + 3:b + 6] / MM_PER_M
    i = W0_INTRINSICS_OFFSET + 9 * camera_index
    fx, fy, cx, cy = w0[i:i + 4]
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return Camera(
        id=str(camera_index) if camera_id is None else camera_id,
        width=width, height=height, K=K, dist=w0[i + 4:i + 9], R=R, t=-R @ centre_m,
    )


def w0_from_cameras(cameras: dict[tuple[int, int], Camera], base=None) -> np.ndarray:
    """Encode cameras into a ``w0`` vector (inverse of :func:`camera_from_w0`).

    cameras: {(subject_index, camera_index): Camera}; entries not given keep ``base``'s
    numbers (zeros when None). Intrinsics come from the last camera given per index.
    Returns (300,) float64.
    """
    w0 = np.zeros(W0_LENGTH) if base is None else np.array(base, dtype=np.float64)
    for (s, c), cam in cameras.items():
        b = 6 * (c * W0_SUBJECTS + s)
        w0[b:b + 3] = angles_from_rotation(cam.R)
        w0[b + 3:b + 6] = cam.center_world * MM_PER_M
        i = W0_INTRINSICS_OFFSET + 9 * c
        w0[i:i + 4] = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]
        w0[i + 4:i + 9] = cam.dist
    return w0


def angles_from_rotation(R) -> np.ndarray:
    """Angles (a0, a1, a2) with ``R = Rx(a0) @ Ry(a1) @ Rz(a2)``; R (3, 3) → (3,) radians."""
    R = np.asarray(R, dtype=np.float64)
    a1 = np.arcsin(np.clip(R[0, 2], -1.0, 1.0))
    a0 = np.arctan2(-R[1, 2], R[2, 2])
    a2 = np.arctan2(-R[0, 1], R[0, 0])
    return np.array([a0, a1, a2])


# --- exact undistortion into a pinhole crop ---------------------------------------------------


def crop_intrinsics(center_uv, side_px, out_px: int, K) -> np.ndarray:
    """Intrinsics of a square pinhole crop.

    The crop covers ``side_px`` × ``side_px`` pixels of the *undistorted* pinhole image of
    intrinsics K (3, 3), centred at ``center_uv`` (2,) (pixels of that image), resampled to
    ``out_px`` × ``out_px``. Pixel centres stay at integers: the crop's pixel j covers
    source [cu - side/2 + j·side/out, … + side/out]. Batched: center_uv (..., 2),
    side_px (...) → (..., 3, 3) float64.
    """
    center_uv = np.asarray(center_uv, dtype=np.float64)
    side = np.asarray(side_px, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"crop_intrinsics needs the camera's K (3, 3), got shape {K.shape}")
    scale = out_px / side
    shape = np.broadcast_shapes(center_uv.shape[:-1], side.shape, K.shape[:-2])
    out = np.zeros(shape + (3, 3))
    out[..., 0, 0] = K[..., 0, 0] * scale
    out[..., 0, 1] = K[..., 0, 1] * scale
    out[..., 1, 1] = K[..., 1, 1] * scale
    out[..., 0, 2] = (K[..., 0, 2] - center_uv[..., 0] + side / 2) * scale - 0.5
    out[..., 1, 2] = (K[..., 1, 2] - center_uv[..., 1] + side / 2) * scale - 0.5
    out[..., 2, 2] = 1.0
    return out


def undistort_remap(camera: Camera, K_out, width_out: int, height_out: int):
    """cv2.remap grids that resample the camera's distorted image into a pinhole image.

    For every target pixel (u, v) of the pinhole camera K_out (3, 3) (same rotation as the
    camera), its ray ``K_out⁻¹ [u, v, 1]`` goes through the H36M lens model and the
    camera's K into source pixel coordinates. Returns (map_x, map_y), each
    (height_out, width_out) float32.
    """
    K_out = np.asarray(K_out, dtype=np.float64)
    u, v = np.meshgrid(np.arange(width_out, dtype=np.float64),
                       np.arange(height_out, dtype=np.float64))
    xy = _unapply_K(np.stack([u, v], axis=-1), K_out)
    src = _apply_K(distort_h36m(xy, camera.dist), camera.K)
    return src[..., 0].astype(np.float32), src[..., 1].astype(np.float32)


def undistort_image(image: np.ndarray, camera: Camera, K_out, size: tuple[int, int],
                    interpolation: int | None = None, border_value=0) -> np.ndarray:
    """Resample ``image`` (H, W[, C]) of ``camera`` into the pinhole camera K_out.

    size = (width_out, height_out). Pixels whose ray falls outside the source get
    ``border_value``. Returns (height_out, width_out[, C]) of the image's dtype.
    """
    import cv2

    map_x, map_y = undistort_remap(camera, K_out, size[0], size[1])
    return cv2.remap(image, map_x, map_y,
                     cv2.INTER_LINEAR if interpolation is None else interpolation,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
