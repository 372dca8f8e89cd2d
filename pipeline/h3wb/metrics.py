"""H3WB's metrics (as the official ``test_leaderboard.py`` computes them) and scoring a
prediction file against a ground-truth file (``h36m-nvf h3wb-eval``)."""

from __future__ import annotations

import numpy as np

from pipeline.errors import DataError
from pipeline.h3wb.format import (
    BODY,
    FACE,
    HANDS,
    LEFT_HAND,
    LEFT_HAND_ROOT,
    NOSE,
    NUM_KEYPOINTS,
    PELVIS_PAIR,
    RIGHT_HAND,
    RIGHT_HAND_ROOT,
    keypoints_array,
    read_h3wb_json,
)


def _mean_norm(diff) -> float:
    return float(np.linalg.norm(diff, axis=-1).mean())


def h3wb_metrics(pred, gt) -> dict[str, float]:
    """H3WB's errors in mm (as the official ``test_leaderboard.py`` computes them).

    pred, gt (N, 133, 3) millimetres, any camera-aligned frame. Both are aligned on the pelvis
    (mean of keypoints 11 and 12): ``all`` over the 133, ``body`` over [0:23],
    ``face_pelvis`` / ``hands_pelvis`` over [23:91] / [91:133]; then ``face`` aligned on the
    nose (0) and ``hands`` aligned on each hand's root (91, 112), reported as (left + right) / 2.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.shape[-2:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"expected two (N, 133, 3) arrays, got {pred.shape} and {gt.shape}")
    diff = pred - gt
    diff = diff - diff[..., PELVIS_PAIR, :].mean(axis=-2, keepdims=True)
    face = diff[..., FACE, :] - diff[..., NOSE : NOSE + 1, :]
    left = diff[..., LEFT_HAND, :] - diff[..., LEFT_HAND_ROOT : LEFT_HAND_ROOT + 1, :]
    right = diff[..., RIGHT_HAND, :] - diff[..., RIGHT_HAND_ROOT : RIGHT_HAND_ROOT + 1, :]
    return {
        "all": _mean_norm(diff),
        "body": _mean_norm(diff[..., BODY, :]),
        "face": _mean_norm(face),
        "hands": (_mean_norm(left) + _mean_norm(right)) / 2,
        "face_pelvis": _mean_norm(diff[..., FACE, :]),
        "hands_pelvis": _mean_norm(diff[..., HANDS, :]),
    }


METRIC_LABELS = {
    "all": "whole body (133), pelvis-aligned",
    "body": "body + feet [0:23], pelvis-aligned",
    "face": "face [23:91], nose-aligned",
    "hands": "hands [91:133], root-aligned, (L+R)/2",
    "face_pelvis": "face [23:91], pelvis-aligned",
    "hands_pelvis": "hands [91:133], pelvis-aligned",
}


PRED_UNITS = {"mm": 1.0, "m": 1000.0}
"""Units a prediction file may be in → factor to millimetres."""


def _spread(keypoints: np.ndarray) -> float:
    """Median distance of the keypoints from their pelvis: the body's size in the file's unit."""
    centred = keypoints - keypoints[..., PELVIS_PAIR, :].mean(axis=-2, keepdims=True)
    return float(np.median(np.linalg.norm(centred, axis=-1)))


def detect_units(pred: np.ndarray, gt_mm: np.ndarray) -> str | None:
    """"mm" or "m" when the predictions' body size is that of the ground truth (mm) or a
    thousandth of it (within a factor 3 either way); None when it is neither."""
    ratio = _spread(pred) / max(_spread(gt_mm), 1e-12)
    for unit, factor in PRED_UNITS.items():
        if 1 / 3 < ratio * factor < 3:
            return unit
    return None


def evaluate_files(pred_path, gt_path, pred_units: str = "auto") -> dict:
    """Score an H3WB prediction file against a ground-truth file (every GT id must be predicted).

    ``pred_units``: "mm", "m" (converted to mm) or "auto": the unit is detected from the
    predictions' body size against the ground truth's, and anything but millimetres is an
    error that says which ``--pred-units`` to pass (never converted silently).
    Returns ``{"samples": N, "pred": …, "gt": …, "pred_units": …, "mpjpe_mm": {metric: mm}}``.
    """
    if pred_units not in ("auto", *PRED_UNITS):
        raise ValueError(f"pred_units {pred_units!r}: use auto, mm or m")
    gt = read_h3wb_json(gt_path)
    pred = read_h3wb_json(pred_path)
    if not gt:
        raise DataError(f"{gt_path}: holds no samples")
    ids = sorted(gt, key=_id_sort_key)
    truth = keypoints_array(gt, ids, "keypoints_3d", gt_path)
    guess = keypoints_array(pred, ids, "keypoints_3d", pred_path)
    if not np.isfinite(guess).all():
        raise DataError(f"{pred_path}: holds non-finite keypoints")
    if pred_units == "auto":
        found = detect_units(guess, truth)
        if found is None:
            raise DataError(f"{pred_path}: the predicted bodies are {_spread(guess) / _spread(truth):.3g} times "
                            "the size of the ground truth's: neither millimetres nor metres")
        if found != "mm":
            raise DataError(f"{pred_path}: keypoints look like metres (bodies 1/1000 of the ground "
                            f"truth's size in mm); pass --pred-units m to convert them")
        pred_units = "mm"
    guess = guess * PRED_UNITS[pred_units]
    return {"samples": len(ids), "pred": str(pred_path), "gt": str(gt_path), "pred_units": pred_units,
            "mpjpe_mm": h3wb_metrics(guess, truth)}


def _id_sort_key(sample_id: str):
    return (0, int(sample_id), "") if sample_id.isdigit() else (1, 0, sample_id)


def format_metrics_table(result: dict) -> str:
    """A plain-text table of :func:`evaluate_files`' result."""
    width = max(map(len, METRIC_LABELS.values()))
    lines = [f"H3WB MPJPE over {result['samples']} samples", f"{'metric':<{width}}  {'mm':>9}"]
    lines += [f"{METRIC_LABELS[k]:<{width}}  {v:9.2f}" for k, v in result["mpjpe_mm"].items()]
    return "\n".join(lines)
