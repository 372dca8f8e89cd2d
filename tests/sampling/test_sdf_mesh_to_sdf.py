"""The optional "mesh-to-sdf" comparison backend of sampling.sdf (mesh-to-sdf's default settings)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import trimesh

from sampling.sdf import SdfError, signed_distance


def sphere_off_centre():
    """An icosphere of radius 0.3 m at camera depth (z = 4 m), like a body in the camera frame."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    return np.asarray(mesh.vertices) + [0.1, -0.2, 4.0], np.asarray(mesh.faces)


def test_mesh_to_sdf_backend_explains_when_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "mesh_to_sdf", None)  # import raises ImportError
    vertices, faces = sphere_off_centre()
    with pytest.raises(SdfError, match=r"pip install 'h36m-nvf\[mesh-to-sdf\]'"):
        signed_distance(np.zeros((1, 3)), vertices, faces, backend="mesh-to-sdf")


def test_mesh_to_sdf_backend_has_no_winding_number():
    from sampling.sdf import winding_number

    vertices, faces = sphere_off_centre()
    with pytest.raises(SdfError, match="winding"):
        winding_number(np.zeros((1, 3)), vertices, faces, backend="mesh-to-sdf")


@pytest.mark.slow  # 100 software-rendered depth scans: 15-30 s on 2 shared cores
def test_mesh_to_sdf_backend_agrees_with_exact_sdf_within_its_tolerance():
    pytest.importorskip("mesh_to_sdf")
    vertices, faces = sphere_off_centre()
    rng = np.random.default_rng(0)
    centre = np.array([0.1, -0.2, 4.0])
    direction = rng.standard_normal((300, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    points = centre + direction * rng.uniform(0.05, 0.6, (300, 1))  # |d| >= 2 cm from the sphere
    points = points[np.abs(np.linalg.norm(points - centre, axis=1) - 0.3) > 0.02]
    exact = signed_distance(points, vertices, faces, backend="cpu")
    try:
        approx = signed_distance(points, vertices, faces, backend="mesh-to-sdf")
    except SdfError as error:
        if "OpenGL" in str(error):
            pytest.skip(f"no headless OpenGL here: {error}")
        raise
    # scan clouds of 400 px renders: a few mm apart on a 0.66 m bounding sphere
    np.testing.assert_allclose(approx, exact, atol=5e-3)
    assert np.array_equal(approx < 0, exact < 0)
