"""Evaluation of a run on a shard split, with the baselines that give its numbers meaning.

On the same samples: the model (voting from its predicted SDF and votes), the zero baseline
(every joint at the root), the mean-pose baseline (the training split's mean root-relative
pose, stored with the run) and the oracle (the voting decoder on the stored ground-truth SDF
and votes at the stored points). Plus the decoder's diagnostics: how many points passed the
SDF threshold, how many voted per joint, how far their estimates spread, the largest h.

The evaluation split must hold shards like the training split's (schema version, crop size,
point count, sampler, joint set, radius: recorded with the run), unless ``force``. The report
is written to ``RUN/eval_<split>_<hash>.json`` (``evaluation_path``): the hash is that of the
split's shard checksums, so an evaluation on other shards never overwrites this one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from common.units import MM_PER_M
from nvf.baselines import mean_pose, zero_pose
from nvf.config import TrainConfig
from nvf.data import make_loader, shard_dataset, to_device
from nvf.errors import NVFError
from nvf.metrics import pa_per_joint_errors, per_joint_errors, pose_report
from nvf.model import NVFNet
from nvf.vote import frustum_grid, vote_diagnostics


def _decoder_args(config: TrainConfig) -> dict:
    return {"sdf_threshold": config.vote_sdf_threshold, "top_fraction": config.vote_top_fraction,
            "min_points": config.vote_min_points, "min_h": config.vote_min_h}


@torch.no_grad()
def predict(model: NVFNet, batch: dict, config: TrainConfig, radius: float, query: str = "stored",
            grid_steps: int = 32, chunk: int = 16384):
    """Decoded joints and diagnostics for a batch; ``query`` is "stored" (the shard's points)
    or "grid" (a regular grid in the crop frustum).

    Returns (diagnostics, points, sdf_pred): :func:`nvf.vote.vote_diagnostics`'s dict (its
    ``joints`` (B, J, 3) camera frame, metres), the query points (B, N, 3) and their predicted
    SDF (B, N).
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
    return vote_diagnostics(points, sdf, votes, radius, **_decoder_args(config)), points, sdf


def _scores(pred: np.ndarray, gt: np.ndarray) -> dict:
    return {"mpjpe_mm": float(per_joint_errors(pred, gt).mean() * MM_PER_M),
            "pa_mpjpe_mm": float(pa_per_joint_errors(pred, gt).mean() * MM_PER_M)}


def _decoder_summary(diags: list[dict], joint_names, points: int, config: TrainConfig) -> dict:
    cat = {k: torch.cat([d[k] for d in diags]).double().cpu().numpy() for k in diags[0] if k != "joints"}
    return {
        "points_per_sample": points,
        "sdf_threshold_mm": config.vote_sdf_threshold * MM_PER_M,
        "passed_mean": float(cat["passed"].mean()), "passed_min": int(cat["passed"].min()),
        "fallback_samples": int((cat["passed"] < config.vote_min_points).sum()),
        "per_joint": {n: {"voters": float(cat["voters"][:, j].mean()),
                          "spread_mm": float(cat["spread"][:, j].mean() * MM_PER_M),
                          "max_h": float(cat["max_h"][:, j].mean())} for j, n in enumerate(joint_names)},
    }


def verdict(report: dict) -> str:
    """One plain sentence: does the model beat the baselines (MPJPE and PA-MPJPE)?"""
    base = report["baselines"]
    m, pa = report["mpjpe_mm"], report["pa_mpjpe_mm"]
    mean, zero = base["mean_pose"], base["zero"]
    if m < mean["mpjpe_mm"] and pa < mean["pa_mpjpe_mm"]:
        return (f"the model beats the mean-pose baseline (MPJPE {m:.1f} vs {mean['mpjpe_mm']:.1f} mm, "
                f"{m / mean['mpjpe_mm']:.2f}x; PA-MPJPE {pa:.1f} vs {mean['pa_mpjpe_mm']:.1f} mm) "
                f"and the zero baseline ({zero['mpjpe_mm']:.1f} mm)")
    worse = [f"{name} {ours:.1f} vs {theirs:.1f} mm" for name, ours, theirs in
             (("MPJPE", m, mean["mpjpe_mm"]), ("PA-MPJPE", pa, mean["pa_mpjpe_mm"])) if ours >= theirs]
    zero_note = ("; it is worse even than the zero baseline" if m >= zero["mpjpe_mm"]
                 else f"; it beats only the zero baseline ({zero['mpjpe_mm']:.1f} mm)")
    return f"the model is WORSE than the mean-pose baseline ({', '.join(worse)}){zero_note}"


def shards_hash(index: dict) -> str:
    """12 hex digits naming a split's shards (the sha256 of their checksums, in order)."""
    from common.hashing import sha256_json

    return sha256_json([s["sha256"] for s in index["shards"]])[:12]


def evaluation_path(run_dir, shards_dir, query: str = "stored") -> Path:
    """``RUN/eval_<split>_<shards hash>.json`` (``_grid`` added for grid queries)."""
    from sampling.shards import read_index

    shards_dir = Path(shards_dir)
    suffix = "" if query == "stored" else f"_{query}"
    return Path(run_dir) / f"eval_{shards_dir.name}_{shards_hash(read_index(shards_dir))}{suffix}.json"


NOT_RECORDED = "not run: the run did not record its training shards' config (trained before this check)"
"""``report["shards_check"]`` of a run trained before the shards were recorded."""


