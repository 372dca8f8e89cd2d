import numpy as np
import pytest
import trimesh

from common.rng import rng_for
from sampling.frustum import (
    SamplerConfig,
    sample_ball,
    sample_frustum,
    sample_query_points,
    sample_surface,
)

K = np.array([[300.0, 0.0, 127.5], [0.0, 310.0, 127.5], [0.0, 0.0, 1.0]])


def sphere_sdf(center, radius):
    return lambda p: np.linalg.norm(p - center, axis=-1) - radius


def test_rng_for_is_keyed_and_stable():
    a = rng_for(0, "S1/Walking_1", 3).random(4)
    assert np.array_equal(a, rng_for(0, "S1/Walking_1", 3).random(4))
    assert not np.array_equal(a, rng_for(1, "S1/Walking_1", 3).random(4))
    assert not np.array_equal(a, rng_for(0, "S1/Walking_1", 4).random(4))


def test_surface_points_lie_on_mesh():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    pts = sample_surface(mesh.vertices, mesh.faces, 2000, rng_for(0, "s"))
    # On a convex polyhedron a surface point lies between the face planes and the vertices'
    # sphere, and on (not strictly inside) at least one face plane.
    plane_d = np.einsum("fi,fi->f", mesh.face_normals, mesh.vertices[mesh.faces[:, 0]])
    off = pts @ mesh.face_normals.T - plane_d  # (N, F) signed distances to the face planes
    assert pts.shape == (2000, 3)
    assert off.max() < 1e-9 and np.abs(off).min(axis=1).max() < 1e-9
    assert np.linalg.norm(pts, axis=1).max() <= 0.3 + 1e-9


def test_ball_points_inside_ball_and_volume_uniform():
    c = np.array([0.1, -0.2, 4.0])
    pts = sample_ball(c, 0.5, 20000, rng_for(0, "b"))
    r = np.linalg.norm(pts - c, axis=-1)
    assert r.max() <= 0.5
    # Uniform in volume: P(r < R/2) = 1/8.
    assert abs((r < 0.25).mean() - 0.125) < 0.01


def test_frustum_points_project_into_image_and_depth_range():
    pts = sample_frustum(K, 256, 256, 3.0, 5.0, 20000, rng_for(0, "f"))
    uv = pts[:, :2] / pts[:, 2:] * np.diag(K)[:2] + K[:2, 2]
    assert (pts[:, 2] >= 3.0).all() and (pts[:, 2] <= 5.0).all()
    assert (uv >= -0.5 - 1e-6).all() and (uv <= 255.5 + 1e-6).all()
    # Volume-uniform: z³ is uniform on [27, 125], so its mean is 76.
    assert abs((pts[:, 2] ** 3).mean() - 76.0) < 1.0


def test_frustum_rejects_bad_depths():
    with pytest.raises(ValueError):
        sample_frustum(K, 256, 256, 2.0, 1.0, 10, rng_for(0, "f"))


def test_query_points_cap_inside_share_and_are_deterministic():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.6)
    center = np.array([0.0, 0.0, 4.0])
    verts = mesh.vertices + center
    cfg = SamplerConfig(points=1000, near_fraction=0.2, ball_fraction=0.7, ball_radius_m=0.7)
    sdf_fn = sphere_sdf(center, 0.6)
    p1, s1 = sample_query_points(verts, mesh.faces, center, K, 256, cfg, rng_for(0, "k"), sdf_fn)
    p2, s2 = sample_query_points(verts, mesh.faces, center, K, 256, cfg, rng_for(0, "k"), sdf_fn)
    assert p1.shape == (1000, 3) and s1.shape == (1000,)
    assert p1.dtype == np.float32 and s1.dtype == np.float32
    assert (s1 < 0).mean() <= 0.5
    np.testing.assert_allclose(s1, sdf_fn(p1.astype(np.float64)), atol=1e-6)
    assert np.array_equal(p1, p2) and np.array_equal(s1, s2)


def test_config_counts_sum_to_n():
    cfg = SamplerConfig()
    near, ball, frustum = cfg.counts(4097)
    assert sum(near) + ball + frustum == 4097
    with pytest.raises(ValueError):
        SamplerConfig(near_fraction=0.8, ball_fraction=0.5)
