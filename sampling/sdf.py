"""Exact signed distance from points to triangle meshes (negative inside).

Distance: exact Euclidean distance to the closest point on any triangle (all Voronoi regions).
Sign: generalized winding number w (Jacobson et al. 2013), inside where w > 0.5. Unlike ray
parity or angle-weighted pseudonormals this is right on open meshes (SMPL-X's separate eyeball
shells, holes) and on self-intersecting posed bodies.

Backends (``backend=``):
  "cpu"          numba BVH + branch-and-bound closest point + Barill et al.'s fast winding
                 number (exact solid angles near, dipoles far, exact sum near w = 0.5). To query
                 one mesh many times (several views of a frame) or refit it to the next pose of
                 the same faces, use ``CpuSdf`` directly.
  "cuda"         chunked brute force in torch on the GPU (points moved there if needed).
  "torch"        the "cuda" algorithm on the points' own device (CPU in tests).
  "brute"        float64 numpy, one triangle at a time; a reference for small inputs.
  "mesh-to-sdf"  the ``mesh-to-sdf`` package (optional extra) with its default settings (depth
                 scans rendered by pyrender; headless via PYOPENGL_PLATFORM=egl), for comparison.
  "auto"         "cuda" for CUDA tensors, else "cpu".

Inputs may be numpy arrays or torch tensors; outputs have the kind, device and (float) dtype
of ``points``. Units: whatever the inputs use (metres in this project), one frame for both.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

FWN_BETA = 1.75
"""Fast winding number accuracy: a node is expanded when nearer than beta x its radius."""
FWN_EXACT_MARGIN = 0.3
"""Points whose fast winding number lies within this of 0.5 are recomputed exactly. The
second-order expansion at beta = 1.75 was measured up to 0.04 off on the sampler's points
around the posed, self-intersecting 20k-face synthetic SMPL-X body (the first-order one at
beta = 2, used before: 0.08); a sign can only flip if the error exceeds this margin."""
FWN_BETA_CLOSED_SIGN = 1.25
"""Beta when only the sign is wanted (signed distances) on a closed mesh. There the winding
number is an integer off the surface, so a sign can only flip if the approximation is off by
more than 0.5 + FWN_EXACT_MARGIN = 0.8 (a result within the margin of 0.5 is recomputed
exactly); measured at most 0.12 off on the sampler's points around the posed, self-intersecting
body (bench_sdf), and it halves the winding number's cost there."""
INSIDE_WINDING = 0.5
"""Inside where the winding number exceeds this."""

_MODES = ("signed", "unsigned", "winding")


class SdfError(ValueError):
    """Bad mesh or points (shape, indices) or an unavailable backend; the message says which."""


@dataclass(frozen=True)
class SdfBackend:
    """One way to compute distances and winding numbers."""

    name: str
    """Registry key."""
    compute: Callable[[Any, Any, Any, str], Any]
    """(points (N, 3), vertices (V, 3), faces (F, 3), mode) -> (N,) in the backend's kind."""
    uses_torch: bool
    """True: takes and returns torch tensors; False: float64 numpy arrays."""


# ---------------------------------------------------------------- public API


def signed_distance(points, vertices, faces, *, backend: str = "auto"):
    """Signed distance from points to a triangle mesh, negative inside (winding number > 0.5).

    Args:
        points: (..., 3) query points (numpy or torch), same unit and frame as ``vertices``.
        vertices: (V, 3) mesh vertices.
        faces: (F, 3) integer vertex indices (consistently oriented for a meaningful sign).
        backend: see the module docstring.
    Returns:
        (...) signed distances, same kind / device / float dtype as ``points``.
    """
    return _run(points, vertices, faces, backend, "signed")


def unsigned_distance(points, vertices, faces, *, backend: str = "auto"):
    """Exact Euclidean distance from (..., 3) points to the mesh (V, 3)/(F, 3); (...) output."""
    return _run(points, vertices, faces, backend, "unsigned")


