"""Fitting SMPL-X poses to mocap joints: our batched LM fitter vs the stock loop.

Stock loop (peer): smplx's own forward on the full mesh + Adam on the same energy (Geman–McClure
joint loss through the same correspondence, the range-normalised pose prior, the anatomical limit
hinges of fitting.joint_limits), the same frames,
the same rigid start, the same device and thread count, the same wide-then-robust loss schedule, run until it reaches
our accuracy (its MPJPE ≤ max(our MPJPE, 2 mm)) or an iteration cap — "frames/s to
convergence"; when it hits the cap the row says so and its accuracy is the one reached. Both fit poses
with the subject's true betas (the shape stage is timed separately, without a peer). Ground
truth: plausible motions (pipeline.synthetic.motion) of the synthetic model, mocap through the named
correspondence; accuracy columns: MPJPE to the mocap (h36m17) and PVE to the true mesh.

``quick=True`` uses a tiny random SMPL-X-format model (seconds; its numbers mean nothing).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ACTIONS = ("Walking", "Eating", "Greeting", "SittingDown")
CPU_FRAMES = 32
"""Frames fitted on CPU (the stock loop costs ~0.2 s per iteration per 32 frames there)."""
GPU_FRAMES = 4096
"""Frames fitted on a GPU (one batch for the stock loop)."""
MAX_STOCK_ITERS = 1000
"""Cap on the stock loop's Adam iterations."""


def _random_model(path: Path) -> Path:
    """A small-valued random SMPL-X-format file that smplx loads (quick smoke runs only)."""
    from fitting.joint_sets import SMPLX55

    rng = np.random.default_rng(0)
    v, j = 10475, 55
    parents = np.array(SMPLX55.parents)
    offsets = rng.normal(0, 0.08, (j, 3))
    joints = np.zeros((j, 3))
    for k in range(1, j):
        joints[k] = joints[parents[k]] + offsets[k]
    part = rng.integers(0, j, v)
    verts = joints[part] + rng.normal(0, 0.02, (v, 3))
    reg = np.zeros((j, v))
    for k in range(j):
        idx = np.flatnonzero(part == k)
        reg[k, idx] = 1.0 / len(idx)
    weights = np.zeros((v, j))
    weights[np.arange(v), part] = 1.0
    kin = np.stack([parents, np.arange(j)]).astype(np.int64)
    kin[0, 0] = 0
    np.savez(path / "SMPLX_NEUTRAL.npz", v_template=verts, f=rng.integers(0, v, (20908, 3)),
             shapedirs=rng.normal(0, 0.002, (v, 3, 20)), posedirs=np.zeros((v, 3, 486)), J_regressor=reg,
             weights=weights, kintree_table=kin, hands_componentsl=np.eye(45), hands_componentsr=np.eye(45),
             hands_meanl=np.zeros(45), hands_meanr=np.zeros(45), lmk_faces_idx=np.zeros(51, np.int64),
             lmk_bary_coords=np.full((51, 3), 1 / 3), dynamic_lmk_faces_idx=np.zeros((79, 17), np.int64),
             dynamic_lmk_bary_coords=np.full((79, 17, 3), 1 / 3))
    return path / "SMPLX_NEUTRAL.npz"


def _model(path: Path, device, dtype=torch.float32, batch_size=1):
    from fitting.bodymodel import load_body_model

    return load_body_model(path, device=device, dtype=dtype, batch_size=batch_size, num_betas=10,
                           num_expression_coeffs=10, use_face_contour=False, flat_hand_mean=False)


def _forward(model, betas, pose, transl):
    """smplx forward of (T, 55, 3) poses: (joints55, vertices)."""
    t = pose.shape[0]
    z = lambda n: torch.zeros(t, n, dtype=pose.dtype, device=pose.device)  # noqa: E731
    out = model(betas=betas.expand(t, -1), global_orient=pose[:, 0], body_pose=pose[:, 1:22].reshape(t, 63),
                jaw_pose=z(3), leye_pose=z(3), reye_pose=z(3), left_hand_pose=z(45), right_hand_pose=z(45),
                transl=transl, expression=z(10))
    return out.joints[:, :55], out.vertices


