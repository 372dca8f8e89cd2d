"""The reusable CPU SDF tree: build, refit to a new pose, shared winding numbers, frames.

References are independent of the tree: float64 brute force over all triangles (the "brute"
backend: one triangle at a time, numpy) for distances and exact winding numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from helpers import capsule_mesh, concat_meshes

from sampling import sdf, sdf_numba
from sampling.sdf import CpuSdf, SdfError


def body(arm_angle: float, count: int = 12):
    """Torso, two arms swung by ``arm_angle`` (radians) about the shoulders and legs: at angles
    near 1 the arms pass through the torso and each other (a self-intersecting mesh); the
    vertex count and faces do not depend on the angle (one topology, many poses)."""
    c, s = np.cos(arm_angle), np.sin(arm_angle)
    parts = [capsule_mesh([0, 0, 0], [0, 0.5, 0], 0.15, count),
             capsule_mesh([-0.2, 0.45, 0], [-0.2 + 0.45 * s, 0.45 - 0.25 * c, 0.15], 0.05, count),
             capsule_mesh([0.2, 0.45, 0], [0.2 - 0.45 * s, 0.45 - 0.25 * c, 0.12], 0.05, count),
             capsule_mesh([-0.08, 0, 0], [-0.1, -0.45, 0.05], 0.07, count),
             capsule_mesh([0.08, 0, 0], [0.02, -0.45, -0.02], 0.07, count)]
    return concat_meshes(*parts)


def points_near(vertices: np.ndarray, n: int, seed: int = 3) -> np.ndarray:
    """Like the sampler: near the surface at 1 and 5 cm, plus uniform around the mesh."""
    rng = np.random.default_rng(seed)
    near = vertices[rng.integers(0, len(vertices), n // 3)]
    lo, hi = vertices.min(0) - 0.2, vertices.max(0) + 0.2
    return np.concatenate([near + 0.01 * rng.standard_normal(near.shape),
                           near + 0.05 * rng.standard_normal(near.shape),
                           rng.uniform(lo, hi, (n - 2 * len(near), 3))])


def test_refit_equals_rebuild_and_float64_reference():
    rest_vertices, faces = body(0.0)
    posed_vertices, posed_faces = body(1.1)
    np.testing.assert_array_equal(faces, posed_faces)
    points = points_near(posed_vertices, 600)
    rebuilt = CpuSdf.build(posed_vertices, faces)
    refitted = CpuSdf.build(rest_vertices, faces).refit(posed_vertices)
    d_refit = refitted.signed_distance(points)
    np.testing.assert_array_equal(d_refit, rebuilt.signed_distance(points))
    reference = sdf.signed_distance(points, posed_vertices, faces, backend="brute")
    np.testing.assert_allclose(np.abs(d_refit), np.abs(reference), rtol=0, atol=1e-9)
    far = np.abs(reference) > 1e-4
    assert np.sum((d_refit[far] < 0) != (reference[far] < 0)) == 0
    w = sdf.winding_number(points, posed_vertices, faces, backend="brute")
    assert np.sum(w > 1.5) > 0, "the posed body should overlap itself somewhere"
    # the refitted tree's boxes hold their triangles, and each parent's box its children's
    tree = refitted.tree
    for node in range(len(tree.left)):
        if tree.left[node] < 0:
            corners = tree.tri[tree.start[node]:tree.start[node] + tree.count[node]].reshape(-1, 3)
            assert np.all(corners >= tree.box_min[node]) and np.all(corners <= tree.box_max[node])
        else:
            for child in (tree.left[node], tree.left[node] + 1):
                assert np.all(tree.box_min[child] >= tree.box_min[node])
                assert np.all(tree.box_max[child] <= tree.box_max[node])


def test_refit_rejects_other_meshes():
    vertices, faces = body(0.0)
    tree = CpuSdf.build(vertices, faces)
    with pytest.raises(SdfError, match="refit needs"):
        tree.refit(vertices[:-1])


def test_build_puts_every_triangle_in_one_leaf():
    vertices, faces = body(0.3)
    tree = sdf_numba.build_tree(vertices, faces)
    leaves = tree.left < 0
    assert tree.count[leaves].sum() == len(faces)
    covered = np.concatenate([np.arange(s, s + c) for s, c in zip(tree.start[leaves], tree.count[leaves])])
    np.testing.assert_array_equal(np.sort(covered), np.arange(len(faces)))
    assert np.all(tree.count[leaves] <= sdf_numba.LEAF_SIZE)
    # tree order is a permutation of the mesh's faces
    np.testing.assert_array_equal(np.sort(tree.faces, axis=None), np.sort(faces, axis=None))
    keys = {tuple(f) for f in faces.tolist()}
    assert {tuple(f) for f in tree.faces.tolist()} == keys


def test_closed_mesh_detection():
    vertices, faces = body(0.5)
    assert sdf_numba.build_tree(vertices, faces).closed
    assert not sdf_numba.build_tree(vertices, faces[1:]).closed  # a hole
    flipped = faces.copy()
    flipped[0] = flipped[0, ::-1]
    assert not sdf_numba.build_tree(vertices, flipped).closed  # one face against its neighbours


def test_shared_winding_numbers_give_exact_signs_on_open_and_closed_meshes():
    """Closed mesh: points share winding numbers through empty balls; open mesh (a hole): they
    do not. Both must match the exact winding number's sign everywhere off the surface."""
    vertices, faces = body(1.0)
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    keep = mesh.triangles_center[:, 2] < 0.25
    for v, f in ((vertices, faces), (np.asarray(mesh.vertices), np.asarray(mesh.faces)[keep])):
        points = points_near(v, 900, seed=11)
        d = CpuSdf.build(v, f).signed_distance(points)
        w = sdf.winding_number(points, v, f, backend="brute")
        checked = (np.abs(d) > 1e-4) & (np.abs(w - 0.5) > 0.05)
        assert checked.sum() > 600
        assert np.sum((d[checked] < 0) != (w[checked] > 0.5)) == 0


