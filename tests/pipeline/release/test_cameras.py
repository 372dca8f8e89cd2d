"""pipeline.release.cameras: H36M lens model against an independent float64 re-implementation,
round trips, exact undistortion remap, batching, gradients, dtypes, and the reference w0."""

from __future__ import annotations

import json
import math
import pickle
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
import torch
from helpers import REFERENCE

from pipeline.release.cameras import (
    Camera,
    angles_from_rotation,
    cam_from_world,
    camera_from_w0,
    crop_intrinsics,
    distort_h36m,
    project_h36m,
    project_pinhole,
    rotation_xyz,
    undistort_h36m,
    undistort_image,
    undistort_pixels_h36m,
    undistort_remap,
    w0_from_cameras,
    world_from_cam,
)

# Camera 54138969 of S1 as published (VideoPose3D float32 table), rounded; only used as
# realistic numbers, the tests never compare against them.
K_REAL = np.array([[1145.05, 0.0, 512.54], [0.0, 1143.78, 515.45], [0.0, 0.0, 1.0]])
DIST_REAL = np.array([-0.2071, 0.2478, -0.0031, -0.0014, -0.0010])  # k1 k2 k3 pA pB


def _camera(width=1000, height=1002, dist=DIST_REAL) -> Camera:
    R = rotation_xyz(np.array([-1.38, -3.17, 0.41]))
    centre = np.array([1.84, 4.96, 1.56])
    return Camera("54138969", width, height, K_REAL, dist, R, -R @ centre)


def _reference_project(X, Y, Z, fx, fy, cx, cy, k1, k2, k3, pA, pB):
    """Official ProjectPointRadial, one point, plain Python floats."""
    x, y = X / Z, Y / Z
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    tan = pA * y + pB * x
    xd = x * (radial + tan) + pB * r2
    yd = y * (radial + tan) + pA * r2
    return fx * xd + cx, fy * yd + cy


