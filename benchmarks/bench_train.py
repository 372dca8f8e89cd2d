"""Trainer throughput: samples/s of nvf.train.train (ShardDataset → augmentation → forward,
backward, AdamW step) against the same model's steps on one batch held in memory (the peer:
no loading, no decoding), same config, same run. The ratio is the share of the step rate that
survives data loading. CPU runs the tiny preset; ``gpu=True`` adds the full preset on CUDA.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path


def _in_memory_rate(config, split: Path, steps: int) -> float:
    import torch

    from nvf.data import make_loader, photometric_augment, shard_dataset, to_device
    from nvf.train import build_model, losses, resolve_device

    device = resolve_device(config.device)
    ds = shard_dataset(split, config.points, config.seed)
    batch = to_device(next(iter(make_loader(ds, config.batch_size, False, 0, 0, 0))), device)
    model = build_model(config, len(ds.joint_names)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(0)

    def step():
        image = photometric_augment(batch["image"], gen, config.brightness, config.contrast, config.saturation)
        parts = losses(*model(image, batch["points"], batch["K"], batch["root"]), batch, config)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * config.batch_size / (time.perf_counter() - t)


def _case(preset: str, device: str, samples: int, size: int, n_points: int, points: int, batch: int,
          epochs: int) -> dict:
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
        result = train(split, tmp / "run", config, progress=False)
        ours = float(result["last"]["samples_per_s"])
        peer = _in_memory_rate(config, split, steps=max(2, samples // batch))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    return {"benchmark": "train", "case": f"{preset} preset, {size}px, {points} points/sample, batch {batch}",
            "ours": ours, "peer_name": "same steps, batch in memory", "peer": peer, "ratio": ours / peer,
            "unit": "samples/s", "device": name, "notes": f"{samples} samples, last of {epochs} epochs"}


def run(gpu: bool = False, quick: bool = False) -> list[dict]:
    import torch

    if quick:
        rows = [_case("tiny", "cpu", 4, 32, 128, 64, 2, 1)]
    else:
        rows = [_case("tiny", "cpu", 32, 128, 2000, 1024, 8, 2)]
    if gpu and torch.cuda.is_available():
        rows.append(_case("full", "cuda", 128, 256, 5000, 5000, 16, 2))
    return rows
