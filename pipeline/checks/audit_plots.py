"""The audit's plots (matplotlib, headless): error histograms, per-joint errors, error and
plausibility over time, the plausibility and skeleton-mismatch charts."""


from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.store import atomic_write_bytes

if TYPE_CHECKING:
    from pipeline.checks.audit import SequenceFit, SequencePlausibility


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())


def plot_histograms(fits: list[SequenceFit], path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for s in sorted({f.subject for f in fits}):
        ax.hist(np.concatenate([f.mpjpe_mm for f in fits if f.subject == s]), bins=40, alpha=0.6, label=s)
    ax.set_xlabel("MPJPE to mocap (mm)")
    ax.set_ylabel("frames")
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_per_joint(summary: dict, path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names, values = zip(*summary["per_joint_mm"].items())
    ax.bar(range(len(values)), values)
    ax.set_xticks(range(len(values)), names, rotation=60, ha="right")
    ax.set_ylabel("mean error (mm)")
    _save(fig, path)
    plt.close(fig)


def plot_over_time(fit: SequenceFit, path: Path, plaus: SequencePlausibility | None = None) -> None:
    """MPJPE over the frames (non-converged frames in red) and, with plausibility figures,
    PVE, the largest joint-limit violation, rotation-vector norm and self-intersection depth."""
    plt = _figure()
    panels = [("MPJPE (mm)", fit.mpjpe_mm)]
    if plaus is not None:
        if plaus.pve_mm is not None:
            panels.append(("PVE (mm)", plaus.pve_mm))
        panels += [("beyond limit (°)", plaus.limit_deg.max(-1)), ("max |rotvec| (°)", plaus.rotvec_deg.max(-1)),
                   ("self-intersection (mm)", plaus.intersection_mm)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.6 + 1.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (label, y) in zip(axes[:, 0], panels):
        ok = np.isfinite(y)
        ax.plot(fit.frame_index[ok], y[ok], lw=1)
        ax.set_ylabel(label, fontsize=8)
    bad = ~fit.converged
    ax0 = axes[0, 0]
    ax0.scatter(fit.frame_index[bad], fit.mpjpe_mm[bad], color="red", s=8, label="not converged")
    if plaus is not None:
        axes[-2, 0].axhline(180.0, color="grey", lw=0.5, ls="--")
    axes[-1, 0].set_xlabel("frame")
    ax0.set_title(f"{fit.subject} {fit.sequence}")
    if bad.any():
        ax0.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)


def plot_plausibility(plaus: list[SequencePlausibility], summary: dict, path: Path) -> None:
    """Histograms of the per-frame plausibility figures and the per-region PVE."""
    from pipeline.checks import plausibility as P

    plt = _figure()
    cat = lambda name: np.concatenate([getattr(p, name) for p in plaus])  # noqa: E731
    has_gt = "pve" in summary
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    hists = [(axes[0, 0], cat("limit_deg").max(-1), "largest joint-limit excess per frame (°)"),
             (axes[0, 1], cat("rotvec_deg").max(-1), "largest rotation-vector norm per frame (°)"),
             (axes[0, 2], cat("intersection_mm"), "self-intersection depth per frame (mm)")]
    if has_gt:
        hists.append((axes[1, 0], cat("pve_mm"), "PVE vs the true mesh per frame (mm)"))
    for ax, x, label in hists:
        x = x[np.isfinite(x)]
        ax.hist(x, bins=40)
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("frames", fontsize=8)
    twist = cat("twist_deg")
    axes[1, 1].boxplot([twist[:, i] for i in range(twist.shape[1])])
    axes[1, 1].set_xticks(range(1, twist.shape[1] + 1), list(P.LIMB_JOINTS), rotation=60, ha="right", fontsize=7)
    axes[1, 1].set_ylabel("twist about the bone axis (°)", fontsize=8)
    if has_gt:
        names, values = zip(*summary["pve"]["regions_mm"].items())
        axes[1, 2].bar(range(len(values)), values)
        axes[1, 2].set_xticks(range(len(values)), names, rotation=60, ha="right", fontsize=7)
        axes[1, 2].set_ylabel("mean PVE by region (mm)", fontsize=8)
    else:
        axes[1, 0].axis("off")
        axes[1, 2].axis("off")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_mismatch(summary: dict, path: Path) -> None:
    """Per h36m32 joint and subject: length of the mean bone-frame residual against its spread."""
    plt = _figure()
    subjects = summary["mismatch"]["subjects"]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    width = 0.8 / max(1, len(subjects))
    for k, (s, v) in enumerate(subjects.items()):
        names = list(v["per_joint"])
        x = np.arange(len(names)) + k * width
        ax.bar(x, [v["per_joint"][n]["mean_norm_mm"] for n in names], width, label=f"{s} |mean|")
        ax.scatter(x, [v["per_joint"][n]["spread_mm"] for n in names], color="k", s=6)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("bone-frame residual (mm)\nbars: |mean|, dots: spread", fontsize=8)
    ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)


def plot_silhouette(silhouette: dict, path: Path) -> None:
    """Histogram of the silhouette IoU over every checked (frame, camera) and the IoU over time
    per sequence (mean over its cameras): ``summary.json``'s ``silhouette``."""
    plt = _figure()
    fig, (hist, time) = plt.subplots(1, 2, figsize=(11, 3.5))
    values = [v for row in silhouette["sequences"] for c in row["per_frame"].values() for v in c["iou"]
              if v is not None]
    hist.hist(values, bins=40, range=(min(values + [0.5]), 1.0))
    hist.set_xlabel("silhouette IoU (fitted mesh vs ground_truth_bs)")
    hist.set_ylabel("frames x cameras")
    for row in silhouette["sequences"]:
        per_camera = list(row["per_frame"].values())
        frames = per_camera[0]["frame"]
        iou = np.nanmean(np.array([[np.nan if v is None else v for v in c["iou"]] for c in per_camera],
                                  dtype=float), axis=0)
        time.plot(frames, iou, label=f"{row['subject']} {row['sequence']}")
    time.set_xlabel("mocap frame")
    time.set_ylabel("IoU (mean over cameras)")
    time.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)
