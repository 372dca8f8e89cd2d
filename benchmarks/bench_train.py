"""Trainer throughput: samples/s of nvf.train.train (ShardDataset → augmentation → forward,
backward, AdamW step) against the same model's steps on the same batches held in memory (the
peer: no reading, decoding or collation), same config, threads and process, measured after a
warm-up pass, before and after ours. The ratio is the share of the step rate that survives
data loading (ideal 1.0). CPU runs the tiny preset; ``gpu=True`` adds the full preset on CUDA.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path


def _in_memory_rate(config, split: Path, epochs: int) -> float:
    """Median samples/s of ``epochs`` passes of the same steps over the split's batches, all
    held in memory (loaded once before timing): no reading, decoding or collation."""
    import statistics

    import torch

    from nvf.data import make_loader, photometric_augment, shard_dataset, to_device
    from nvf.train import build_model, losses, resolve_device

    device = resolve_device(config.device)
    ds = shard_dataset(split, config.points, config.seed)
    batches = [to_device(b, device) for b in make_loader(ds, config.batch_size, True, 0, config.seed, 0)]
    ds.close()
    model = build_model(config, len(ds.joint_names)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(0)

    def step(batch):
        image = photometric_augment(batch["image"], gen, config.brightness, config.contrast, config.saturation)
        parts = losses(*model(image, batch["points"], batch["K"], batch["root"]), batch, config)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        parts["loss"].item()  # the trainer syncs once per step for its running sums

    for batch in batches:  # warm-up pass, like the trainer's first epoch (excluded there too)
        step(batch)
    rates = []
    for _ in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for batch in batches:
            step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(sum(b["image"].shape[0] for b in batches) / (time.perf_counter() - t))
    return statistics.median(rates)


def _loader_rate(config, split: Path) -> float:
    """Samples/s of one pass of the trainer's DataLoader alone (read, decode, collate)."""
    from nvf.data import make_loader, shard_dataset

    ds = shard_dataset(split, config.points, config.seed)
    t = time.perf_counter()
    n = sum(b["image"].shape[0] for b in make_loader(ds, config.batch_size, True, config.num_workers, config.seed, 1))
    seconds = time.perf_counter() - t
    ds.close()
    return n / seconds


def _case(preset: str, device: str, samples: int, size: int, n_points: int, points: int, batch: int,
          epochs: int) -> dict:
    import statistics

    import torch

    from nvf.config import apply_overrides, preset_config
    from nvf.synthetic import write_synthetic_split
    from nvf.train import train
    from sampling.shards import ShardConfig

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        split = write_synthetic_split(tmp, "train", samples, ShardConfig(radius=0.3, num_points=n_points,
                                                                         image_size=size), 16)
        config = apply_overrides(preset_config(preset), {
            "epochs": epochs, "batch_size": batch, "points": points, "device": device,
            "num_workers": 0 if device == "cpu" else 4, "checkpoint_every": 10_000})
        timed_epochs = max(1, epochs - 1)
        # the peer runs before and after ours: drifting load on a shared machine hits both alike
        before = _in_memory_rate(config, split, timed_epochs)
        result = train(split, tmp / "run", config, progress=False)
        after = _in_memory_rate(config, split, timed_epochs)
        loader = _loader_rate(config, split)
        rows = _metrics_rows(tmp / "run")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # the first epoch pays one-off costs (allocator, oneDNN primitives, page cache): skip it
    epoch_rates = [float(r["samples_per_s"]) for r in rows][1:] or [float(result["last"]["samples_per_s"])]
    ours = statistics.median(epoch_rates)
    peer = (before + after) / 2
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {"benchmark": "train", "case": f"{preset} preset, {size}px, {points} points/sample, batch {batch}",
            "ours": ours, "peer_name": "same steps on the same batches held in memory", "peer": peer,
            "ratio": ours / peer, "unit": "samples/s", "device": name,
            "notes": f"{samples} samples; ours = nvf.train.train (ShardDataset + DataLoader, "
                     f"{config.num_workers} workers), median of epochs 2..{epochs}; peer = median over "
                     f"{timed_epochs} passes after a warm-up pass, run before ({before:.3g}) and after "
                     f"({after:.3g}) ours; ratio = share of the step rate left after data loading "
                     f"(ideal 1.0); DataLoader alone {loader:.3g} samples/s; load average "
                     f"{os.getloadavg()[0]:.2f} (a shared machine swings both rates)"}


def _metrics_rows(run_dir: Path) -> list[dict]:
    """The run's metrics.csv rows (one per epoch)."""
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def run(gpu: bool = False, quick: bool = False) -> list[dict]:
    import torch

    if quick:
        rows = [_case("tiny", "cpu", 4, 32, 128, 64, 2, 2)]
    else:
        rows = [_case("tiny", "cpu", 64, 128, 2000, 1024, 8, 4)]
    if gpu and torch.cuda.is_available():
        rows.append(_case("full", "cuda", 128, 256, 5000, 5000, 16, 2))
    return rows