def _points_in_view(n=200, seed=0):
    """Camera-frame points (n, 3), metres, spread over the whole image of K_REAL."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(2.0, 8.0, n)
    x = rng.uniform(-0.45, 0.45, n) * z
    y = rng.uniform(-0.45, 0.45, n) * z
    return np.stack([x, y, z], -1)


def _rng_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)


def test_project_h36m_matches_documented_formula():
    points = _points_in_view()
    dist = np.array([-0.2, 0.25, -0.01, 0.003, -0.002])  # larger tangential terms than real
    uv = project_h36m(points, K_REAL, dist)
    fx, fy, cx, cy = K_REAL[0, 0], K_REAL[1, 1], K_REAL[0, 2], K_REAL[1, 2]
    expected = np.array([_reference_project(*p, fx, fy, cx, cy, *dist) for p in points])
    np.testing.assert_allclose(uv, expected, rtol=0, atol=1e-9)


def test_tangential_terms_are_not_opencv_order():
    """pA multiplies y and pB x: swapping them (OpenCV's p1, p2 reading) must differ."""
    xy = np.array([[0.3, -0.2]])
    a = distort_h36m(xy, [0, 0, 0, 0.01, 0.0])
    assert a[0, 0] == pytest.approx(0.3 * (1 + 0.01 * -0.2))
    assert a[0, 1] == pytest.approx(-0.2 * (1 + 0.01 * -0.2) + 0.01 * 0.13)


def test_pinhole_is_zero_distortion():
    points = _points_in_view()
    np.testing.assert_allclose(project_h36m(points, K_REAL, np.zeros(5)),
                               project_pinhole(points, K_REAL), atol=1e-12)


def test_world_cam_round_trip_and_broadcast():
    rng = np.random.default_rng(1)
    R = np.stack([_rng_rotation(rng) for _ in range(4)])  # (4, 3, 3)
    t = rng.normal(size=(4, 3))
    points = rng.normal(size=(4, 7, 3))
    cam = cam_from_world(points, R[:, None], t[:, None])
    assert cam.shape == (4, 7, 3)
    expected = np.einsum("bij,bnj->bni", R, points) + t[:, None]
    np.testing.assert_allclose(cam, expected, atol=1e-12)
    np.testing.assert_allclose(world_from_cam(cam, R[:, None], t[:, None]), points, atol=1e-12)


def test_camera_project_uses_cam_from_world():
    camera = _camera()
    world = np.array([0.1, -0.2, 0.9])
    X = camera.R @ world + camera.t
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    np.testing.assert_allclose(camera.project(world), _reference_project(*X, fx, fy, cx, cy,
                                                                        *camera.dist), atol=1e-9)
    np.testing.assert_allclose(camera.center_world, [1.84, 4.96, 1.56], atol=1e-12)


def test_undistort_inverts_projection_to_hundredth_pixel():
    points = _points_in_view(500)
    distorted = project_h36m(points, K_REAL, DIST_REAL)
    pinhole = undistort_pixels_h36m(distorted, K_REAL, DIST_REAL)
    assert np.abs(pinhole - project_pinhole(points, K_REAL)).max() < 0.01
    xy = points[:, :2] / points[:, 2:]
    back = undistort_h36m(distort_h36m(xy, DIST_REAL), DIST_REAL)
    assert np.abs(back - xy).max() < 1e-10


def test_image_corners_undistort():
    """The extreme corners of the image still converge (the lens stays monotonic there)."""
    corners = np.array([[0, 0], [999, 0], [0, 1001], [999, 1001]], float)
    xy = undistort_pixels_h36m(corners, K_REAL, DIST_REAL, K_out=np.eye(3))
    redistorted = project_h36m(np.concatenate([xy, np.ones((4, 1))], 1), K_REAL, DIST_REAL)
    assert np.abs(redistorted - corners).max() < 1e-8


def test_batched_distortion_parameters_broadcast():
    xy = np.random.default_rng(2).uniform(-0.4, 0.4, size=(3, 5, 2))
    dists = np.stack([DIST_REAL, DIST_REAL * 0.5, np.zeros(5)])  # (3, 5)
    out = distort_h36m(xy, dists[:, None])
    for i in range(3):
        np.testing.assert_allclose(out[i], distort_h36m(xy[i], dists[i]), atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_dtype_preserved(dtype):
    points = _points_in_view(5).astype(dtype)
    assert project_h36m(points, K_REAL, DIST_REAL).dtype == dtype
    assert project_pinhole(points, K_REAL).dtype == dtype
    assert cam_from_world(points, np.eye(3), np.zeros(3)).dtype == dtype
    assert undistort_h36m(points[:, :2] / points[:, 2:], DIST_REAL).dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_dtype_and_gradient(dtype):
    points = torch.tensor(_points_in_view(6), dtype=dtype, requires_grad=True)
    R = torch.tensor(_camera().R, dtype=dtype, requires_grad=True)
    uv = project_h36m(cam_from_world(points, R, np.zeros(3)) + torch.tensor([0, 0, 5.0], dtype=dtype),
                      K_REAL, DIST_REAL)
    assert uv.dtype == dtype and uv.shape == (6, 2)
    uv.square().sum().backward()
    assert torch.isfinite(points.grad).all() and points.grad.abs().sum() > 0
    assert torch.isfinite(R.grad).all() and R.grad.abs().sum() > 0
    # torch and numpy agree
    ref = project_h36m(cam_from_world(_points_in_view(6), _camera().R, np.zeros(3)) + [0, 0, 5.0],
                       K_REAL, DIST_REAL)
    np.testing.assert_allclose(uv.detach().numpy(), ref, rtol=1e-5 if dtype == torch.float32 else 1e-12)


def test_torch_gradient_matches_finite_differences():
    xy = torch.tensor([[0.21, -0.17], [-0.3, 0.35]], dtype=torch.float64, requires_grad=True)
    dist = torch.tensor([-0.2, 0.25, -0.01, 0.003, -0.002], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: distort_h36m(p, dist), (xy,))
    assert torch.autograd.gradcheck(lambda p: undistort_h36m(p, dist), (xy,))


def test_rotation_xyz_matches_elementary_rotations():
    a = np.array([0.3, -1.1, 2.0])

    def rx(t):
        return np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])

    def ry(t):
        return np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])

    def rz(t):
        return np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])

    np.testing.assert_allclose(rotation_xyz(a), rx(a[0]) @ ry(a[1]) @ rz(a[2]), atol=1e-15)
    np.testing.assert_allclose(rotation_xyz(angles_from_rotation(rotation_xyz(a))), rotation_xyz(a),
                               atol=1e-12)


