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


# ---------------------------------------------------------------- one sample's call vs fast peers

SAMPLE_CALL_POINTS = 6144
"""The sampler's SDF call per 4,096-point sample: its candidates, 50 % extra (sampling.frustum)."""
VIEWS_PER_FRAME = 4
"""Human3.6M's cameras: the sample stage poses (and builds the tree of) each frame once for all."""
FRAMES_PER_SHARD = 16
"""Frames of a 64-sample shard (4 views each): the stage builds at the first, refits after."""
TIMING_REPEATS = 5
"""Each timing is the best of this many runs (the machine is shared; the minimum is the least
disturbed)."""
POSED_BODY_POSE = {  # SMPL-X body joint (1-based) -> axis-angle: arms folded across the chest
    # through each other and the torso, hips crossed: a self-intersecting body
    1: (-0.6, 0.0, -0.5), 2: (0.0, 0.0, 0.5), 16: (0.0, -1.2, -0.3), 17: (0.0, 1.2, 0.3),
    18: (0.0, -1.8, 0.0), 19: (0.0, 1.8, 0.0)}


def posed_synthetic_body(work: str):
    """(rest vertices (V, 3), posed vertices (V, 3), faces (F, 3)) of the synthetic SMPL-X body,
    metres, float64; the posed copy is self-intersecting (``POSED_BODY_POSE``)."""
    import torch

    from fitting.bodymodel import load_body_model, resolve_body_model

    model = load_body_model(resolve_body_model("synthetic", work), dtype=torch.float64)
    body_pose = torch.zeros(1, 63, dtype=torch.float64)
    for joint, angles in POSED_BODY_POSE.items():
        body_pose[0, 3 * (joint - 1):3 * joint] = torch.tensor(angles, dtype=torch.float64)
    with torch.no_grad():
        rest, posed = model().vertices[0].numpy(), model(body_pose=body_pose).vertices[0].numpy()
    return rest, posed, np.asarray(model.faces, np.int64)


CAMERA_DISTANCE_M = 4.5
"""Depth of the body's centre in the benchmark's camera (Human3.6M's cameras: about 4-6 m)."""