def winding_number(points, vertices, faces, *, backend: str = "auto"):
    """Generalized winding number of the mesh at (..., 3) points; (...) output.

    About 1 inside and 0 outside a closed, outward-oriented mesh. The "cpu" backend is exact
    within ``FWN_EXACT_MARGIN`` of 0.5 and a fast approximation elsewhere (errors up to ~0.1).
    """
    return _run(points, vertices, faces, backend, "winding")


def signed_distance_batch(points, vertices, faces, *, backend: str = "auto"):
    """Signed distances for B meshes sharing faces (e.g. one posed body per frame).

    Args:
        points: (B, N, 3) query points, one set per mesh.
        vertices: (B, V, 3) vertices. faces: (F, 3) shared vertex indices.
    Returns:
        (B, N) signed distances, same kind as ``points``.
    """
    if points.shape[0] != vertices.shape[0]:
        raise SdfError(f"batch sizes differ: points {tuple(points.shape)}, vertices {tuple(vertices.shape)}")
    rows = [signed_distance(points[b], vertices[b], faces, backend=backend) for b in range(points.shape[0])]
    if _is_torch(points):
        import torch

        return torch.stack(rows) if rows else points.new_zeros(points.shape[:2])
    return np.stack(rows) if rows else np.zeros(points.shape[:2], _float_dtype(points))


def available_backends() -> list[str]:
    """Names accepted by ``backend=`` (mesh-to-sdf is listed even when not installed)."""
    return ["auto", *BACKENDS]


# ---------------------------------------------------------------- dispatch


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _float_dtype(points):
    dtype = np.dtype(str(points.dtype).replace("torch.", ""))
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _check_shapes(points, vertices, faces) -> None:
    if points.ndim < 1 or points.shape[-1] != 3:
        raise SdfError(f"points must have shape (..., 3), got {tuple(points.shape)}")
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise SdfError(f"vertices must have shape (V, 3), got {tuple(vertices.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise SdfError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
    if faces.shape[0] and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[0]):
        raise SdfError(f"face indices must lie in [0, {vertices.shape[0]}), "
                       f"got [{int(faces.min())}, {int(faces.max())}]")


def _resolve(backend: str, points) -> SdfBackend:
    if backend == "auto":
        backend = "cuda" if _is_torch(points) and points.is_cuda else "cpu"
    if backend not in BACKENDS:
        raise SdfError(f"unknown SDF backend {backend!r}; choose one of {available_backends()}")
    return BACKENDS[backend]


def _run(points, vertices, faces, backend: str, mode: str):
    _check_shapes(points, vertices, faces)
    chosen = _resolve(backend, points)
    lead = tuple(points.shape[:-1])
    flat = points.reshape(-1, 3)
    out_dtype = _float_dtype(points)
    if chosen.uses_torch:
        import torch

        def as_tensor(x):
            return x if _is_torch(x) else torch.from_numpy(np.asarray(x))

        result = chosen.compute(as_tensor(flat), as_tensor(vertices), as_tensor(faces), mode)
        if _is_torch(points):
            return result.to(device=points.device, dtype=getattr(torch, out_dtype.name)).reshape(lead)
        return result.cpu().numpy().astype(out_dtype).reshape(lead)

    result = chosen.compute(_as_numpy(flat, np.float64), _as_numpy(vertices, np.float64),
                            _as_numpy(faces, np.int64), mode)
    result = result.astype(out_dtype).reshape(lead)
    if _is_torch(points):
        import torch

        return torch.from_numpy(result).to(points.device)
    return result


def _combine(distance, winding, mode: str):
    if mode == "unsigned":
        return distance
    if mode == "winding":
        return winding
    return distance * (1 - 2 * (winding > INSIDE_WINDING))


