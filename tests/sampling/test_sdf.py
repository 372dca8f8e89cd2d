"""Exact signed distance (sampling.sdf) against independent float64 references.

References written here: Ericson's closest point on a triangle (vectorised over triangles) and
the exact winding number (Van Oosterom-Strackee solid angles summed over all triangles), plus
analytic spheres and capsules.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from helpers import capsule_mesh, concat_meshes

from sampling import sdf
from sampling.sdf import (
    SdfError,
    signed_distance,
    signed_distance_batch,
    unsigned_distance,
    winding_number,
)

# ---------------------------------------------------------------- independent references


def _rowdot(a, b):
    return np.einsum("...i,...i->...", a, b)


def reference_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Float64 Ericson closest point per (point, triangle), minimum over triangles."""
    tri = np.asarray(vertices, np.float64)[faces]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac = b - a, c - a
    out = np.empty(len(points))
    for i, p in enumerate(np.asarray(points, np.float64)):
        ap, bp, cp = p - a, p - b, p - c
        d1, d2 = _rowdot(ab, ap), _rowdot(ac, ap)
        d3, d4 = _rowdot(ab, bp), _rowdot(ac, bp)
        d5, d6 = _rowdot(ab, cp), _rowdot(ac, cp)
        va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
        with np.errstate(divide="ignore", invalid="ignore"):
            candidates = [
                (np.ones(len(a), bool), a + (vb / (va + vb + vc))[:, None] * ab + (vc / (va + vb + vc))[:, None] * ac),
                ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), b + ((d4 - d3) / ((d4 - d3) + (d5 - d6)))[:, None] * (c - b)),
                ((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + (d2 / (d2 - d6))[:, None] * ac),
                ((d6 >= 0) & (d5 <= d6), c),
                ((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + (d1 / (d1 - d3))[:, None] * ab),
                ((d3 >= 0) & (d4 <= d3), b),
                ((d1 <= 0) & (d2 <= 0), a),
            ]
        closest = np.zeros_like(a)
        for mask, q in candidates:  # later (higher-priority) regions overwrite
            closest = np.where(mask[:, None], q, closest)
        out[i] = np.sqrt(_rowdot(p - closest, p - closest).min())
    return out


def reference_winding(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Exact float64 generalized winding number: sum of triangle solid angles / 4 pi."""
    tri = np.asarray(vertices, np.float64)[faces]
    out = np.empty(len(points))
    for i, p in enumerate(np.asarray(points, np.float64)):
        ra, rb, rc = tri[:, 0] - p, tri[:, 1] - p, tri[:, 2] - p
        la, lb, lc = (np.linalg.norm(r, axis=1) for r in (ra, rb, rc))
        det = _rowdot(ra, np.cross(rb, rc))
        den = la * lb * lc + _rowdot(ra, rb) * lc + _rowdot(ra, rc) * lb + _rowdot(rb, rc) * la
        out[i] = (2 * np.arctan2(det, den)).sum() / (4 * math.pi)
    return out


# ---------------------------------------------------------------- meshes and points


def noisy_sphere(subdivisions: int, radius: float = 0.3, noise: float = 0.01, seed: int = 0):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    rng = np.random.default_rng(seed)
    scale = 1 + noise * rng.standard_normal(len(mesh.vertices)) / radius
    return mesh.vertices * scale[:, None], np.asarray(mesh.faces)


def posed_body(count: int = 16):
    """Interpenetrating capsules (torso, crossed arms, legs) as one self-intersecting mesh."""
    parts = [
        capsule_mesh([0, 0, 0], [0, 0.5, 0], 0.15, count),
        capsule_mesh([-0.2, 0.45, 0.0], [0.25, 0.2, 0.15], 0.05, count),  # arm crossing the torso
        capsule_mesh([0.2, 0.45, 0.0], [-0.25, 0.2, 0.12], 0.05, count),  # other arm crossing the first
        capsule_mesh([-0.08, 0, 0], [-0.1, -0.45, 0.05], 0.07, count),
        capsule_mesh([0.08, 0, 0], [0.02, -0.45, -0.02], 0.07, count),  # legs overlapping each other
        capsule_mesh([0, 0.5, 0], [0, 0.7, 0], 0.09, count),
    ]
    return concat_meshes(*parts)


def sample_points(vertices: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """Like the sampler: near the surface at two scales plus uniform in the bounding box."""
    rng = np.random.default_rng(seed)
    near = vertices[rng.integers(0, len(vertices), n // 3)]
    lo, hi = vertices.min(0) - 0.1, vertices.max(0) + 0.1
    return np.concatenate([
        near + 0.01 * rng.standard_normal(near.shape),
        near + 0.05 * rng.standard_normal(near.shape),
        rng.uniform(lo, hi, (n - 2 * len(near), 3)),
    ])


def assert_signs_match_exact(points, vertices, faces, skip_ambiguous: float = 0.0):
    d = signed_distance(points, vertices, faces, backend="cpu")
    w = reference_winding(points, vertices, faces)
    checked = (np.abs(d) > 1e-4) & (np.abs(w - 0.5) >= skip_ambiguous)
    assert checked.sum() > 0.5 * len(points)
    wrong = (d[checked] < 0) != (w[checked] > 0.5)
    assert wrong.sum() == 0, f"{wrong.sum()} sign errors"
    return d, w


# ---------------------------------------------------------------- accuracy


def test_matches_float64_reference_on_20k_face_mesh():
    vertices, faces = noisy_sphere(subdivisions=5)
    assert len(faces) >= 20000
    points = sample_points(vertices, 300)
    d = signed_distance(points, vertices, faces, backend="cpu")
    ref = reference_distance(points, vertices, faces)
    np.testing.assert_allclose(np.abs(d), ref, rtol=0, atol=1e-6)
    w = reference_winding(points[:150], vertices, faces)
    far = np.abs(d[:150]) > 1e-4
    assert np.all((d[:150][far] < 0) == (w[far] > 0.5))


@pytest.mark.slow  # building the synthetic model takes about a minute on 2 cores
def test_synthetic_smplx_mesh_when_available(tmp_path):
    synthetic = pytest.importorskip("fitting.synthetic_model")
    write = getattr(synthetic, "write_synthetic_model", None)
    if write is None:
        pytest.skip("fitting.synthetic_model has no write_synthetic_model")
    path = write(tmp_path, 0)
    files = [path] if str(path).endswith(".npz") else sorted(tmp_path.rglob("*.npz"))
    if not files:
        pytest.skip("synthetic model wrote no npz file")
    model = np.load(files[0], allow_pickle=True)
    vertices, faces = np.asarray(model["v_template"], np.float64), np.asarray(model["f"], np.int64)
    points = sample_points(vertices, 150)
    d = signed_distance(points, vertices, faces, backend="cpu")
    np.testing.assert_allclose(np.abs(d), reference_distance(points, vertices, faces), atol=1e-6)
    w = reference_winding(points, vertices, faces)
    far = np.abs(d) > 1e-4
    assert np.all((d[far] < 0) == (w[far] > 0.5))


def test_analytic_sphere_within_facet_error():
    radius = 0.3
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    points = np.random.default_rng(2).uniform(-0.5, 0.5, (4000, 3))
    d = signed_distance(points, mesh.vertices, mesh.faces)
    max_edge = mesh.edges_unique_length.max()
    sag = max_edge**2 / (2 * radius)  # distance between the sphere and a chord plane of that size
    np.testing.assert_allclose(d, np.linalg.norm(points, axis=1) - radius, atol=sag)
    assert d.min() < -0.2 and d.max() > 0.2


def test_analytic_capsule_within_facet_error():
    a, b, radius = np.array([0.1, -0.2, 0.3]), np.array([0.3, 0.2, 0.1]), 0.08
    vertices, faces = capsule_mesh(a, b, radius, count=64)
    points = sample_points(vertices, 3000)
    d = signed_distance(points, vertices, faces)
    s = np.clip((points - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
    analytic = np.linalg.norm(points - a - s[:, None] * (b - a), axis=1) - radius
    edge = np.linalg.norm(vertices[faces] - vertices[faces[:, [1, 2, 0]]], axis=-1).max()
    np.testing.assert_allclose(d, analytic, atol=edge**2 / (2 * radius))


# ---------------------------------------------------------------- signs (winding number)


def test_signs_on_closed_mesh():
    vertices, faces = noisy_sphere(subdivisions=3)
    assert_signs_match_exact(sample_points(vertices, 800), vertices, faces)


def test_signs_on_overlapping_spheres():
    one = noisy_sphere(subdivisions=3, radius=0.2, seed=3)
    two = noisy_sphere(subdivisions=3, radius=0.2, seed=4)
    vertices, faces = concat_meshes(one, (two[0] + [0.15, 0.05, 0.0], two[1]))
    d, w = assert_signs_match_exact(sample_points(vertices, 800), vertices, faces)
    assert np.sum(w > 1.5) > 0  # some points lie inside both: ray parity would call them outside
    assert np.all(d[w > 1.5] < 0)


def test_signs_on_self_intersecting_posed_body():
    vertices, faces = posed_body()
    assert len(faces) > 2000
    d, w = assert_signs_match_exact(sample_points(vertices, 800), vertices, faces)
    assert np.sum(w > 1.5) > 0


def test_signs_on_mesh_with_hole():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    keep = mesh.triangles_center[:, 2] < 0.25  # cut a cap off the top
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)[keep]
    points = sample_points(vertices, 800)
    points[:200] = np.random.default_rng(5).uniform([-0.15, -0.15, 0.2], [0.15, 0.15, 0.4], (200, 3))
    assert_signs_match_exact(points, vertices, faces, skip_ambiguous=0.05)


def test_signs_with_separate_inner_shell():
    body = noisy_sphere(subdivisions=3, radius=0.3)
    eye = noisy_sphere(subdivisions=2, radius=0.05, noise=0.001)
    vertices, faces = concat_meshes(body, (eye[0] + [0.1, 0.1, 0.1], eye[1]))
    points = sample_points(vertices, 800)
    d, w = assert_signs_match_exact(points, vertices, faces)
    assert np.all(d[np.linalg.norm(points - 0.1, axis=1) < 0.04] < 0)  # inside the "eyeball": w = 2


# ---------------------------------------------------------------- edge cases


def test_points_on_vertices_edges_and_faces_have_zero_distance():
    vertices, faces = noisy_sphere(subdivisions=2)
    tri = vertices[faces]
    on_surface = np.concatenate([vertices[:50], (tri[:50, 0] + tri[:50, 1]) / 2, tri[:50].mean(1)])
    for backend in ("cpu", "torch", "brute"):
        d = unsigned_distance(on_surface, vertices, faces, backend=backend)
        assert np.abs(d).max() < 1e-12, backend


def test_degenerate_triangles():
    sphere_vertices, sphere_faces = noisy_sphere(subdivisions=2)
    extra = np.array([[0.5, 0.0, 0.0], [0.7, 0.0, 0.0], [0.6, 0.0, 0.0], [0.0, 0.6, 0.0]])
    n = len(sphere_vertices)
    vertices = np.concatenate([sphere_vertices, extra])
    # collinear corners, one point thrice, a repeated corner: all zero area
    faces = np.concatenate([sphere_faces, [[n, n + 1, n + 2], [n + 3, n + 3, n + 3], [n, n, n + 1]]])
    points = np.concatenate([sample_points(vertices, 300), [[0.6, 0.1, 0.0], [0.0, 0.65, 0.0], [0.75, 0, 0]]])
    # the degenerate triangles are the segment x in [0.5, 0.7] on the x axis and the point (0, 0.6, 0)
    to_segment = np.linalg.norm(points - np.clip(points[:, :1], 0.5, 0.7) * [1, 0, 0], axis=1)
    to_point = np.linalg.norm(points - [0, 0.6, 0], axis=1)
    expected = np.minimum(reference_distance(points, sphere_vertices, sphere_faces),
                          np.minimum(to_segment, to_point))
    np.testing.assert_allclose(expected[-3:], [0.1, 0.05, 0.05], atol=1e-12)
    for backend in ("cpu", "torch", "brute"):
        d = unsigned_distance(points, vertices, faces, backend=backend)
        np.testing.assert_allclose(d, expected, atol=1e-9, err_msg=backend)
        w = winding_number(points, vertices, faces, backend=backend)
        np.testing.assert_allclose(w, reference_winding(points, sphere_vertices, sphere_faces), atol=0.05)


def test_single_triangle():
    vertices = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    faces = np.array([[0, 1, 2]])
    points = np.array([[0.2, 0.2, 0.5], [0.2, 0.2, -0.3], [-1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    expected = [0.5, 0.3, math.sqrt(2), math.sqrt(0.5), math.sqrt(2)]
    for backend in ("cpu", "torch", "brute"):
        np.testing.assert_allclose(unsigned_distance(points, vertices, faces, backend=backend), expected, atol=1e-12)
        w = winding_number(points, vertices, faces, backend=backend)
        # cpu: far points see the triangle through its dipole expansion (Barill et al.)
        np.testing.assert_allclose(w, reference_winding(points, vertices, faces),
                                   atol=1e-3 if backend == "cpu" else 1e-12)
        assert np.all(signed_distance(points, vertices, faces, backend=backend) > 0)  # |w| < 0.5


def test_empty_points_and_empty_mesh():
    vertices, faces = noisy_sphere(subdivisions=1)
    for backend in ("cpu", "torch", "brute"):
        assert signed_distance(np.zeros((0, 3)), vertices, faces, backend=backend).shape == (0,)
        out = signed_distance(torch.zeros(0, 3), vertices, faces, backend=backend)
        assert isinstance(out, torch.Tensor) and out.shape == (0,)
    d = signed_distance(np.zeros((2, 3)), vertices, np.zeros((0, 3), np.int64))
    assert np.all(np.isinf(d)) and np.all(d > 0)


def test_dtypes_kinds_and_leading_dims():
    vertices, faces = noisy_sphere(subdivisions=2)
    points = sample_points(vertices, 200)
    d64 = signed_distance(points, vertices, faces)
    assert d64.dtype == np.float64 and d64.shape == (200,)
    d32 = signed_distance(points.astype(np.float32), vertices.astype(np.float32), faces.astype(np.int32))
    assert d32.dtype == np.float32
    np.testing.assert_allclose(d32, d64, atol=1e-6)
    dt = signed_distance(torch.from_numpy(points).float(), torch.from_numpy(vertices), torch.from_numpy(faces))
    assert isinstance(dt, torch.Tensor) and dt.dtype == torch.float32
    np.testing.assert_allclose(dt.numpy(), d64, atol=1e-6)
    grid = signed_distance(points.reshape(10, 20, 3), vertices, faces)
    np.testing.assert_array_equal(grid.reshape(-1), d64)


def test_batch_form_equals_per_mesh_calls():
    vertices, faces = noisy_sphere(subdivisions=2)
    rng = np.random.default_rng(7)
    batch_vertices = np.stack([vertices, vertices * 1.2 + 0.05, vertices[:, [1, 0, 2]] * [1, 1, -1]])
    batch_points = rng.uniform(-0.5, 0.5, (3, 100, 3))
    d = signed_distance_batch(batch_points, batch_vertices, faces)
    assert d.shape == (3, 100)
    for b in range(3):
        np.testing.assert_array_equal(d[b], signed_distance(batch_points[b], batch_vertices[b], faces))
    dt = signed_distance_batch(torch.from_numpy(batch_points), torch.from_numpy(batch_vertices),
                               torch.from_numpy(faces), backend="torch")
    np.testing.assert_allclose(dt.numpy(), d, atol=1e-9)
    with pytest.raises(SdfError):
        signed_distance_batch(batch_points[:2], batch_vertices, faces)


# ---------------------------------------------------------------- backends


def test_torch_backend_equals_cpu_backend():
    vertices, faces = posed_body(count=10)
    points = sample_points(vertices, 200, seed=9)
    cpu = signed_distance(points, vertices, faces, backend="cpu")
    gpu_path = signed_distance(torch.from_numpy(points), torch.from_numpy(vertices), torch.from_numpy(faces),
                               backend="torch")
    np.testing.assert_allclose(gpu_path.numpy(), cpu, atol=1e-6)
    assert np.array_equal(np.signbit(gpu_path.numpy()), np.signbit(cpu))
    np.testing.assert_allclose(
        sdf.BACKENDS["torch"].compute(torch.from_numpy(points), torch.from_numpy(vertices),
                                      torch.from_numpy(faces), "winding").numpy(),
        reference_winding(points, vertices, faces), atol=1e-9)


def test_brute_backend_matches_test_reference():
    vertices, faces = noisy_sphere(subdivisions=2)
    points = sample_points(vertices, 200)
    np.testing.assert_allclose(unsigned_distance(points, vertices, faces, backend="brute"),
                               reference_distance(points, vertices, faces), atol=1e-12)
    np.testing.assert_allclose(winding_number(points, vertices, faces, backend="brute"),
                               reference_winding(points, vertices, faces), atol=1e-12)


def test_fast_winding_number_close_to_exact():
    vertices, faces = noisy_sphere(subdivisions=4)
    points = sample_points(vertices, 300)
    np.testing.assert_allclose(winding_number(points, vertices, faces, backend="cpu"),
                               reference_winding(points, vertices, faces), atol=0.1)


def test_bad_inputs_and_backends_raise_clear_errors():
    vertices, faces = noisy_sphere(subdivisions=1)
    with pytest.raises(SdfError, match="unknown SDF backend"):
        signed_distance(np.zeros((1, 3)), vertices, faces, backend="nope")
    with pytest.raises(SdfError, match="points"):
        signed_distance(np.zeros((4, 2)), vertices, faces)
    with pytest.raises(SdfError, match="face indices"):
        signed_distance(np.zeros((1, 3)), vertices, faces + len(vertices))
    if not torch.cuda.is_available():
        with pytest.raises(SdfError, match="CUDA"):
            signed_distance(np.zeros((1, 3)), vertices, faces, backend="cuda")


def test_mesh_to_sdf_backend_explains_when_missing():
    try:
        import mesh_to_sdf  # noqa: F401
    except ImportError:
        vertices, faces = noisy_sphere(subdivisions=1)
        with pytest.raises(SdfError, match="mesh-to-sdf"):
            signed_distance(np.zeros((1, 3)), vertices, faces, backend="mesh-to-sdf")
    else:
        pytest.skip("mesh-to-sdf is installed")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_backend_equals_cpu_backend():
    vertices, faces = posed_body()
    points = sample_points(vertices, 2000)
    cpu = signed_distance(points, vertices, faces, backend="cpu")
    cuda = signed_distance(torch.from_numpy(points).cuda(), torch.from_numpy(vertices).cuda(),
                           torch.from_numpy(faces).cuda())
    assert cuda.is_cuda
    np.testing.assert_allclose(cuda.cpu().numpy(), cpu, atol=1e-6)