def test_second_order_fast_winding_number_accuracy():
    vertices, faces = body(1.0, count=16)
    points = points_near(vertices, 300, seed=5)
    fast = CpuSdf.build(vertices, faces).winding_number(points)
    exact = sdf.winding_number(points, vertices, faces, backend="brute")
    assert np.abs(fast - exact).max() < 0.06


def test_one_tree_in_the_world_frame_serves_every_camera():
    """Rotating and translating the points into the mesh's frame gives the camera-frame SDF."""
    vertices, faces = body(0.8)
    tree = CpuSdf.build(vertices, faces)
    rng = np.random.default_rng(2)
    for _ in range(3):
        q, _r = np.linalg.qr(rng.standard_normal((3, 3)))
        R = q * np.sign(np.linalg.det(q))  # a proper rotation
        t = rng.uniform(-1, 1, 3) + [0, 0, 4]
        points_cam = points_near(vertices, 200, seed=int(rng.integers(100))) @ R.T + t
        in_camera = sdf.signed_distance(points_cam, vertices @ R.T + t, faces, backend="cpu")
        shared = tree.signed_distance((points_cam - t) @ R)
        np.testing.assert_allclose(shared, in_camera, rtol=0, atol=1e-12)


def test_tree_keeps_kinds_dtypes_and_empty_meshes():
    import torch

    vertices, faces = body(0.2)
    tree = CpuSdf.build(torch.from_numpy(vertices), torch.from_numpy(faces))
    points = points_near(vertices, 50).reshape(5, 10, 3)
    out = tree.signed_distance(torch.from_numpy(points).float())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (5, 10)
    np.testing.assert_allclose(out.numpy(), sdf.signed_distance(points, vertices, faces), atol=1e-6)
    empty = CpuSdf.build(vertices, np.zeros((0, 3), np.int64))
    assert np.all(np.isinf(empty.signed_distance(points)))
    assert np.all(empty.refit(vertices).winding_number(points) == 0)


def _depth(tree) -> int:
    depth = np.zeros(len(tree.left), np.int64)
    for node in range(len(tree.left)):  # children come after their parent
        if tree.left[node] >= 0:
            depth[tree.left[node]] = depth[tree.left[node] + 1] = depth[node] + 1
    return int(depth.max())


def test_depth_stays_bounded_on_a_geometric_strip():
    """Triangles at spacings growing 20-fold: each one alone fills most of its parent's
    centroid bins, so the surface-area heuristic peels one off per split; the median fallback
    keeps the depth within its bound, and results stay exact."""
    n = 120
    x = 20.0 ** np.arange(n) * 1e-3
    zero, eps = np.zeros(n), np.full(n, 1e-3)
    vertices = np.concatenate([np.stack([x, zero, zero], 1), np.stack([x, eps, zero], 1),
                               np.stack([x, zero, eps], 1)])
    faces = np.stack([np.arange(n), np.arange(n) + n, np.arange(n) + 2 * n], 1)
    tree = sdf_numba.build_tree(vertices, faces)
    assert sdf_numba._SAH_MAX_DEPTH < _depth(tree) <= sdf_numba._SAH_MAX_DEPTH + int(np.log2(n)) + 1
    points = np.random.default_rng(0).uniform(-0.1, 0.2, (300, 3))
    with np.errstate(over="ignore"):  # the reference's solid angles of the 1e160 m triangles
        reference = sdf.unsigned_distance(points, vertices, faces, backend="brute")
    np.testing.assert_allclose(CpuSdf.build(vertices, faces).unsigned_distance(points), reference, rtol=0, atol=1e-12)


def test_far_points_facing_a_smooth_patch_are_exact():
    """Far points see hundreds of triangles at nearly their distance: the in-plane disk bound
    prunes most of them and must never prune the closest one."""
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.15)  # 5,120 faces
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    rng = np.random.default_rng(5)
    directions = rng.standard_normal((250, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = directions * rng.uniform(0.2, 1.5, (250, 1))
    d = CpuSdf.build(vertices, faces).signed_distance(points)
    np.testing.assert_allclose(d, sdf.signed_distance(points, vertices, faces, backend="brute"), rtol=0, atol=1e-12)


def _morton_reference(points: np.ndarray) -> np.ndarray:
    """Z-order by interleaving the bits of 10-bit cell coordinates one bit at a time (python ints)."""
    lo = points.min(0)
    q = ((points - lo) * (1023.0 / max(float((points.max(0) - lo).max()), 1e-300))).astype(np.int64)
    codes = [sum(((int(c) >> k) & 1) << (3 * k + axis) for k in range(10) for axis, c in enumerate(row)) for row in q]
    return np.argsort(np.array(codes), kind="stable")


@pytest.mark.parametrize("case", ["random", "ties", "single", "flat"])
def test_spatial_order_is_the_stable_morton_order(case):
    rng = np.random.default_rng(4)
    points = {"random": rng.normal(size=(3000, 3)) * 7.0 - 2.0,
              "ties": np.round(rng.uniform(size=(500, 3)) * 6) / 6,  # many points share a cell
              "single": rng.normal(size=(1, 3)),
              "flat": np.c_[rng.uniform(size=(200, 2)), np.zeros(200)]}[case]
    order = sdf_numba.spatial_order(points)
    assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(len(points)))
    np.testing.assert_array_equal(order, _morton_reference(points))
    assert sdf_numba.spatial_order(np.zeros((0, 3))).shape == (0,)