def _no_faces(n: int, mode: str) -> np.ndarray:
    # an empty mesh: infinitely far, outside
    return np.zeros(n) if mode == "winding" else np.full(n, np.inf)


# ---------------------------------------------------------------- backends


def _cpu_compute(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, mode: str) -> np.ndarray:
    return CpuSdf.build(vertices, faces).compute(points, mode)


class CpuSdf:
    """The "cpu" backend's tree for one mesh, built once and queried any number of times.

    Build it per posed frame and query it for every camera view (transform the views' points
    into the mesh's frame: distances and winding numbers do not change under rotations and
    translations), and ``refit`` it to the next pose of the same faces instead of rebuilding:
    results are the same as a fresh build's, only the speed depends on the topology's fit.
    """

    def __init__(self, tree, n_vertices: int) -> None:
        self.tree = tree
        """``sampling.sdf_numba.TriangleTree``, or None for a mesh without faces."""
        self.n_vertices = n_vertices

    @classmethod
    def build(cls, vertices, faces) -> CpuSdf:
        """Tree of the mesh vertices (V, 3), faces (F, 3) int (numpy or torch)."""
        from sampling import sdf_numba

        vertices, faces = _as_numpy(vertices, np.float64), _as_numpy(faces, np.int64)
        _check_shapes(np.zeros((0, 3)), vertices, faces)
        tree = sdf_numba.build_tree(vertices, faces) if faces.shape[0] else None
        return cls(tree, vertices.shape[0])

    def refit(self, vertices) -> CpuSdf:
        """The same tree for new (V, 3) positions of the mesh's vertices (same faces)."""
        from sampling import sdf_numba

        vertices = _as_numpy(vertices, np.float64)
        if vertices.ndim != 2 or vertices.shape != (self.n_vertices, 3):
            raise SdfError(f"refit needs ({self.n_vertices}, 3) vertices, got {tuple(vertices.shape)}")
        tree = sdf_numba.refit_tree(self.tree, vertices) if self.tree is not None else None
        return CpuSdf(tree, self.n_vertices)

    def signed_distance(self, points):
        """(...) signed distances of (..., 3) points (mesh frame), negative inside; same kind,
        device and float dtype as ``points``."""
        return self._public(points, "signed")

    def unsigned_distance(self, points):
        """(...) exact distances of (..., 3) points to the mesh."""
        return self._public(points, "unsigned")

    def winding_number(self, points):
        """(...) winding numbers at (..., 3) points (see ``winding_number``)."""
        return self._public(points, "winding")

    def _public(self, points, mode: str):
        if points.ndim < 1 or points.shape[-1] != 3:
            raise SdfError(f"points must have shape (..., 3), got {tuple(points.shape)}")
        result = self.compute(_as_numpy(points.reshape(-1, 3), np.float64), mode)
        result = result.astype(_float_dtype(points)).reshape(tuple(points.shape[:-1]))
        if _is_torch(points):
            import torch

            return torch.from_numpy(result).to(points.device)
        return result

    def compute(self, points: np.ndarray, mode: str) -> np.ndarray:
        """(N,) float64 result of (N, 3) float64 points for mode signed / unsigned / winding."""
        from sampling import sdf_numba

        if self.tree is None:
            return _no_faces(points.shape[0], mode)
        if points.shape[0] == 0:
            return np.zeros(0)
        order = sdf_numba.spatial_order(points)
        distance, winding = np.empty(len(points)), np.empty(len(points))
        beta = FWN_BETA_CLOSED_SIGN if mode == "signed" and self.tree.closed else FWN_BETA
        distance[order], winding[order] = sdf_numba.query(
            np.ascontiguousarray(points[order]), *self.tree.query_arrays(), mode != "winding",
            mode != "unsigned", beta, FWN_EXACT_MARGIN)
        return _combine(distance, winding, mode)


def _as_numpy(x, dtype) -> np.ndarray:
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