def _truth(path: Path, frames: int):
    """(mocap (T, 32, 3), true vertices (T, V, 3), betas (10,)) over ACTIONS, float64 numpy."""
    from common.rng import rng_for
    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx
    from pipeline.synthetic.motion import BodyDims, make_motion

    model = _model(path, "cpu", torch.float64)
    betas = np.clip(rng_for(0, "bench-betas").normal(0.0, 0.8, 10), -2, 2)
    b = torch.as_tensor(betas)[None]
    rest_j, rest_v = _forward(model, b, torch.zeros(1, 55, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    dims = BodyDims.from_rest(rest_j[0].detach().numpy(), rest_v[0].detach().numpy())
    mocap, verts = [], []
    per = max(2, frames // len(ACTIONS))
    for i, action in enumerate(ACTIONS):
        motion = make_motion(action, per, 50.0, dims, rng_for(0, "bench-motion", i))
        pose = torch.zeros(per, 55, 3, dtype=torch.float64)
        pose[:, 0] = torch.as_tensor(motion.global_orient)
        pose[:, 1:22] = torch.as_tensor(motion.body_pose).reshape(per, 21, 3)
        with torch.no_grad():
            j, v = _forward(model, b, pose, torch.as_tensor(motion.pelvis) - rest_j[0, 0])
        mocap.append(h36m32_from_smplx(j, v[:, correspondence_vertex_ids()]).numpy())
        verts.append(v.numpy())
    return mocap, verts, betas


def _errors(model, betas, params, mocap, verts, device):
    """(MPJPE mm, PVE mm) of params (T, 69) with smplx's forward (independent of both fitters)."""
    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx
    from fitting.joint_sets import H36M17_FROM_H36M32

    p = torch.as_tensor(params, dtype=torch.float32, device=device)
    pose = torch.zeros(p.shape[0], 55, 3, dtype=p.dtype, device=device)
    pose[:, :22] = p[:, :66].reshape(-1, 22, 3)
    with torch.no_grad():
        j, v = _forward(model, torch.as_tensor(betas, dtype=p.dtype, device=device)[None], pose, p[:, 66:69])
        pred = h36m32_from_smplx(j, v[:, correspondence_vertex_ids()]).cpu().numpy()
    mpjpe = np.linalg.norm(pred - mocap, axis=-1)[:, H36M17_FROM_H36M32].mean() * 1000
    pve = np.linalg.norm(v.cpu().numpy() - verts, axis=-1).mean() * 1000
    return float(mpjpe), float(pve)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _ours(fitter, mocap_seqs, betas, device):
    _sync(device)
    t0 = time.perf_counter()
    fits = [fitter.fit_sequence(m, betas) for m in mocap_seqs]
    _sync(device)
    seconds = time.perf_counter() - t0
    params = np.concatenate([np.concatenate([f.global_orient, f.body_pose, f.transl], 1) for f in fits])
    return params, seconds


def _stock(fitter, model, mocap, betas, device, target_mpjpe, max_iters, lr=0.02):
    """smplx full-mesh forward + Adam on the same energy, from the same rigid start."""
    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx
    from fitting.joint_limits import limit_residual
    from fitting.joint_sets import H36M17_FROM_H36M32
    from fitting.lbs_subset import rest_joints, rest_vertices
    from fitting.losses import gmof_energy
    from fitting.smplify import DATA_UNIT_M

    c = fitter.config
    target = torch.as_tensor(mocap, dtype=torch.float32, device=device)
    b = torch.as_tensor(betas, dtype=torch.float32, device=device)
    with torch.no_grad():
        start = fitter.rigid_start(target, rest_joints(fitter.skinner, b), rest_vertices(fitter.skinner, b))
        axes = fitter.bone_axes
    params = start.clone().requires_grad_()
    opt = torch.optim.Adam([params], lr=lr)
    ids = torch.as_tensor(correspondence_vertex_ids(), device=device)
    eval_rows = torch.as_tensor(H36M17_FROM_H36M32, device=device)
    _sync(device)
    t0 = time.perf_counter()
    it, mpjpe = 0, float("inf")
    while it < max_iters:
        # the same two phases as ours: a wide (nearly quadratic) loss first, then the robust one
        sigma = 1.0 if it < max_iters // 4 else c.data_sigma_m
        pose = torch.cat([params[:, :66].reshape(-1, 22, 3),
                          torch.zeros(params.shape[0], 33, 3, device=device)], 1)
        joints, verts = _forward(model, b[None], pose, params[:, 66:69])
        pred = h36m32_from_smplx(joints, verts[:, ids])
        err = pred - target
        body = params[:, 3:66]
        energy = (gmof_energy(err, sigma).sum(-1) / DATA_UNIT_M**2 + ((body @ fitter.prior_map.T) ** 2).sum(-1)
                  + c.angle_limit_weight * (limit_residual(body, axes) ** 2).sum(-1)).sum()
        opt.zero_grad()
        energy.backward()
        opt.step()
        it += 1
        if it % 25 == 0:
            mpjpe = float((err.detach().norm(dim=-1)[:, eval_rows].mean()) * 1000)
            if mpjpe <= target_mpjpe:
                break
    _sync(device)
    return params.detach().cpu().numpy(), time.perf_counter() - t0, it, mpjpe


def _rows(path: Path, device_name: str, frames: int, max_iters: int, quick: bool) -> list[dict]:
    from fitting.smplify import FitConfig, Fitter

    device = torch.device(device_name)
    mocap_seqs, vert_seqs, betas = _truth(path, frames)
    mocap, verts = np.concatenate(mocap_seqs), np.concatenate(vert_seqs)
    n = len(mocap)
    model = _model(path, device, torch.float32, n)
    fitter = Fitter(_model(path, "cpu"), FitConfig(device=device_name))
    label = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads → 1)"

    old_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # the same thread count for both (ours uses 1 by default)
    try:
        t0 = time.perf_counter()
        shape_betas, _ = fitter.fit_shape(mocap_seqs)
        shape_seconds = time.perf_counter() - t0
        zero = torch.zeros(n, 55, 3, device=device)  # smplx wants its batch size
        with torch.no_grad():
            rest_pve = float((_forward(model, torch.as_tensor(shape_betas, dtype=torch.float32, device=device)[None],
                                       zero, zero[:, 0])[1]
                              - _forward(model, torch.as_tensor(betas, dtype=torch.float32, device=device)[None],
                                         zero, zero[:, 0])[1]).norm(dim=-1).mean()) * 1000
        ours_params, ours_s = _ours(fitter, mocap_seqs, betas.astype(np.float32), device)
        ours_mpjpe, ours_pve = _errors(model, betas, ours_params, mocap, verts, device)
        stock_params, stock_s, iters, _ = _stock(fitter, model, mocap, betas, device, max(ours_mpjpe, 2.0), max_iters)
        stock_mpjpe, stock_pve = _errors(model, betas, stock_params, mocap, verts, device)
    finally:
        torch.set_num_threads(old_threads)
    ours_fps, stock_fps = n / ours_s, n / stock_s
    reached = "reached" if stock_mpjpe <= max(ours_mpjpe, 2.0) + 1e-6 else f"did not reach it in {iters} iterations"
    return [
        {"benchmark": "fit", "case": f"pose fit to convergence, {n} frames ({len(ACTIONS)} actions)",
         "ours": ours_fps, "peer_name": "smplx full mesh + Adam (same energy)", "peer": stock_fps,
         "ratio": ours_fps / stock_fps, "unit": "frames/s", "device": label,
         "ours_mpjpe_mm": ours_mpjpe, "ours_pve_mm": ours_pve, "peer_mpjpe_mm": stock_mpjpe,
         "peer_pve_mm": stock_pve, "peer_iterations": iters,
         "notes": (f"ours MPJPE {ours_mpjpe:.2f} mm PVE {ours_pve:.1f} mm; stock run to MPJPE ≤ "
                   f"{max(ours_mpjpe, 2.0):.2f} mm: {reached} ({iters} it), MPJPE {stock_mpjpe:.2f} mm "
                   f"PVE {stock_pve:.1f} mm" + ("; quick: random model" if quick else ""))},
        {"benchmark": "fit", "case": f"shape per subject ({fitter.config.shape_frames} frames, joint LM)",
         "ours": shape_seconds, "peer_name": None, "peer": None, "ratio": None, "unit": "s", "device": label,
         "notes": f"betas max |error| {np.abs(shape_betas - betas).max():.3f}, rest-pose PVE {rest_pve:.1f} mm"},
    ]


def run(gpu: bool = False, quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        if quick:
            path = _random_model(Path(tmp))
        else:
            from fitting.synthetic_model import write_synthetic_model

            path = write_synthetic_model(tmp, 0)
        rows = _rows(path, "cpu", 8 if quick else CPU_FRAMES, 50 if quick else MAX_STOCK_ITERS, quick)
        if gpu and torch.cuda.is_available():
            rows += _rows(path, "cuda", 64 if quick else GPU_FRAMES, 50 if quick else MAX_STOCK_ITERS, quick)
    return rows
