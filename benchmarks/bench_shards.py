"""Shard I/O throughput: ShardWriter (verify + sha256 + atomic rename, lzf votes) and
ShardDataset reads (incl. JPEG decode), each against plain h5py on the same arrays in the same
run (peer write: one uncompressed h5py file, no checks; peer read: the same datasets, no JPEG
decode). Synthetic samples (sphere bodies) are generated before the clock.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _peer_write(path: Path, samples) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for name in ("points", "sdf", "votes", "joints", "K"):
            dtype = np.float16 if name == "votes" else np.float32
            f.create_dataset(name, data=np.stack([np.asarray(getattr(s, name), dtype) for s in samples]))
        img = f.create_dataset("image", (len(samples),), dtype=h5py.vlen_dtype(np.uint8))
        for i, s in enumerate(samples):
            img[i] = s.image


def _peer_read(path: Path) -> int:
    import h5py

    n = 0
    with h5py.File(path, "r") as f:
        for i in range(f["points"].shape[0]):
            for name in ("points", "sdf", "votes", "joints", "K", "image"):
                f[name][i]
            n += 1
    return n


def run(gpu: bool = False, quick: bool = False) -> list[dict]:
    import cv2

    from nvf.synthetic import make_sample
    from sampling.dataset import ShardDataset
    from sampling.shards import ShardConfig, ShardSample, ShardWriter

    n_samples, n_points, size = (8, 1000, 64) if quick else (64, 5000, 256)
    config = ShardConfig(radius=0.3, num_points=n_points, image_size=size)
    raw = [make_sample(0, i, config) for i in range(n_samples)]
    # Encode JPEGs before the clock so both sides store identical bytes.
    samples = [ShardSample(**{**s.__dict__, "image": cv2.imencode(".jpg", s.image)[1].reshape(-1)}) for s in raw]
    tmp = Path(tempfile.mkdtemp(prefix="bench_shards_"))
    try:
        with ShardWriter(tmp, "warmup", config, samples_per_shard=2) as w:  # imports, caches
            w.extend(samples[:2])
        _peer_write(tmp / "warmup.h5", samples[:2])
        t = time.perf_counter()
        with ShardWriter(tmp, "train", config, samples_per_shard=16) as w:
            w.extend(samples)
        ours_write = time.perf_counter() - t
        written = sum(p.stat().st_size for p in (tmp / "train").glob("*.h5"))
        t = time.perf_counter()
        _peer_write(tmp / "peer.h5", samples)
        peer_write = time.perf_counter() - t
        peer_bytes = (tmp / "peer.h5").stat().st_size

        ds = ShardDataset(tmp / "train")
        t = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        ours_read = time.perf_counter() - t
        ds.close()
        t = time.perf_counter()
        _peer_read(tmp / "peer.h5")
        peer_read = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    note = f"{n_samples} samples, N={n_points}, J=17, {size}px; ours {written / 1e6:.1f} MB vs peer {peer_bytes / 1e6:.1f} MB"
    rows = []
    for case, ours, peer, peer_name, extra in (
        ("write", ours_write, peer_write, "h5py plain write", "verify+sha256+rename, lzf votes"),
        ("read (Dataset item)", ours_read, peer_read, "h5py plain read", "incl. JPEG decode to float CHW"),
    ):
        rows.append({"benchmark": "shards", "case": case, "ours": n_samples / ours, "peer_name": peer_name,
                     "peer": n_samples / peer, "ratio": peer / ours, "unit": "samples/s", "device": "cpu",
                     "notes": f"{note}; {extra}; ours {written / ours / 1e6:.0f} MB/s"})
    return rows