def test_w0_round_trip():
    rng = np.random.default_rng(3)
    w0 = np.zeros(300)
    for s in range(11):
        for c in range(4):
            b = 6 * (c * 11 + s)
            w0[b:b + 3] = rng.uniform(-3, 3, 3)
            w0[b + 3:b + 6] = rng.uniform(-5000, 5000, 3)
    for c in range(4):
        w0[264 + 9 * c:273 + 9 * c] = [1145 + c, 1144, 512, 515, -0.2, 0.24, -0.003, -0.001, -0.002]
    cam = camera_from_w0(w0, 4, 2, 1000, 1000, "58860488")
    b = 6 * (2 * 11 + 4)
    np.testing.assert_allclose(cam.center_world * 1000, w0[b + 3:b + 6], atol=1e-9)
    np.testing.assert_allclose(cam.dist, w0[264 + 18 + 4:264 + 27])
    assert cam.K[0, 0] == 1147 and cam.K[0, 2] == 512
    again = w0_from_cameras({(4, 2): cam})
    cam2 = camera_from_w0(again, 4, 2, 1000, 1000, "58860488")
    np.testing.assert_allclose(cam2.R, cam.R, atol=1e-12)
    np.testing.assert_allclose(cam2.t, cam.t, atol=1e-12)
    with pytest.raises(ValueError):
        camera_from_w0(w0[:299], 0, 0, 10, 10)


def test_camera_json_round_trip_and_equality():
    camera = _camera()
    again = Camera.from_json(json.loads(json.dumps(camera.to_json())))
    assert again == camera and hash(again) == hash(camera)
    assert camera != _camera(width=999)
    with pytest.raises(ValueError):
        Camera("x", 1, 1, np.eye(3), np.zeros(4), np.eye(3), np.zeros(3))
    assert not camera.K.flags.writeable
    unpickled = pickle.loads(pickle.dumps(camera))
    assert unpickled == camera and not unpickled.R.flags.writeable


def test_scaled_camera_keeps_pixel_centres():
    camera = _camera(width=1000, height=1000)
    half = camera.scaled(0.5)
    assert (half.width, half.height) == (500, 500)
    # the source pixel block [0, 1] x [0, 1] averages to the half-size pixel 0: its centre
    # (0.5, 0.5) in source coords must land on (0, 0)
    np.testing.assert_allclose(half.K[:2, 2], (camera.K[:2, 2] + 0.5) / 2 - 0.5)
    points = _points_in_view(20)
    uv_full = project_h36m(points, camera.K, camera.dist)
    uv_half = project_h36m(points, half.K, half.dist)
    np.testing.assert_allclose(uv_half, (uv_full + 0.5) * 0.5 - 0.5, atol=1e-9)


def test_crop_intrinsics_maps_crop_box():
    center = np.array([530.3, 480.7])
    side, out = 300.0, 256
    Kc = crop_intrinsics(center, side, out, K_REAL)
    points = _points_in_view(50)
    uv = project_pinhole(points, K_REAL)
    uv_crop = project_pinhole(points, Kc)
    expected = (uv - (center - side / 2)) * (out / side) - 0.5
    np.testing.assert_allclose(uv_crop, expected, atol=1e-9)
    # the crop centre is the pinhole pixel center
    centre_ray = np.linalg.solve(K_REAL, [*center, 1.0])
    np.testing.assert_allclose(project_pinhole(centre_ray, Kc), [out / 2 - 0.5] * 2, atol=1e-9)
    batch = crop_intrinsics(np.stack([center, center + 10]), np.array([side, side * 2]), out, K_REAL)
    assert batch.shape == (2, 3, 3)
    np.testing.assert_allclose(batch[0], Kc)


def _render_blobs(uv: np.ndarray, width: int, height: int, sigma: float = 2.0) -> np.ndarray:
    """Gaussian blobs at sub-pixel positions uv (N, 2), float32 image (H, W)."""
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    image = np.zeros((height, width), np.float32)
    for cu, cv in uv:
        image += np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * sigma**2)).astype(np.float32)
    return image


