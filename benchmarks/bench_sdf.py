"""Signed distance speed and accuracy: ours (numba CPU, torch GPU) against installed peers.

mesh-to-sdf (optional extra) runs with its default settings on the same points, timed as
its two steps (surface point cloud from depth scans, then queries).

Mesh: the synthetic SMPL-X template (about 20k faces) when ``fitting.synthetic_model`` can
build it, else a union of interpenetrating capsules of similar size. Points like the sampler:
near the surface at 1 cm and 5 cm noise, plus uniform in the bounding box. Slow peers run on a
subset; errors are against the float64 "brute" backend on a small subset.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from sampling import sdf

UNIT = "points/s"


def _capsule_union(count: int):
    import trimesh

    segments = [([0, 0, 0], [0, 0.5, 0], 0.15), ([-0.2, 0.45, 0], [0.25, 0.2, 0.15], 0.05),
                ([0.2, 0.45, 0], [-0.25, 0.2, 0.12], 0.05), ([-0.08, 0, 0], [-0.1, -0.45, 0.05], 0.07),
                ([0.08, 0, 0], [0.02, -0.45, -0.02], 0.07), ([0, 0.5, 0], [0, 0.7, 0], 0.09)]
    vertices, faces, offset = [], [], 0
    for a, b, radius in segments:
        a, b = np.asarray(a, float), np.asarray(b, float)
        mesh = trimesh.creation.capsule(height=np.linalg.norm(b - a), radius=radius, count=[count, count])
        transform = trimesh.geometry.align_vectors([0, 0, 1], (b - a) / np.linalg.norm(b - a))
        transform[:3, 3] = (a + b) / 2
        mesh.apply_transform(transform)
        vertices.append(mesh.vertices)
        faces.append(mesh.faces + offset)
        offset += len(mesh.vertices)
    return np.concatenate(vertices), np.concatenate(faces), f"capsule union ({offset} vertices)"


def _mesh(quick: bool):
    if not quick:
        try:
            from fitting.synthetic_model import write_synthetic_model

            with tempfile.TemporaryDirectory() as tmp:
                model = np.load(write_synthetic_model(tmp, 0))
                return (np.asarray(model["v_template"], np.float64), np.asarray(model["f"], np.int64),
                        "synthetic SMPL-X template")
        except Exception:  # the peer model is optional here: fall back to a similar mesh
            pass
    return _capsule_union(12 if quick else 42)


def _points(vertices: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    near = vertices[rng.integers(0, len(vertices), 2 * n // 5)]
    lo, hi = vertices.min(0) - 0.1, vertices.max(0) + 0.1
    half = len(near) // 2
    return np.concatenate([near[:half] + 0.01 * rng.standard_normal((half, 3)),
                           near[half:] + 0.05 * rng.standard_normal((len(near) - half, 3)),
                           rng.uniform(lo, hi, (n - len(near), 3))])


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _errors(values: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Max absolute error and number of sign errors (where the reference |d| > 1e-4 m)."""
    checked = np.abs(reference) > 1e-4
    return float(np.abs(values - reference).max()), int(np.sum((values < 0)[checked] != (reference < 0)[checked]))


def _peers():
    """(name, fn(points, vertices, faces) -> signed distance negative inside, subset size)."""
    peers = []
    import trimesh

    def trimesh_signed(p, v, f):  # trimesh: positive inside
        return -trimesh.proximity.signed_distance(trimesh.Trimesh(v, f, process=False), p)

    peers.append(("trimesh.proximity.signed_distance", trimesh_signed, 2000))
    try:
        import igl

        def igl_with(sign_type):
            def run(p, v, f):
                s = igl.signed_distance(p, v, f, sign_type=sign_type)[0]
                if sign_type != igl.SIGNED_DISTANCE_TYPE_PSEUDONORMAL:  # scaled by winding: sign only
                    d = igl.signed_distance(p, v, f, sign_type=igl.SIGNED_DISTANCE_TYPE_UNSIGNED)[0]
                    return np.abs(d) * np.sign(s)
                return s
            return run

        peers.append(("libigl signed_distance (pseudonormal)", igl_with(igl.SIGNED_DISTANCE_TYPE_PSEUDONORMAL), None))
        peers.append(("libigl signed_distance (fast winding number sign + unsigned call)",
                      igl_with(igl.SIGNED_DISTANCE_TYPE_FAST_WINDING_NUMBER), None))
    except (ImportError, AttributeError):
        peers.append(("libigl", None, 0))
    return peers


