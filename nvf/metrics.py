"""Pose metrics (root-relative MPJPE, PA-MPJPE) and their per-joint / per-action tables."""

from __future__ import annotations

import re

import numpy as np

from common.units import MM_PER_M

ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}
"""S1's names for two actions → the canonical ones (reference README, Human3.6M quirks)."""


def action_of(sequence: str) -> str:
    """Canonical action of a sequence basename: "Walking_1" → "Walking", "TakingPhoto" → "Photo"."""
    name = re.sub(r"[_ ]\d+$", "", sequence)
    return ACTION_ALIASES.get(name, name)


def root_relative(joints: np.ndarray, root: int = 0) -> np.ndarray:
    """(..., J, 3) → the same minus joint ``root``."""
    return joints - joints[..., root : root + 1, :]


def per_joint_errors(pred: np.ndarray, gt: np.ndarray, root: int = 0) -> np.ndarray:
    """Root-relative Euclidean errors: pred, gt (B, J, 3) metres → (B, J) metres."""
    return np.linalg.norm(root_relative(pred, root) - root_relative(gt, root), axis=-1)


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity transform (rotation, scale, translation) of pred onto gt, least squares.

    pred, gt: (B, J, 3). Returns the aligned pred (B, J, 3), computed in float64. Reflections
    are excluded (Umeyama's sign correction). A pred with all joints at one point maps to
    gt's centroid (scale 0).
    """
    X = np.asarray(pred, np.float64)
    Y = np.asarray(gt, np.float64)
    mx, my = X.mean(-2, keepdims=True), Y.mean(-2, keepdims=True)
    X0, Y0 = X - mx, Y - my
    cov = np.swapaxes(X0, -1, -2) @ Y0  # (B, 3, 3)
    U, s, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.ones_like(s)
    D[..., -1] = d
    R = (U * D[..., None, :]) @ Vt  # X0 @ R ≈ Y0 / scale
    norm = (X0**2).sum((-1, -2))
    # A degenerate pred (all joints at one point, e.g. the zero baseline) aligns to gt's centroid.
    scale = np.where(norm > 0, (s * D).sum(-1) / np.where(norm > 0, norm, 1.0), 0.0)
    return scale[..., None, None] * X0 @ R + my


def pa_per_joint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Errors after Procrustes alignment with scale: (B, J, 3) → (B, J) metres."""
    return np.linalg.norm(procrustes_align(pred, gt) - np.asarray(gt, np.float64), axis=-1)


def pose_report(pred: np.ndarray, gt: np.ndarray, sequences: list[str], joint_names: tuple[str, ...],
                root: int = 0) -> dict:
    """MPJPE and PA-MPJPE in mm: overall, per joint and per action (from the sequence names)."""
    mpjpe = per_joint_errors(pred, gt, root) * MM_PER_M
    pa = pa_per_joint_errors(pred, gt) * MM_PER_M
    actions = np.array([action_of(s) for s in sequences])
    report = {
        "samples": int(len(pred)),
        "mpjpe_mm": float(mpjpe.mean()),
        "pa_mpjpe_mm": float(pa.mean()),
        "per_joint": {n: {"mpjpe_mm": float(mpjpe[:, j].mean()), "pa_mpjpe_mm": float(pa[:, j].mean())}
                      for j, n in enumerate(joint_names)},
        "per_action": {},
    }
    for a in sorted(set(actions.tolist())):
        m = actions == a
        report["per_action"][a] = {"samples": int(m.sum()), "mpjpe_mm": float(mpjpe[m].mean()),
                                   "pa_mpjpe_mm": float(pa[m].mean())}
    return report


def format_table(report: dict) -> str:
    """A plain-text table of a pose_report (per action, then per joint, then overall)."""
    lines = [f"{'':<16}{'samples':>8}{'MPJPE':>10}{'PA-MPJPE':>10}   (mm, root-relative)"]
    for a, r in report["per_action"].items():
        lines.append(f"{a:<16}{r['samples']:>8}{r['mpjpe_mm']:>10.1f}{r['pa_mpjpe_mm']:>10.1f}")
    lines.append("-" * 44)
    for j, r in report["per_joint"].items():
        lines.append(f"{j:<16}{'':>8}{r['mpjpe_mm']:>10.1f}{r['pa_mpjpe_mm']:>10.1f}")
    lines.append("-" * 44)
    lines.append(f"{'all':<16}{report['samples']:>8}{report['mpjpe_mm']:>10.1f}{report['pa_mpjpe_mm']:>10.1f}")
    return "\n".join(lines)