def shard_mismatch(trained: dict, index: dict) -> list[str]:
    """"key old → new" for each schema / config value in which the split differs from the
    training shards (``trained``: ``train_stats["shards"]``)."""
    old = {"schema_version": trained.get("schema_version"), **(trained.get("config") or {})}
    new = {"schema_version": index.get("schema_version"), **(index.get("config") or {})}
    return [f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def check_shards(run_dir, shards_dir, stats: dict, force: bool) -> str:
    """NVFError naming the differences unless the split's shards match the training shards;
    else the check's outcome for the report ("passed", "forced: …" or ``NOT_RECORDED``)."""
    from sampling.shards import read_index

    if not stats.get("shards"):
        return NOT_RECORDED
    differences = shard_mismatch(stats["shards"], read_index(shards_dir))
    if differences and not force:
        raise NVFError(f"{shards_dir}: not like the shards {run_dir} was trained on: "
                       f"{'; '.join(differences)} (pass --force to evaluate anyway)")
    return f"forced: {'; '.join(differences)}" if differences else "passed"


def evaluate(run_dir, shards_dir, device: str | None = None, batch_size: int | None = None,
             query: str = "stored", progress: bool = True, force: bool = False) -> dict:
    """Evaluate a run on a shard split; writes and returns ``evaluation_path``'s content:
    the pose report of the model, ``baselines`` (zero, mean_pose, oracle: mpjpe_mm,
    pa_mpjpe_mm), ``decoder`` and ``oracle_decoder`` diagnostics and a ``verdict`` sentence."""
    from tqdm import tqdm

    from nvf.train import _atomic_text, load_model, resolve_device

    run_dir, shards_dir = Path(run_dir), Path(shards_dir)
    dev = resolve_device(device or "auto")
    model, config, ckpt = load_model(run_dir, dev)
    stats = ckpt["train_stats"]
    shards_check = check_shards(run_dir, shards_dir, stats, force)
    dataset = shard_dataset(shards_dir, None, config.seed)
    if list(dataset.joint_names) != list(ckpt["joint_names"]):
        raise NVFError(f"{shards_dir}: joint set differs from the one {run_dir} was trained on")
    loader = make_loader(dataset, batch_size or config.batch_size, False, config.num_workers, config.seed, 0)
    preds, gts, oracle, sequences, sdf_err, diags, oracle_diags = [], [], [], [], [], [], []
    for batch in tqdm(loader, disable=not (progress and sys.stderr.isatty()), desc="evaluate", unit="batch"):
        batch = to_device(batch, dev)
        diag, points, sdf = predict(model, batch, config, dataset.radius, query)
        diags.append(diag)
        preds.append(diag["joints"].double().cpu().numpy())
        gts.append(batch["joints"].double().cpu().numpy())
        sequences += list(batch["sequence"])
        o = vote_diagnostics(batch["points"].double(), batch["sdf"].double(), batch["votes"].double(),
                             dataset.radius, **_decoder_args(config))
        oracle_diags.append(o)
        oracle.append(o["joints"].cpu().numpy())
        if query == "stored":
            near = batch["sdf"].abs() < config.near_surface
            sdf_err.append((sdf - batch["sdf"]).abs()[near].double().cpu().numpy())
    dataset.close()
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    report = pose_report(pred, gt, sequences, dataset.joint_names)
    report = {"split": shards_dir.name, "run": str(run_dir), "query": query, "shards_check": shards_check,
              **report}
    report["baselines"] = {
        "zero": _scores(zero_pose(gt), gt),
        "mean_pose": {**_scores(mean_pose(gt, stats), gt), "from": f"{stats['split']} ({stats['samples']} samples)"},
        "oracle": _scores(np.concatenate(oracle), gt),
    }
    report["verdict"] = verdict(report)
    report["decoder"] = _decoder_summary(diags, dataset.joint_names, int(points.shape[1]), config)
    report["oracle_decoder"] = _decoder_summary(oracle_diags, dataset.joint_names,
                                                int(batch["points"].shape[1]), config)
    if sdf_err:
        report["sdf_l1_near_mm"] = float(np.concatenate(sdf_err).mean() * MM_PER_M)
    _atomic_text(evaluation_path(run_dir, shards_dir, query), json.dumps(report, indent=1) + "\n")
    return report


def format_baselines(report: dict) -> str:
    """The model's numbers beside the baselines', the verdict and the decoder diagnostics."""
    b = report["baselines"]
    rows = [("model", report), ("zero (all joints at the root)", b["zero"]),
            (f"mean pose of {b['mean_pose'].get('from', 'training')}", b["mean_pose"]),
            ("oracle (decoder on stored GT SDF + votes)", b["oracle"])]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'':<{width}}{'MPJPE':>9}{'PA-MPJPE':>10}   (mm, root-relative, {report['samples']} samples "
             f"of {report['split']})"]
    lines += [f"{name:<{width}}{r['mpjpe_mm']:>9.1f}{r['pa_mpjpe_mm']:>10.1f}" for name, r in rows]
    lines.append(f"verdict: {report['verdict']}")
    for key, label in (("decoder", "model"), ("oracle_decoder", "oracle")):
        d = report[key]
        pj = d["per_joint"]
        lines.append(f"decoder ({label}): {d['passed_mean']:.0f} of {d['points_per_sample']} points per sample "
                     f"passed |SDF| < {d['sdf_threshold_mm']:.0f} mm (min {d['passed_min']}; "
                     f"{d['fallback_samples']} samples fell back to the smallest |SDF|)")
        lines.append(f"  voters per joint {min(v['voters'] for v in pj.values()):.0f}–"
                     f"{max(v['voters'] for v in pj.values()):.0f}; vote spread (mm) "
                     + ", ".join(f"{n} {v['spread_mm']:.0f}" for n, v in pj.items()))
    return "\n".join(lines)