def _centroids(image: np.ndarray, guesses: np.ndarray, radius: int = 7) -> np.ndarray:
    out = []
    for gu, gv in guesses:
        u0, v0 = int(round(gu)), int(round(gv))
        patch = image[v0 - radius:v0 + radius + 1, u0 - radius:u0 + radius + 1].astype(np.float64)
        vv, uu = np.mgrid[v0 - radius:v0 + radius + 1, u0 - radius:u0 + radius + 1]
        out.append([(patch * uu).sum() / patch.sum(), (patch * vv).sum() / patch.sum()])
    return np.array(out)


def test_undistort_remap_lands_points_on_pinhole_projection():
    """Render blobs where the lens model puts known points; after the remap into a pinhole
    crop they sit where the crop's pinhole projection says."""
    # a small, strongly distorted camera so the test is quick and the distortion matters
    width, height = 240, 200
    K = np.array([[180.0, 0, 121.3], [0, 178.0, 97.6], [0, 0, 1]])
    dist = np.array([-0.3, 0.12, 0.0, 0.004, -0.003])
    camera = Camera("cam", width, height, K, dist, np.eye(3), np.zeros(3))
    rng = np.random.default_rng(4)
    z = rng.uniform(2, 4, 12)
    xy = np.stack([rng.uniform(-0.5, 0.5, 12), rng.uniform(-0.4, 0.4, 12)], -1)
    points = np.concatenate([xy * z[:, None], z[:, None]], -1)
    source = _render_blobs(project_h36m(points, K, dist), width, height)

    out = 160
    Kc = crop_intrinsics(np.array([120.0, 100.0]), 180.0, out, K)
    crop = undistort_image(source, camera, Kc, (out, out))
    expected = project_pinhole(points, Kc)
    inside = np.all((expected > 10) & (expected < out - 10), axis=1)
    assert inside.sum() >= 8
    found = _centroids(crop, expected[inside])
    assert np.abs(found - expected[inside]).max() < 0.5
    # without undistortion the points would be far off: the test has teeth
    naive = cv2.resize(source[10:190, 30:210], (out, out), interpolation=cv2.INTER_LINEAR)
    assert np.abs(_centroids(naive, expected[inside]) - expected[inside]).max() > 2.0

    map_x, map_y = undistort_remap(camera, Kc, out, out)
    assert map_x.dtype == np.float32 and map_x.shape == (out, out)


REFERENCE_XML = REFERENCE / "h36m_metadata.xml"
REFERENCE_CAMERAS = REFERENCE / "h36m_cameras.json"


def _quat_to_matrix(q):
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@pytest.mark.skipif(not (REFERENCE_XML.exists() and REFERENCE_CAMERAS.exists()),
                    reason="shared reference files absent")
def test_reference_w0_reproduces_videopose3d_table():
    """VideoPose3D conventions: tangential (pB, pA), translation = centre in mm, orientation =
    quaternion (w, x, y, z) of the camera-to-world rotation; its numbers are float32."""
    w0 = np.array(ET.parse(REFERENCE_XML).getroot().find("w0").text.strip("[]").split(), float)
    table = json.loads(REFERENCE_CAMERAS.read_text())
    subjects = [f"S{i}" for i in range(1, 12)]
    checked = 0
    for c, intr in enumerate(table["intrinsic_params_by_camera_index"]):
        for subject, extr in table["extrinsic_params_by_subject"].items():
            if not extr[c]:  # VideoPose3D leaves S2, S3, S4 empty
                continue
            cam = camera_from_w0(w0, subjects.index(subject), c, intr["res_w"], intr["res_h"], intr["id"])
            np.testing.assert_allclose([cam.K[0, 0], cam.K[1, 1]], intr["focal_length"], rtol=1e-6)
            np.testing.assert_allclose(cam.K[:2, 2], intr["center"], rtol=1e-6)
            np.testing.assert_allclose(cam.dist[:3], intr["radial_distortion"], rtol=1e-5)
            np.testing.assert_allclose(cam.dist[[4, 3]], intr["tangential_distortion"], rtol=1e-5)
            e = extr[c]
            np.testing.assert_allclose(cam.center_world * 1000, e["translation"], atol=1e-3)
            np.testing.assert_allclose(cam.R, _quat_to_matrix(e["orientation"]).T, atol=3e-7)
            checked += 1
    assert checked == 4 * 7
