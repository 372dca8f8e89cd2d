"""Extract throughput: the extract stage (decode + JPEG encode + atomic write, on dask) against
a plain sequential OpenCV decode of the same videos, in the same run.

The inputs are a synthetic release in the Human3.6M layout (4 cameras per sequence, mp4v at
the real 1000 × 1002 / 1000 × 1000 sizes, textured moving content). Ours runs the whole stage
(plan with frame counting, every frame at stride 1 written as JPEG) on a local cluster of one
worker per core, started before the clock; the peer reads every frame with ``cap.read()``
and keeps nothing. Target: ratio ≥ 0.7 (writing JPEGs costs less than 30 % of the decode
rate when the units spread over the cores).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SEQUENCES = ((14, 1), (4, 1), (2, 1), (3, 1))


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(2H, 2W, 3) uint8 smooth random texture with mild sensor-like noise (q95 JPEGs of
    ~150-250 kB at 1000 px, like studio footage; white noise would make JPEG cost dominate)."""
    import cv2

    noise = rng.integers(0, 256, (2 * height, 2 * width, 3), dtype=np.uint8)
    smooth = cv2.GaussianBlur(noise, (0, 0), 6)
    smooth = cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.int16)
    grain = rng.integers(-3, 4, smooth.shape, dtype=np.int16)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def write_release(root: Path, frames: int, scale: float, sequences=SEQUENCES) -> int:
    """A release with real metadata, CDF mocap and textured videos; returns the video count."""
    import cv2

    from pipeline.release.h36m import mocap_path, video_path, write_pose_cdf
    from pipeline.release.metadata import default_metadata, write_metadata

    metadata = default_metadata()
    root.mkdir(parents=True, exist_ok=True)
    write_metadata(root / "metadata.xml", metadata)
    rng = np.random.default_rng(0)
    count = 0
    for action_id, sub in sequences:
        basename = metadata.basename("S1", action_id, sub)
        cdf = mocap_path(root, "S1", basename)
        cdf.parent.mkdir(parents=True, exist_ok=True)
        write_pose_cdf(cdf, rng.normal(0, 300, (frames, 96)) + 1000.0)
        for index, cam in enumerate(metadata.camera_ids):
            width = int(1000 * scale) // 2 * 2
            height = int((1002 if index in (0, 3) else 1000) * scale) // 2 * 2
            texture = _texture(rng, width, height)
            path = video_path(root, "S1", basename, cam)
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 50.0, (width, height))
            for i in range(frames):
                x, y = (3 * i) % width, (2 * i) % height
                writer.write(np.ascontiguousarray(texture[y:y + height, x:x + width]))
            writer.release()
            count += 1
    return count


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _workers_cpu(client, quick: bool) -> float:
    """CPU seconds of the worker processes (quick: threads of this process, already counted)."""
    return 0.0 if quick else sum(client.run(_cpu_seconds).values())


def plain_decode(root: Path) -> tuple[int, float]:
    """(frames, seconds) of reading every video of the release sequentially with OpenCV."""
    import cv2

    frames = 0
    t0 = time.perf_counter()
    for video in sorted(root.glob("S*/Videos/*.mp4")):
        cap = cv2.VideoCapture(str(video))
        while True:
            ok, _ = cap.read()
            if not ok:
                break
            frames += 1
        cap.release()
    return frames, time.perf_counter() - t0


def run(gpu: bool = False, quick: bool = False) -> list[dict]:
    from distributed import Client

    from pipeline.orchestration.runner import close_client, get_client, local_core_count, run_stage
    from pipeline.selection import Selection
    from pipeline.stages import get_stage
    from pipeline.store import WorkDir

    frames, scale = (8, 0.16) if quick else (60, 1.0)
    sequences = SEQUENCES[:1] if quick else SEQUENCES
    cores = local_core_count()
    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        root = tmp / "release"
        videos = write_release(root, frames, scale, sequences)
        stage = get_stage("extract")
        config = stage.make_config(h36m=root, selection=Selection(stride=1), options={})
        # quick: threads in this process (a smoke run in seconds); full: one process per core
        client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") \
            if quick else get_client(workers=cores)
        try:
            plain_decode(root)  # warm the page cache for both contenders
            # the peer runs before and after ours: drifting machine load hits both alike
            c0 = _cpu_seconds()
            before_frames, before_s = plain_decode(root)
            peer_cpu = _cpu_seconds() - c0
            c0, w0 = _cpu_seconds(), _workers_cpu(client, quick)
            t0 = time.perf_counter()
            report = run_stage(stage, config, WorkDir(tmp / "work"), client, progress=False)
            ours_s = time.perf_counter() - t0
            ours_cpu = _cpu_seconds() - c0 + _workers_cpu(client, quick) - w0
            after_frames, after_s = plain_decode(root)
        finally:
            close_client(client)
        written = sum(o.info.get("frames", 0) for o in report.done if o.key.count("/") == 2)
        if report.failed:
            raise RuntimeError(f"extract failed in the benchmark: {report.failed[0].reason}")
        assert written == before_frames == after_frames == videos * frames, (written, before_frames)
        ours, peer = written / ours_s, (before_frames + after_frames) / (before_s + after_s)
        return [{
            "benchmark": "extract",
            "case": f"{videos} videos × {frames} frames {int(1000 * scale)}px, stride 1, JPEG q95",
            "ours": ours, "peer_name": "sequential cv2.VideoCapture.read (decode only)",
            "peer": peer, "ratio": ours / peer, "unit": "frames/s",
            "device": f"CPU, {cores} cores ({'1 process, 2 threads' if quick else f'{cores} worker processes'})",
            "notes": "ours = whole stage: plan + decode + JPEG encode + atomic writes + done-records; "
                     "target ratio ≥ 0.7; CPU ms/frame is load-independent (ours: client + workers)",
            "ours_cpu_ms_per_frame": 1000 * ours_cpu / written,
            "peer_cpu_ms_per_frame": 1000 * peer_cpu / before_frames,
        }]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(row)