def _torch_compute_on(device_of: Callable[[Any], Any]):
    def compute(points, vertices, faces, mode: str):
        import torch

        from sampling import sdf_torch

        device = device_of(points)
        dtype = torch.promote_types(points.dtype, vertices.dtype)
        if not dtype.is_floating_point:
            dtype = torch.float64
        if faces.shape[0] == 0:
            return torch.from_numpy(_no_faces(points.shape[0], mode)).to(device)
        # centre in float64 so float32 kernels see coordinates of body size, not camera depth
        centre = vertices.to(device=device, dtype=torch.float64).mean(0)
        p = (points.to(device=device, dtype=torch.float64) - centre).to(dtype)
        v = (vertices.to(device=device, dtype=torch.float64) - centre).to(dtype)
        distance, winding = sdf_torch.distance_and_winding(
            p, v, faces.to(device), want_distance=mode != "winding", want_winding=mode != "unsigned")
        return _combine(distance, winding, mode)

    return compute


def _cuda_device(points):
    import torch

    if not torch.cuda.is_available():
        raise SdfError("SDF backend 'cuda' needs a CUDA device; none is available (use 'cpu' or 'torch')")
    return points.device if points.is_cuda else torch.device("cuda")


def _brute_compute(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, mode: str) -> np.ndarray:
    """Float64 numpy reference: loop over triangles, vectorised over points (small inputs)."""
    best = np.full(points.shape[0], np.inf)
    omega = np.zeros(points.shape[0])
    for a, b, c in vertices[faces]:
        best = np.minimum(best, _numpy_triangle_sqdist(points, a, b, c))
        omega += _numpy_solid_angle(points, a, b, c)
    return _combine(np.sqrt(best), omega / (4 * math.pi), mode)


