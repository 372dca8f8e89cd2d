"""Training and evaluation loops of the thin NVF trainer.

A run folder holds ``config.json`` (the TrainConfig), ``checkpoint.pt`` (model, optimiser,
epochs done; written atomically), ``metrics.csv`` (one row per epoch: losses, lr, samples/s),
``loss_curve.png`` and, after evaluation, ``eval_<split>.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from nvf.config import TrainConfig, apply_overrides, config_to_json
from nvf.data import make_loader, photometric_augment, shard_dataset, to_device
from nvf.errors import NVFError
from nvf.metrics import MM_PER_M, pose_report
from nvf.model import NVFNet
from nvf.vote import frustum_grid, vote_joints

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.csv"
METRIC_FIELDS = ("epoch", "step", "loss", "loss_sdf", "loss_vote", "lr", "samples_per_s", "seconds")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NVFError(f"device {name!r} asked for but CUDA is not available")
    return torch.device(name)


def build_model(config: TrainConfig, joints: int) -> NVFNet:
    torch.manual_seed(config.seed)
    return NVFNet(config.model, joints, config.sdf_clamp)


def losses(sdf_pred, votes_pred, batch: dict, config: TrainConfig) -> dict:
    """L1 on clamped SDF (in units of sdf_clamp) + smooth-L1 on votes of near-surface points."""
    c = config.sdf_clamp
    sdf_gt = batch["sdf"]
    loss_sdf = (sdf_pred - sdf_gt.clamp(-c, c)).abs().mean() / c
    near = (sdf_gt.abs() < config.near_surface).to(votes_pred.dtype)  # (B, N)
    per = F.smooth_l1_loss(votes_pred, batch["votes"], beta=config.vote_beta, reduction="none")
    count = near.sum() * per.shape[-2] * per.shape[-1]
    loss_vote = (per * near[..., None, None]).sum() / count.clamp(min=1.0)
    total = config.sdf_weight * loss_sdf + config.vote_weight * loss_vote
    return {"loss": total, "loss_sdf": loss_sdf, "loss_vote": loss_vote}


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Cosine decay from lr to lr * lr_final_fraction over the run."""
    f = config.lr_final_fraction
    progress = min(step / max(total_steps - 1, 1), 1.0)
    return config.lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * progress)))


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    tmp = run_dir / (METRICS + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, run_dir / METRICS)


def _append_metrics(run_dir: Path, row: dict) -> None:
    # One short line per epoch: appending keeps long runs cheap (the file is rewritten only on resume).
    with open(run_dir / METRICS, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=METRIC_FIELDS).writerow(row)


def _read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_loss_curve(run_dir: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "loss_sdf", "loss_vote"):
        ax.plot(epochs, [float(r[key]) for r in rows], label=key)
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(run_dir.name)
    fig.tight_layout()
    tmp = run_dir / "loss_curve.tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, run_dir / "loss_curve.png")


def load_run_config(run_dir) -> TrainConfig:
    """The TrainConfig stored in RUN/config.json."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise NVFError(f"{path}: missing (is {run_dir} a training run?)")
    data = json.loads(path.read_text())
    return apply_overrides(TrainConfig(), data, str(path))


def train(shards_dir, run_dir, config: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train on a shard split; returns {"epochs", "steps", "last": last metrics row}."""
    from tqdm import tqdm

    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise NVFError(f"{ckpt_path}: run already exists; pass --resume or choose another --run")
    if resume and not ckpt_path.exists():
        raise NVFError(f"{ckpt_path}: nothing to resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    dataset = shard_dataset(shards_dir, config.points, config.seed)
    if len(dataset) == 0:
        raise NVFError(f"{shards_dir}: no samples")
    model = build_model(config, len(dataset.joint_names)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_epoch, step, rows = 0, 0, []
    if resume:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError) as e:
            raise NVFError(f"{ckpt_path}: does not fit this config ({str(e).splitlines()[0]})") from None
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        rows = _read_metrics(run_dir)[:start_epoch]
    _atomic_text(run_dir / CONFIG, config_to_json(config))
    _write_metrics(run_dir, rows)  # header, and drops rows of epochs after the checkpoint
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch

    def save(epoch: int) -> None:
        _atomic_torch_save({
            "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "step": step,
            "config": dataclasses.asdict(config), "joint_names": list(dataset.joint_names),
            "radius": dataset.radius,
        }, ckpt_path)

    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="step", desc="train")
    for epoch in range(start_epoch, config.epochs):
        model.train()
        loader = make_loader(dataset, config.batch_size, True, config.num_workers, config.seed, epoch)
        aug = torch.Generator().manual_seed(config.seed * 7919 + epoch)
        sums, n_samples, t0 = {"loss": 0.0, "loss_sdf": 0.0, "loss_vote": 0.0}, 0, time.perf_counter()
        for batch in loader:
            batch = to_device(batch, device)
            lr = lr_at(step, total_steps, config)
            for group in opt.param_groups:
                group["lr"] = lr
            image = photometric_augment(batch["image"], aug, config.brightness, config.contrast,
                                        config.saturation)
            sdf, votes = model(image, batch["points"], batch["K"], batch["root"])
            parts = losses(sdf, votes, batch, config)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            step += 1
            b = batch["image"].shape[0]
            n_samples += b
            for k in sums:
                sums[k] += parts[k].item() * b
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{parts['loss'].item():.4f}")
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "step": step, **{k: v / n_samples for k, v in sums.items()},
               "lr": lr, "samples_per_s": n_samples / seconds, "seconds": seconds}
        rows.append(row)
        _append_metrics(run_dir, row)
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
            save(epoch + 1)
            plot_loss_curve(run_dir, rows)
    bar.close()
    dataset.close()
    return {"epochs": config.epochs, "steps": step, "last": rows[-1] if rows else None}