def sampler_points(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) query points as the sample stage draws them for one view (sampling.frustum's
    candidates: near the surface at 1 and 5 cm, in a 1 m ball around the root, in the 256 px
    crop's frustum), for a camera 4.5 m in front of the body; returned in the mesh's frame."""
    from pipeline.stages.sample import crop_around
    from sampling.frustum import SamplerConfig, candidate_points

    R = np.diag([1.0, -1.0, -1.0])  # y-up body, OpenCV camera (y down, z forward)
    centre = (vertices.min(0) + vertices.max(0)) / 2
    t = np.array([0.0, 0.0, CAMERA_DISTANCE_M]) - R @ centre
    verts_cam = vertices @ R.T + t
    K = np.array([[1150.0, 0.0, 500.0], [0.0, 1150.0, 500.0], [0.0, 0.0, 1.0]])
    K_crop = crop_around(verts_cam, K, 256)
    points_cam = candidate_points(verts_cam, faces, centre @ R.T + t, K_crop, 256, SamplerConfig(),
                                  np.random.default_rng(seed), n)
    return (points_cam.astype(np.float64) - t) @ R


def _best(fn, repeats: int):
    """(last result, best wall seconds) of ``repeats`` calls."""
    best, out = np.inf, None
    for _ in range(repeats):
        out, seconds = _timed(fn)
        best = min(best, seconds)
    return out, best


class _Peer:
    """One SDF library: ``build(v, f) -> handle``, ``query(handle, points) -> (N,)`` signed
    distance negative inside; ``missing`` names why it cannot run here (None: it can)."""

    def __init__(self, name, build=None, query=None, missing=None, note=""):
        self.name, self.build, self.query, self.missing, self.note = name, build, query, missing, note


def _fast_peers() -> list[_Peer]:
    peers = []
    try:
        import pysdf

        peers.append(_Peer("pysdf (robust)", lambda v, f: pysdf.SDF(v.astype(np.float32), f.astype(np.uint32),
                                                                   robust=True),
                           lambda h, p: -h(np.ascontiguousarray(p, np.float32)),  # pysdf: positive inside
                           note="float32; sign from ray votes"))
    except ImportError as error:
        peers.append(_Peer("pysdf (robust)", missing=f"pysdf not installed ({error}); "
                           "pip install 'h36m-nvf[bench]' (needs Eigen headers: libeigen3-dev)"))
    try:
        import open3d as o3d

        def o3d_build(v, f):
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
            scene.compute_distance(o3d.core.Tensor(v[:1].astype(np.float32)))  # commits the BVH
            return scene

        peers.append(_Peer("open3d RaycastingScene", o3d_build,
                           lambda h, p: h.compute_signed_distance(o3d.core.Tensor(p.astype(np.float32))).numpy(),
                           note="Embree, float32; sign from ray parity"))
    except (ImportError, OSError) as error:
        peers.append(_Peer("open3d RaycastingScene", missing=f"open3d not importable ({error}); "
                           "pip install 'h36m-nvf[bench]' (needs libusb-1.0)"))
    try:
        import fcpw

        def fcpw_build(v, f):
            scene = fcpw.scene_3D()
            scene.set_object_count(1)
            scene.set_object_vertices(np.asfortranarray(v, np.float32), 0)
            scene.set_object_triangles(np.asfortranarray(f, np.int32), 0)
            scene.build(fcpw.aggregate_type.bvh_surface_area, True)
            return scene

        def fcpw_query(scene, p):
            p = np.asfortranarray(p, np.float32)
            hits = fcpw.interaction_3D_list()
            scene.find_closest_points(p, np.full(len(p), np.inf, np.float32), hits)
            inside = np.zeros(len(p), np.int32)
            scene.contains(p, inside)
            return np.array([h.d for h in hits]) * np.where(inside > 0, -1.0, 1.0)

        peers.append(_Peer("fcpw", fcpw_build, fcpw_query, note="SAH BVH, vectorised, float32; sign from "
                                                                  "contains() (needs a watertight mesh)"))
    except ImportError as error:
        peers.append(_Peer("fcpw", missing=f"fcpw not installed ({error}); pip install 'h36m-nvf[bench]'"))
    try:
        import warp as wp

        wp.config.quiet = True
        wp.init()

        @wp.kernel
        def warp_sdf(mesh: wp.uint64, points: wp.array(dtype=wp.vec3), out: wp.array(dtype=float)):
            i = wp.tid()
            q = wp.mesh_query_point_sign_winding_number(mesh, points[i], 1.0e6, 2.0, 0.5)
            if q.result:
                out[i] = q.sign * wp.length(points[i] - wp.mesh_eval_position(mesh, q.face, q.u, q.v))

        def warp_build(v, f):
            return wp.Mesh(points=wp.array(v.astype(np.float32), dtype=wp.vec3, device="cpu"),
                           indices=wp.array(f.astype(np.int32).reshape(-1), dtype=int, device="cpu"))

        def warp_query(mesh, p):
            out = wp.zeros(len(p), dtype=float, device="cpu")
            wp.launch(warp_sdf, dim=len(p), inputs=[mesh.id, wp.array(p.astype(np.float32), dtype=wp.vec3,
                                                                        device="cpu"), out], device="cpu")
            return out.numpy()

        peers.append(_Peer("warp (CPU, winding number)", warp_build, warp_query,
                           note="float32; sign from fast winding number"))
    except ImportError as error:
        peers.append(_Peer("warp (CPU, winding number)", missing=f"warp-lang not installed ({error}); "
                           "pip install 'h36m-nvf[bench]'"))
    return peers


def _sample_call_rows(quick: bool) -> list[dict]:
    """One sample's SDF call on the posed, self-intersecting body: ours (build, refit, query)
    and each fast peer (build, query), each with its error against float64 brute force.

    Cost per sample = tree per frame / VIEWS_PER_FRAME + query: the stage poses a frame once for
    its 4 views and queries the one tree (world frame) for each. Ours builds at a shard's first
    frame and refits for the other FRAMES_PER_SHARD - 1; peers build per frame (pysdf, open3d
    and warp have no refit in their Python APIs; fcpw's refit is not used here)."""
    with tempfile.TemporaryDirectory() as tmp:
        rest, posed, faces = posed_synthetic_body(tmp)
    sizes = (SAMPLE_CALL_POINTS, 20_000) if quick else (SAMPLE_CALL_POINTS, 100_000)
    repeats = 2 if quick else TIMING_REPEATS
    rows = []
    for n in sizes:
        points = sampler_points(posed, faces, n, seed=1)
        ref_idx = np.arange(0, n, max(1, n // (200 if quick else 2000)))
        reference = sdf.signed_distance(points[ref_idx], posed, faces, backend="brute")
        case = (f"posed synthetic SMPL-X (self-intersecting), {len(faces)} faces, {n} sampler points"
                + (" (one sample's call: 4,096 + 50 % candidates)" if n == SAMPLE_CALL_POINTS else ""))
        ours_tree = sdf.CpuSdf.build(posed, faces)
        ours_tree.signed_distance(points[:10])  # compile / cache load
        _, build_s = _best(lambda: sdf.CpuSdf.build(posed, faces), repeats)
        template = sdf.CpuSdf.build(rest, faces)
        refitted, refit_s = _best(lambda t=template: t.refit(posed), repeats)
        ours, query_s = _best(lambda t=refitted, p=points: t.signed_distance(p), repeats)
        rebuilt = ours_tree.signed_distance(points)
        error, signs = _errors(ours[ref_idx], reference)
        tree_s = (build_s + (FRAMES_PER_SHARD - 1) * refit_s) / FRAMES_PER_SHARD
        ours_per = tree_s / VIEWS_PER_FRAME + query_s
        base = {"benchmark": "sdf", "case": case, "ours": n / ours_per, "unit": UNIT, "device": "cpu",
                "max_error_m": error, "sign_errors": signs, "ours_build_ms": 1e3 * build_s,
                "ours_refit_ms": 1e3 * refit_s, "ours_query_ms": 1e3 * query_s,
                "refit_equals_rebuild": bool(np.array_equal(ours, rebuilt))}
        notes_ours = (f"ours: build {1e3 * build_s:.1f} ms, refit {1e3 * refit_s:.2f} ms, query "
                      f"{1e3 * query_s:.1f} ms, {error:.1e} m max error, {signs} sign errors; points/s = "
                      f"N / (tree per frame / {VIEWS_PER_FRAME} views + query), tree per frame = "
                      f"(build + {FRAMES_PER_SHARD - 1} refits) / {FRAMES_PER_SHARD}")
        for peer in _fast_peers():
            row = {**base, "peer_name": peer.name, "peer": None, "ratio": None}
            if peer.missing:
                rows.append({**row, "notes": f"skipped: {peer.missing}; {notes_ours}"})
                continue
            try:
                handle, peer_build_s = _best(lambda p=peer: p.build(posed, faces), repeats)
                values, peer_query_s = _best(lambda p=peer, h=handle, x=points: p.query(h, x), repeats)
            except Exception as error_:  # a peer failing here must not hide the others
                rows.append({**row, "notes": f"skipped: {peer.name} failed ({type(error_).__name__}: "
                                             f"{error_}); {notes_ours}"})
                continue
            peer_error, peer_signs = _errors(np.asarray(values, np.float64)[ref_idx], reference)
            peer_per = peer_build_s / VIEWS_PER_FRAME + peer_query_s
            rows.append({**row, "peer": n / peer_per, "ratio": peer_per and ours_per and peer_per / ours_per,
                         "peer_build_ms": 1e3 * peer_build_s, "peer_query_ms": 1e3 * peer_query_s,
                         "peer_max_error_m": peer_error, "peer_sign_errors": peer_signs,
                         "notes": f"peer ({peer.note}): build {1e3 * peer_build_s:.1f} ms, query "
                                  f"{1e3 * peer_query_s:.1f} ms, {peer_error:.1e} m max error, {peer_signs} "
                                  f"sign errors, per sample = build / {VIEWS_PER_FRAME} + query; "
                                  f"{notes_ours}; errors on {len(ref_idx)} float64 brute-force points; "
                                  f"best of {repeats} runs each, default thread counts"})
    return rows


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
    rows.extend(_sample_call_rows(quick))
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