def _numpy_triangle_sqdist(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    cross = np.cross(b - a, c - a)
    edges = (b - a) @ (b - a) + (c - b) @ (c - b) + (a - c) @ (a - c)
    if cross @ cross <= (1e-10 * edges) ** 2 + 1e-300:
        return np.minimum.reduce([_numpy_segment_sqdist(p, a, b), _numpy_segment_sqdist(p, b, c),
                                  _numpy_segment_sqdist(p, c, a)])
    # project onto the plane, clamp to the triangle via its edges when outside
    ab, ac, ap = b - a, c - a, p - a
    d00, d01, d11 = ab @ ab, ab @ ac, ac @ ac
    d20, d21 = ap @ ab, ap @ ac
    denom = d00 * d11 - d01 * d01
    v = (d11 * d20 - d01 * d21) / denom
    w = (d00 * d21 - d01 * d20) / denom
    inside = (v >= 0) & (w >= 0) & (v + w <= 1)
    q = a + v[:, None] * ab + w[:, None] * ac
    plane = np.einsum("ni,ni->n", p - q, p - q)
    edge = np.minimum.reduce([_numpy_segment_sqdist(p, a, b), _numpy_segment_sqdist(p, b, c),
                              _numpy_segment_sqdist(p, c, a)])
    return np.where(inside, plane, edge)


def _numpy_segment_sqdist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    u = b - a
    uu = u @ u
    s = np.clip((p - a) @ u / uu, 0.0, 1.0) if uu > 0 else np.zeros(len(p))
    d = p - a - s[:, None] * u
    return np.einsum("ni,ni->n", d, d)


def _numpy_solid_angle(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    if np.linalg.norm(np.cross(b - a, c - a)) == 0:
        return np.zeros(len(p))
    ra, rb, rc = a - p, b - p, c - p
    la, lb, lc = (np.linalg.norm(r, axis=1) for r in (ra, rb, rc))
    det = np.einsum("ni,ni->n", ra, np.cross(rb, rc))
    den = (la * lb * lc + np.einsum("ni,ni->n", ra, rb) * lc + np.einsum("ni,ni->n", ra, rc) * lb
           + np.einsum("ni,ni->n", rb, rc) * la)
    return 2 * np.arctan2(det, den)


MESH_TO_SDF_GL_PLATFORM = "egl"
"""PyOpenGL platform set for mesh-to-sdf's headless depth scans when none is set and there is no
X display (pyglet's default needs one); Mesa's libEGL renders without a display or GPU."""


def import_mesh_to_sdf():
    """The optional ``mesh_to_sdf`` module, with a headless OpenGL platform chosen (see
    ``MESH_TO_SDF_GL_PLATFORM``); SdfError when it is not installed."""
    import os

    if "PYOPENGL_PLATFORM" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["PYOPENGL_PLATFORM"] = MESH_TO_SDF_GL_PLATFORM  # must precede the first OpenGL import
    try:
        import mesh_to_sdf
    except ImportError as error:
        raise SdfError("SDF backend 'mesh-to-sdf' needs the optional package: "
                       f"pip install 'h36m-nvf[mesh-to-sdf]' ({error})") from error
    return mesh_to_sdf


def mesh_to_sdf_mesh(vertices: np.ndarray, faces: np.ndarray):
    """(trimesh.Trimesh centred on its bounding box, centre (3,)): mesh-to-sdf's scan cameras
    look at the origin from 2.2 x the largest vertex norm, so an off-centre mesh (camera frame)
    would be scanned from far away. Subtract ``centre`` from the query points too."""
    import trimesh

    centre = (vertices.min(0) + vertices.max(0)) / 2
    return trimesh.Trimesh(vertices - centre, faces, process=False), centre


@contextlib.contextmanager
def mesh_to_sdf_gl_errors():
    """Turn pyrender / PyOpenGL / EGL failures inside mesh-to-sdf into one SdfError."""
    import os

    try:
        yield
    except Exception as error:  # pyrender / PyOpenGL / EGL raise many unrelated types
        platform = os.environ.get("PYOPENGL_PLATFORM", "unset")
        raise SdfError(f"SDF backend 'mesh-to-sdf' could not render its depth scans with OpenGL "
                       f"(PYOPENGL_PLATFORM={platform}): {type(error).__name__}: {error}; "
                       "install Mesa's libEGL and set PYOPENGL_PLATFORM=egl, or use backend 'cpu'") from error


def _mesh_to_sdf_compute(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, mode: str) -> np.ndarray:
    """mesh-to-sdf's default ``mesh_to_sdf(mesh, points)``: 100 depth scans (400 px) rendered
    with pyrender give a surface point cloud; distance to the nearest cloud point, sign from
    the normals of the 11 nearest. Approximate (mm-scale errors, sign errors near the surface)."""
    if mode == "winding":
        raise SdfError("SDF backend 'mesh-to-sdf' has no winding number; use 'cpu'")
    mesh_to_sdf = import_mesh_to_sdf()
    if points.shape[0] == 0:
        return np.zeros(0)
    mesh, centre = mesh_to_sdf_mesh(vertices, faces)
    with mesh_to_sdf_gl_errors():
        sdf = mesh_to_sdf.mesh_to_sdf(mesh, np.ascontiguousarray(points - centre))
    sdf = np.asarray(sdf, np.float64)
    return np.abs(sdf) if mode == "unsigned" else sdf


BACKENDS: dict[str, SdfBackend] = {
    "cpu": SdfBackend("cpu", _cpu_compute, uses_torch=False),
    "cuda": SdfBackend("cuda", _torch_compute_on(_cuda_device), uses_torch=True),
    "torch": SdfBackend("torch", _torch_compute_on(lambda points: points.device), uses_torch=True),
    "brute": SdfBackend("brute", _brute_compute, uses_torch=False),
    "mesh-to-sdf": SdfBackend("mesh-to-sdf", _mesh_to_sdf_compute, uses_torch=False),
}
"""Backend registry; "auto" is resolved in ``_resolve``."""
