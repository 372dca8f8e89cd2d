"""Training loop of the thin NVF trainer (evaluation: nvf/evaluate.py).

A run folder holds ``config.json`` (the TrainConfig), ``train_stats.json`` (the training
split's pose statistics, for the mean-pose baseline), ``checkpoint.pt`` (model, optimiser,
epochs done, the same statistics; written atomically, readable with ``weights_only=True``:
tensors, numbers, strings, lists and dicts only, no pickled objects), ``metrics.csv`` (one
row per epoch: losses, lr, samples/s), ``loss_curve.png`` and, after evaluation,
``eval_<split>_<shards hash>.json`` (nvf.evaluate.evaluation_path).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from nvf.baselines import TRAIN_STATS, read_training_stats, training_stats
from nvf.config import TrainConfig, apply_overrides, config_to_json
from nvf.data import make_loader, photometric_augment, shard_dataset, to_device
from nvf.errors import NVFError
from nvf.model import NVFNet

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.csv"
METRIC_FIELDS = ("epoch", "step", "loss", "loss_sdf", "loss_vote", "lr", "samples_per_s", "seconds")


def resolve_device(name: str) -> torch.device:
    """common.device.resolve_device, its errors as NVFError (one line at the CLI)."""
    from common.device import DeviceError
    from common.device import resolve_device as resolve

    try:
        return resolve(name)
    except DeviceError as e:
        raise NVFError(str(e)) from None


def build_model(config: TrainConfig, joints: int) -> NVFNet:
    torch.manual_seed(config.seed)
    return NVFNet(config.model, joints, config.sdf_clamp)


def losses(sdf_pred, votes_pred, batch: dict, config: TrainConfig) -> dict:
    """L1 on clamped SDF (in units of sdf_clamp) + Huber (smooth-L1) on the votes of
    near-surface points, balanced so that the few real votes are not drowned.

    A near-surface point lies within the vote radius of only 1–3 of the J joints; the other
    (point, joint) pairs have target ``[0, 0, 0, 0]``. Averaged over all J × 4 channels
    (as before), an all-zero prediction scored ~0.05 and the gradient on a real vote shrank
    as 1 / (4 J): the network learned h ≈ 0.04 where the target averages 0.36, and voting from
    such h picks points all over the body (MPJPE at the zero baseline's level). So h is
    averaged separately over the active pairs (h > 0) and the inactive ones, and u (the unit
    direction, undefined where h = 0: the decoder normalises it) is supervised on the active
    pairs only, summed over its 3 components.

    Args:
        sdf_pred: (B, N) metres. votes_pred: (B, N, J, 4) raw ``[h, u]``.
        batch: ``sdf`` (B, N) metres and ``votes`` (B, N, J, 4) targets.
    """
    c = config.sdf_clamp
    sdf_gt = batch["sdf"]
    loss_sdf = (sdf_pred - sdf_gt.clamp(-c, c)).abs().mean() / c
    near = (sdf_gt.abs() < config.near_surface).unsqueeze(-1)  # (B, N, 1)
    target = batch["votes"]
    per = F.smooth_l1_loss(votes_pred, target, beta=config.vote_beta, reduction="none")
    active = (near & (target[..., 0] > 0)).to(per.dtype)  # (B, N, J)
    inactive = (near & (target[..., 0] <= 0)).to(per.dtype)

    def mean_over(mask, values):
        return (values * mask).sum() / mask.sum().clamp(min=1.0)

    loss_h = 0.5 * (mean_over(active, per[..., 0]) + mean_over(inactive, per[..., 0]))
    loss_u = mean_over(active, per[..., 1:].sum(-1))
    loss_vote = loss_h + loss_u
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


def load_checkpoint(path: Path, device="cpu") -> dict:
    """A checkpoint read without pickle's code execution (``weights_only=True``: tensors,
    numbers, strings, lists, dicts only); NVFError naming the file if it holds anything else."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError here
        raise NVFError(f"{path}: not a loadable checkpoint ({str(e).splitlines()[0]})") from None


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


def train(shards_dir, run_dir, config: TrainConfig, resume: bool = False, progress: bool = True,
          on_checkpoint=None) -> dict:
    """Train on a shard split; returns {"epochs", "steps", "last": last metrics row}.

    ``on_checkpoint(epoch, run_dir)``, if given, is called after each checkpoint is written
    (e.g. to evaluate a held-out split epoch by epoch: a learning curve).
    """
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
        ckpt = load_checkpoint(ckpt_path, device)
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError) as e:
            raise NVFError(f"{ckpt_path}: does not fit this config ({str(e).splitlines()[0]})") from None
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        rows = _read_metrics(run_dir)[:start_epoch]
    _atomic_text(run_dir / CONFIG, config_to_json(config))
    stats = ckpt["train_stats"] if resume and "train_stats" in ckpt else training_stats(shards_dir)
    _atomic_text(run_dir / TRAIN_STATS, json.dumps(stats, indent=1) + "\n")
    _write_metrics(run_dir, rows)  # header, and drops rows of epochs after the checkpoint
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch

    def save(epoch: int) -> None:
        _atomic_torch_save({
            "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "step": step,
            "config": dataclasses.asdict(config), "joint_names": list(dataset.joint_names),
            "radius": dataset.radius, "train_stats": stats,
        }, ckpt_path)

    bar = tqdm(total=total_steps, initial=step, disable=not (progress and sys.stderr.isatty()), unit="step", desc="train")
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
            if on_checkpoint is not None:
                on_checkpoint(epoch + 1, run_dir)
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
    ckpt = load_checkpoint(ckpt_path, device)
    if "train_stats" not in ckpt:
        ckpt["train_stats"] = read_training_stats(run_dir)
    model = NVFNet(config.model, len(ckpt["joint_names"]), config.sdf_clamp).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, config, ckpt


def evaluate(run_dir, shards_dir, device: str | None = None, batch_size: int | None = None,
             query: str = "stored", progress: bool = True) -> dict:
    """:func:`nvf.evaluate.evaluate` (kept here for callers of the trainer's first API)."""
    from nvf.evaluate import evaluate as run_evaluation

    return run_evaluation(run_dir, shards_dir, device, batch_size, query, progress)
