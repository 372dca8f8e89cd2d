"""The fit stage through the CLI against the in-process fitter on the same frames.

Inputs: a synthetic release in the Human3.6M layout (S9, ``SEQUENCES`` of ``FRAMES`` mocap
frames each), extracted by the extract stage. Peer: the same fitter (pipeline.stages.fit's
``make_fitter``: shape from all sequences, then every sequence's poses) called in this
process (the fitter's own torch setting: one thread). Ours: ``h36m-nvf fit --device cpu`` in a fresh
process, wall time from the command's start to its exit (imports, cluster start, workers'
model load, the shape unit, then one pose unit per sequence on the workers). Both fit every
frame (stride 1); the row also checks that both wrote the same poses (the pose fits take the
shape fit's mocap-skeleton offsets, as the stage's pose units do), and keeps both sides' CPU
time (user + system: this process's, and the command's with its workers) and the load average,
since the wall times of a shared machine are noisy.

The row keeps the per-unit costs (shape per subject, poses per frame, in-process) that the
report's whole-dataset projection (benchmarks.projection) uses.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEQUENCES = ((14, 1), (4, 1), (2, 1), (3, 1))
"""Walking 1, Eating 1, Directions 1, Discussion 1 of S9."""
FRAMES = 400
"""Mocap frames per sequence: 4 x 400 = 1,600 frames, as in issue 18's measurement."""


def _prepare(tmp: Path, sequences, frames: int) -> Path:
    from pipeline.orchestration.api import run_stages
    from pipeline.synthetic.release import SyntheticReleaseConfig, write_synthetic_release

    work = tmp / "work"
    release = write_synthetic_release(tmp / "release", SyntheticReleaseConfig(
        subjects=("S9",), sequences=sequences, frames=frames, scale=0.1, model_cache=work))
    # images are not fitted: a large stride keeps the extract short
    (report,) = run_stages(["extract"], work, h36m=release, stride=64, workers=2, progress=False)
    if report.failed:
        raise RuntimeError(f"extract failed in the benchmark: {report.failed[0].reason}")
    return work


def _in_process(work: Path, out: Path, shape_frames: int) -> dict:
    """The fitter on every extracted sequence of S9, in this process; writes ``out/<seq>.npz``."""
    from fitting.bodymodel import resolve_body_model
    from pipeline.artifacts import read_joints_world
    from pipeline.stages.fit import make_fitter
    from pipeline.store import WorkDir

    w = WorkDir(work)
    sequences = sorted(d.name for d in (work / "extract" / "S9").iterdir() if d.is_dir())
    cpu0 = _cpu_seconds(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    fitter = make_fitter(resolve_body_model("synthetic", work), "cpu", shape_frames=shape_frames)
    joints = {s: read_joints_world(w.joints_world("S9", s)) for s in sequences}
    t1 = time.perf_counter()
    betas, info = fitter.fit_shape([joints[s] for s in sequences])
    t2 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    mpjpe = []
    for s in sequences:
        fit = fitter.fit_sequence(joints[s], betas, info["skeleton_offsets_m"])
        np.savez(out / f"{s}.npz", body_pose=fit.body_pose, betas=betas)
        mpjpe.append(fit.mpjpe_mm)
    t3 = time.perf_counter()
    frames = sum(len(j) for j in joints.values())
    return {"threads": fitter.config.cpu_threads, "cpu_s": _cpu_seconds(resource.RUSAGE_SELF) - cpu0, "seconds": t3 - t0, "load_s": t1 - t0, "shape_s": t2 - t1, "poses_s": t3 - t2,
            "frames": frames, "sequences": sequences, "mpjpe_mm": float(np.concatenate(mpjpe).mean())}


def _cpu_seconds(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _through_cli(work: Path, workers: int, shape_frames: int) -> tuple[float, float]:
    """(wall, CPU seconds) of the command, its workers included (reaped children)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "cli", "fit", "--out", str(work), "--device", "cpu", "--no-progress",
           "--workers", str(workers), "--shape-frames", str(shape_frames), "--stride", "1"]
    cpu0 = _cpu_seconds(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"h36m-nvf fit failed in the benchmark: {done.stderr.strip()[-500:]}")
    return seconds, cpu


def run(gpu: bool = False, quick: bool = False) -> list[dict]:
    from pipeline.orchestration.runner import local_core_count

    sequences, frames, shape_frames = (SEQUENCES[:2], 12, 8) if quick else (SEQUENCES, FRAMES, 96)
    cores = local_core_count()
    tmp = Path(tempfile.mkdtemp(prefix="bench-fit-stage-"))
    try:
        work = _prepare(tmp, sequences, frames)
        load_before = os.getloadavg()[0]
        peer = _in_process(work, tmp / "inprocess", shape_frames)
        cli_s, cli_cpu = _through_cli(work, cores, shape_frames)
        load_after = os.getloadavg()[0]
        diff = 0.0
        for s in peer["sequences"]:
            with np.load(work / "fit" / "S9" / f"{s}.npz") as a, np.load(tmp / "inprocess" / f"{s}.npz") as b:
                diff = max(diff, float(np.abs(a["body_pose"] - b["body_pose"]).max()))
        with np.load(work / "fit" / "S9" / f"{peer['sequences'][0]}.npz") as z:
            cli_mpjpe = float(z["mpjpe_mm"].mean())
        n = peer["frames"]
        fit_bytes = sum(f.stat().st_size for f in (work / "fit").rglob("*.npz"))
        per_frame_ms = 1e3 * peer["poses_s"] / n
        return [{
            "benchmark": "fit-stage",
            "case": f"S9, {len(sequences)} sequences x {frames} frames = {n} frames, shape on {shape_frames} "
                    f"frames, cpu",
            "ours": n / cli_s, "peer_name": f"in-process fitter (same frames, {peer['threads']} torch thread)",
            "peer": n / peer["seconds"], "ratio": peer["seconds"] / cli_s, "unit": "frames/s",
            "device": f"cpu, {cores} cores ({cores} worker processes through the CLI)",
            "cli_seconds": cli_s, "in_process_seconds": peer["seconds"],
            "in_process_shape_s": peer["shape_s"], "in_process_pose_ms_per_frame": per_frame_ms,
            "in_process_load_s": peer["load_s"], "in_process_torch_threads": peer["threads"],
            "cli_cpu_seconds": cli_cpu, "in_process_cpu_seconds": peer["cpu_s"],
            "load_average_1min": [load_before, load_after],
            "fit_bytes_per_frame": fit_bytes / n, "max_abs_pose_difference_rad": diff,
            "mpjpe_mm": peer["mpjpe_mm"], "cli_first_sequence_mpjpe_mm": cli_mpjpe,
            "notes": f"ours = `h36m-nvf fit` wall time {cli_s:.1f} s, CPU {cli_cpu:.1f} s (process start to exit: imports, "
                     f"cluster, shape unit, {len(sequences)} pose units); peer in-process "
                     f"{peer['seconds']:.1f} s, CPU {peer['cpu_s']:.1f} s (model load {peer['load_s']:.1f}, shape {peer['shape_s']:.1f}, "
                     f"poses {peer['poses_s']:.1f} = {per_frame_ms:.1f} ms/frame); same poses within "
                     f"{diff:.1e} rad; mean MPJPE {peer['mpjpe_mm']:.2f} mm; load average "
                     f"{load_before:.1f} before, {load_after:.1f} after",
        }]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv):
        print(result)
