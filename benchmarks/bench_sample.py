"""End-to-end samples/s of the ``sample`` stage (4096 points, 17 joints, 256 px crops).

Inputs: a synthetic release in the Human3.6M layout (pipeline.synthetic.release: the synthetic SMPL-X
body rendered into 4 camera videos), extracted by the extract stage, and a perfect fit made
from the release's ground-truth parameters (the fitter is benchmarked in bench_fit). Two rows:

* the stage through ``run_stage`` on a LocalCluster (one worker process per core; cold
  workers: model load and numba cache load included), as ``h36m-nvf sample`` runs it;
* the stage's unit function in this process (one core), warm, with the time split into
  image read, crop undistortion, posed body, query points, SDF, votes and shard write.

No peer does the same job, so there is no ratio. Target (issue #5): >= 500 samples/s on a GPU.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import tempfile
import time
from pathlib import Path

POINTS, JOINTS, CROP = 4096, "h36m17", 256
SPLIT_PART = "protocol1-test"
"""S9 is a protocol-1 test subject: its samples land in this part."""

TIMED = (  # (module, attribute, breakdown label); patched in this process only, restored after
    ("cv2", "imread", "image read (JPEG decode)"),
    ("pipeline.release.cameras", "undistort_image", "crop undistortion"),
    ("pipeline.stages.sample", "posed_body", "posed body (smplx float64)"),
    ("sampling.frustum", "sample_query_points", "query points incl. SDF"),
    ("sampling.sdf", "signed_distance", "SDF query"),
    ("sampling.sdf", "CpuSdf.signed_distance", "SDF query"),
    ("pipeline.stages.sample", "world_sdf_tree", "SDF tree (build or refit, once per frame)"),
    ("sampling.votes", "nvf_votes", "votes"),
)


def _prepare(tmp: Path, frames: int, scale: float) -> Path:
    from pipeline.orchestration.api import run_stages
    from pipeline.synthetic.release import (
        SyntheticReleaseConfig,
        write_groundtruth_fits,
        write_synthetic_release,
    )

    work = tmp / "work"
    release = write_synthetic_release(tmp / "release", SyntheticReleaseConfig(
        subjects=("S9",), sequences=((14, 1),), frames=frames, scale=scale, model_cache=work))
    reports = run_stages(["extract"], work, h36m=release, stride=1, workers=2, progress=False)
    if reports[0].failed:
        raise RuntimeError(f"extract failed in the benchmark: {reports[0].failed[0].reason}")
    write_groundtruth_fits(release, work)
    return work


def _config(samples_per_shard: int):
    from pipeline.selection import Selection
    from pipeline.stages import get_stage

    stage = get_stage("sample")
    return stage, stage.make_config(h36m=None, selection=Selection(), options={
        "points": POINTS, "joints": JOINTS, "crop": CROP, "test_stride": 1, "sdf_backend": "cpu",
        "samples_per_shard": samples_per_shard})


@contextlib.contextmanager
def _timers(seconds: dict[str, float]):
    """Wrap the TIMED functions so each call adds its wall time to ``seconds[label]``."""
    saved = []
    for module_name, path, label in TIMED:
        module = importlib.import_module(module_name)
        *owners, attr = path.split(".")
        for owner in owners:  # a class attribute: "CpuSdf.signed_distance"
            module = getattr(module, owner)
        original = getattr(module, attr)

        def timed(*args, _f=original, _label=label, **kwargs):
            t0 = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                seconds[_label] = seconds.get(_label, 0.0) + time.perf_counter() - t0

        saved.append((module, attr, original))
        setattr(module, attr, timed)
    try:
        yield
    finally:
        for module, attr, original in saved:
            setattr(module, attr, original)


@contextlib.contextmanager
def _one_thread():
    """torch and numba pools of one thread here, as in a stage worker (restored after)."""
    import numba
    import torch

    saved = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        numba.set_num_threads(saved[1])


def _in_process_row(work: Path, samples: int) -> dict:
    """Warm, single-process, single-thread run of the unit function (one stage worker's work)
    with a per-step time breakdown."""
    with _one_thread():
        return _in_process_row_here(work, samples)


def _in_process_row_here(work: Path, samples: int) -> dict:
    from pipeline.stages.sample import make_sample, plan, shard_config
    from pipeline.store import WorkDir
    from sampling.shards import write_shard

    stage, config = _config(samples)
    units = plan(config, WorkDir(work))
    unit = units[0]
    specs = unit.payload["specs"]
    out = work / "bench-inprocess.h5"
    make_sample(specs[0], WorkDir(work), unit.payload["model"], config, {})  # warm: model, numba, caches
    seconds: dict[str, float] = {}
    with _timers(seconds):
        t0 = time.perf_counter()
        cache: dict = {}
        batch = [make_sample(s, WorkDir(work), unit.payload["model"], config, cache) for s in specs]
        t1 = time.perf_counter()
        write_shard(out, batch, shard_config(config))
        t2 = time.perf_counter()
    total = t2 - t0
    seconds["query points (excl. SDF)"] = seconds.pop("query points incl. SDF") - seconds["SDF query"]
    seconds["shard write (JPEG encode, HDF5, sha256)"] = t2 - t1
    seconds["other (fit cache, crop box, params)"] = total - sum(seconds.values())
    per_sample_ms = {k: 1000 * v / len(specs) for k, v in seconds.items()}
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in per_sample_ms.items())
    return {"benchmark": "sample", "case": f"unit function in-process, {len(specs)} samples, {POINTS} points, "
                                           f"17 joints, crop {CROP}",
            "ours": len(specs) / total, "peer_name": None, "peer": None, "ratio": None, "unit": "samples/s",
            "device": "cpu (1 process, 1 thread: one stage worker)", "ms_per_sample": per_sample_ms,
            "notes": f"warm; ms/sample: {breakdown}; SDF backend cpu (numba)"}


def _stage_row(work: Path, samples_per_shard: int, quick: bool) -> dict:
    from distributed import Client

    from pipeline.orchestration.runner import close_client, get_client, local_core_count, run_stage
    from pipeline.store import WorkDir

    stage, config = _config(samples_per_shard)
    cores = local_core_count()
    client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") \
        if quick else get_client(workers=cores)
    try:
        t0 = time.perf_counter()
        report = run_stage(stage, config, WorkDir(work), client, progress=False)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()  # again on the same (now warm) workers
        warm = run_stage(stage, config, WorkDir(work), client, progress=False, force=True)
        warm_seconds = time.perf_counter() - t0
    finally:
        close_client(client)
    for r in (report, warm):
        if r.failed:
            raise RuntimeError(f"sample failed in the benchmark: {r.failed[0].reason}")
    samples = sum(o.info.get("samples", 0) for o in report.done)
    shard_bytes = sum(o.info.get("bytes", 0) for o in report.done)
    shards = sum(len(o.info.get("shards", {})) for o in report.done)
    images = list((work / "images").rglob("*.jpg"))
    image_bytes = sum(p.stat().st_size for p in images) / max(1, len(images))
    return {"benchmark": "sample", "case": f"stage end-to-end, {samples} samples, {POINTS} points, 17 joints, "
                                           f"crop {CROP}, {len(report.done)} units, {shards} shards",
            "ours": samples / seconds, "peer_name": None, "peer": None, "ratio": None, "unit": "samples/s",
            "device": f"cpu, {cores} cores ({'1 process, 2 threads' if quick else f'{cores} worker processes'})",
            "warm_samples_per_s": samples / warm_seconds, "bytes_per_sample": shard_bytes / max(1, samples),
            "extracted_jpeg_bytes": image_bytes,
            "notes": f"run_stage: plan + units + index.json; cold workers (model load, numba cache) included; "
                     f"cluster start excluded; again with --force on the warm workers: "
                     f"{samples / warm_seconds:.1f} samples/s; {shard_bytes / max(1, samples) / 1e3:.0f} kB "
                     f"of shard per sample; target on GPU >= 500 samples/s"}


def run(gpu: bool = False, quick: bool = False) -> list[dict]:
    # quick: the synthetic body model (~25 s to build) dominates; sizes are minimal
    # a unit is one block of per_shard frames of a sequence (its 4 cameras' shards): 4 units for 2 workers
    frames, scale, per_shard = (2, 0.2, 4) if quick else (64, 1.0, 16)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sample-"))
    try:
        work = _prepare(tmp, frames, scale)
        rows = [_stage_row(work, per_shard, quick), _in_process_row(work, per_shard)]
        image_px = f"{int(1000 * scale)}px frames"
        for row in rows:
            row["notes"] = f"synthetic S9 release ({image_px}), ground-truth fit; " + row["notes"]
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import sys

    for result in run(quick="--quick" in sys.argv):
        print(result)