def load_model(run_dir, device: torch.device) -> tuple[NVFNet, TrainConfig, dict]:
    """The trained model of a run (eval mode), its config and checkpoint metadata."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    if not ckpt_path.is_file():
        raise NVFError(f"{ckpt_path}: missing (train first)")
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
    model = NVFNet(config.model, len(ckpt["joint_names"]), config.sdf_clamp).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, config, ckpt


@torch.no_grad()
def predict(model: NVFNet, batch: dict, config: TrainConfig, radius: float, query: str = "stored",
            grid_steps: int = 32, chunk: int = 16384):
    """Joints (B, J, 3) for a batch; ``query`` is "stored" (the shard's points) or "grid" (frustum).

    Returns (joints, points, sdf_pred): the query points and their predicted SDF as well.
    """
    image = batch["image"]
    features = model.encoder(image * 2 - 1)
    if query == "stored":
        points = batch["points"]
    elif query == "grid":
        points = frustum_grid(batch["K"], image.shape[-1], batch["root"], grid_steps, grid_steps)
    else:
        raise NVFError(f"unknown query mode {query!r} (stored or grid)")
    sdf_parts, vote_parts = [], []
    for i in range(0, points.shape[1], chunk):
        s, v = model.query(features, image.shape[-2:], points[:, i : i + chunk], batch["K"], batch["root"])
        sdf_parts.append(s)
        vote_parts.append(v)
    sdf, votes = torch.cat(sdf_parts, 1), torch.cat(vote_parts, 1)
    joints = vote_joints(points, sdf, votes, radius, config.vote_sdf_threshold, config.vote_top_fraction,
                         config.vote_min_points, config.vote_min_h)
    return joints, points, sdf


def evaluate(run_dir, shards_dir, device: str | None = None, batch_size: int | None = None,
             query: str = "stored", progress: bool = True) -> dict:
    """Evaluate a run on a shard split; writes and returns RUN/eval_<split>.json's content."""
    from tqdm import tqdm

    run_dir, shards_dir = Path(run_dir), Path(shards_dir)
    dev = resolve_device(device or "auto")
    model, config, ckpt = load_model(run_dir, dev)
    dataset = shard_dataset(shards_dir, None, config.seed)
    if list(dataset.joint_names) != list(ckpt["joint_names"]):
        raise NVFError(f"{shards_dir}: joint set differs from the one {run_dir} was trained on")
    loader = make_loader(dataset, batch_size or config.batch_size, False, config.num_workers, config.seed, 0)
    preds, gts, sequences, sdf_err = [], [], [], []
    for batch in tqdm(loader, disable=not progress, desc="evaluate", unit="batch"):
        batch = to_device(batch, dev)
        joints, _, sdf = predict(model, batch, config, dataset.radius, query)
        preds.append(joints.double().cpu().numpy())
        gts.append(batch["joints"].double().cpu().numpy())
        sequences += list(batch["sequence"])
        if query == "stored":
            near = batch["sdf"].abs() < config.near_surface
            sdf_err.append((sdf - batch["sdf"]).abs()[near].double().cpu().numpy())
    dataset.close()
    report = pose_report(np.concatenate(preds), np.concatenate(gts), sequences, dataset.joint_names)
    report = {"split": shards_dir.name, "run": str(run_dir), "query": query, **report}
    if sdf_err:
        report["sdf_l1_near_mm"] = float(np.concatenate(sdf_err).mean() * MM_PER_M)
    _atomic_text(run_dir / f"eval_{shards_dir.name}.json", json.dumps(report, indent=1) + "\n")
    return report