def run(gpu: bool = False, quick: bool = False) -> list[dict]:
    vertices, faces, mesh_name = _mesh(quick)
    n_points = 2000 if quick else 100_000
    points = _points(vertices, n_points)
    ref_idx = np.arange(0, n_points, n_points // (50 if quick else 300))
    reference = sdf.signed_distance(points[ref_idx], vertices, faces, backend="brute")
    case = f"{mesh_name}, {len(faces)} faces, {n_points} points"

    _, first_call = _timed(sdf.signed_distance, points[:10], vertices, faces, backend="cpu")
    ours, seconds = _timed(sdf.signed_distance, points, vertices, faces, backend="cpu")
    ours_rate = n_points / seconds
    our_error, our_signs = _errors(ours[ref_idx], reference)
    notes_ours = (f"ours: {our_error:.1e} m max error, {our_signs} sign errors; "
                  f"first call incl. compile/cache load {first_call:.2f} s")
    rows = []
    for name, fn, subset in _peers():
        row = {"benchmark": "sdf", "case": case, "ours": ours_rate, "peer_name": name, "peer": None,
               "ratio": None, "unit": UNIT, "device": "cpu", "max_error_m": our_error}
        if fn is None:
            rows.append({**row, "notes": f"{name} not installed; {notes_ours}"})
            continue
        idx = np.arange(n_points) if subset is None else np.arange(0, n_points, max(1, n_points // subset))
        try:
            values, peer_seconds = _timed(fn, points[idx], vertices, faces)
        except ImportError as error:  # e.g. trimesh.proximity needs rtree
            rows.append({**row, "notes": f"{name} unavailable ({error}); {notes_ours}"})
            continue
        peer_error, peer_signs = _errors(np.asarray(values)[np.searchsorted(idx, ref_idx)], reference) \
            if subset is None else _errors(fn(points[ref_idx], vertices, faces), reference)
        peer_rate = len(idx) / peer_seconds
        rows.append({**row, "peer": peer_rate, "ratio": ours_rate / peer_rate,
                     "peer_max_error_m": peer_error, "peer_sign_errors": peer_signs,
                     "notes": f"peer on {len(idx)} points: {peer_error:.1e} m max error, "
                              f"{peer_signs} sign errors; {notes_ours}"})
    rows.extend(_mesh_to_sdf_rows(points, ours, vertices, faces, ref_idx, reference, case, ours_rate, notes_ours, quick))
    if gpu:
        rows.extend(_gpu_rows(points, vertices, faces, ref_idx, reference, case, ours_rate))
    return rows


SAMPLE_POINTS = 4096
"""Query points of one training sample: the sampler builds one posed mesh per sample."""


def _mesh_to_sdf_rows(points, exact, vertices, faces, ref_idx, reference, case, ours_rate, notes_ours,
                      quick) -> list[dict]:
    """mesh-to-sdf's ``mesh_to_sdf(mesh, points)`` with default settings (scan + normal sign),
    split into its two steps to report where the time goes: the surface point cloud (100 depth
    scans at 400 px, rendered by pyrender; independent of the points) and the KD-tree queries.
    Falls back to the GL-free 'sample' surface method when OpenGL cannot render here."""
    row = {"benchmark": "sdf", "case": case, "ours": ours_rate, "peer_name": "mesh-to-sdf (default: scan)",
           "peer": None, "ratio": None, "unit": UNIT, "device": "cpu"}
    try:
        m2s = sdf.import_mesh_to_sdf()
    except sdf.SdfError:
        return [{**row, "notes": f"mesh-to-sdf not installed (pip install 'h36m-nvf[mesh-to-sdf]'); {notes_ours}"}]
    mesh, centre = sdf.mesh_to_sdf_mesh(vertices, faces)
    # quick: a smoke test of the code path, not mesh-to-sdf's default settings
    scan = {"scan_count": 6, "scan_resolution": 64} if quick else {}
    why_not_scan = ""
    try:
        with sdf.mesh_to_sdf_gl_errors():
            cloud, cloud_s = _timed(m2s.get_surface_point_cloud, mesh, "scan", **scan)
        method = "scan: 100 depth scans at 400 px via pyrender/EGL (Mesa llvmpipe, CPU)" if not quick \
            else "QUICK smoke settings (6 scans at 64 px), not the default"
    except sdf.SdfError as error:
        why_not_scan = f"default scan mode could not run ({error}); "
        sample = {"sample_point_count": 100_000} if quick else {}
        cloud, cloud_s = _timed(m2s.get_surface_point_cloud, mesh, "sample", **sample)
        method = f"sample: {len(cloud.points):,} area-sampled surface points (GL-free)"
        row["peer_name"] = "mesh-to-sdf (sample surface method)"
    rows = []
    sizes = [(len(points), case)]
    if SAMPLE_POINTS < len(points):
        sizes.append((SAMPLE_POINTS, case.replace(f"{len(points)} points", f"{SAMPLE_POINTS} points (one sample)")))
    for n, label in sizes:
        values, query_s = _timed(cloud.get_sdf_in_batches, np.ascontiguousarray(points[:n] - centre))
        peer_rate = n / (cloud_s + query_s)
        ours = ours_rate
        if n != len(points):
            _, ours_s = _timed(sdf.signed_distance, points[:n], vertices, faces, backend="cpu")
            ours = n / ours_s
        values = np.asarray(values, np.float64)
        checked = ref_idx[ref_idx < n]
        error, signs = _errors(values[checked], reference[:len(checked)])
        # all n points against ours (equal to the float64 reference to ~1e-16 on its subset above)
        all_error, all_signs = _errors(values, exact[:n])
        rows.append({**row, "case": label, "ours": ours, "peer": peer_rate, "ratio": ours / peer_rate,
                     "peer_max_error_m": error, "peer_sign_errors": signs,
                     "peer_max_error_all_m": all_error, "peer_sign_errors_all": all_signs,
                     "notes": f"{why_not_scan}peer = one mesh_to_sdf(mesh, points) call on the same {n} points "
                              f"({method}): surface cloud {cloud_s:.1f} s + queries {query_s:.2f} s "
                              f"({n / query_s:,.0f} points/s once the cloud exists); peer error on "
                              f"{len(checked)} float64 reference points: {error:.1e} m max, {signs} sign errors; "
                              f"on all {n} points vs ours: {all_error:.1e} m max, {all_signs} sign errors "
                              f"({all_signs / n:.2%}); "
                              f"ours incl. BVH build per call; {notes_ours}"})
    return rows


def _gpu_rows(points, vertices, faces, ref_idx, reference, case, cpu_rate) -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return [{"benchmark": "sdf", "case": case, "ours": None, "peer_name": None, "peer": None,
                 "ratio": None, "unit": UNIT, "device": "cuda", "notes": "no CUDA device: skipped"}]
    rows = []
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    v = torch.from_numpy(vertices).to(device)
    f = torch.from_numpy(faces).to(device)
    for dtype in (torch.float32, torch.float64):
        p = torch.from_numpy(points).to(device, dtype)
        sdf.signed_distance(p[:1000], v, f, backend="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = sdf.signed_distance(p, v, f, backend="cuda")
        torch.cuda.synchronize()
        rate = len(points) / (time.perf_counter() - start)
        error, signs = _errors(out.cpu().double().numpy()[ref_idx], reference)
        rows.append({"benchmark": "sdf", "case": f"{case}, cuda {str(dtype).replace('torch.', '')}",
                     "ours": rate, "peer_name": "ours cpu (numba)", "peer": cpu_rate,
                     "ratio": rate / cpu_rate, "unit": UNIT, "device": name, "max_error_m": error,
                     "notes": f"chunked brute force; {signs} sign errors"})
    return rows


if __name__ == "__main__":
    import sys

    for result in run(gpu="--gpu" in sys.argv, quick="--quick" in sys.argv):
        print(result)
