"""The synthetic release's ``MySegmentsMat`` masks: official boxes and background subtraction.

``ground_truth_bb`` follows the official recipe on the written mocap
(:func:`pipeline.release.masks.bb_rectangles`); ``ground_truth_bs`` is the rendered
person's silhouette, optionally with the defects of real background subtraction (holes, a
shadow at the feet, speckle, now and then a missed limb), then reduced to its largest
connected component as ``H36MMyBGMask`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SilhouetteDefects:
    """How strongly the synthetic background subtraction errs (all 0: the exact silhouette)."""

    holes: int = 3
    """Holes punched into the silhouette per frame (discs of 1-2 % of the body height)."""
    shadow: float = 0.12
    """Height of the shadow ellipse at the feet as a share of the body height (0: none)."""
    speckle: float = 0.002
    """Share of the pixels around the body flipped to foreground (isolated: dropped by the
    largest-component step unless they touch the body)."""
    missed_limb: float = 0.05
    """Chance per frame that an extremity (the point farthest from the centroid) is lost."""


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask (all False when empty)."""
    import cv2

    out = np.zeros(mask.shape, dtype=bool)
    work = mask.astype(np.uint8)
    x, y, w, h = cv2.boundingRect(work)  # label only the occupied box: a person is a small part
    if w == 0 or h == 0:
        return out
    count, labels, stats, _ = cv2.connectedComponentsWithStats(work[y:y + h, x:x + w], connectivity=8)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    out[y:y + h, x:x + w] = labels == biggest
    return out


def background_subtraction(silhouette: np.ndarray, defects: SilhouetteDefects | None,
                           rng: np.random.Generator) -> np.ndarray:
    """A ``ground_truth_bs`` mask from the exact silhouette (H, W) bool."""
    import cv2

    mask = silhouette.copy()
    if defects is not None and mask.any():
        ys, xs = np.nonzero(silhouette)
        height = ys.max() - ys.min() + 1
        work = mask.astype(np.uint8)
        if defects.missed_limb > 0 and rng.random() < defects.missed_limb:
            far = np.argmax((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2)
            cv2.circle(work, (int(xs[far]), int(ys[far])), max(2, int(0.12 * height)), 0, -1)
        for _ in range(defects.holes):
            i = rng.integers(len(xs))
            cv2.circle(work, (int(xs[i]), int(ys[i])), max(1, int(rng.uniform(0.01, 0.02) * height)), 0, -1)
        if defects.shadow > 0:
            feet = ys >= ys.max() - 0.03 * height
            cx, cy = int(xs[feet].mean()), int(ys.max())
            axes = (max(2, int(0.25 * height)), max(1, int(defects.shadow * height / 2)))
            cv2.ellipse(work, (cx, cy), axes, 0, 0, 360, 1, -1)
        if defects.speckle > 0:
            y0, y1 = max(0, ys.min() - height // 4), min(mask.shape[0], ys.max() + height // 4)
            x0, x1 = max(0, xs.min() - height // 4), min(mask.shape[1], xs.max() + height // 4)
            noise = rng.random((y1 - y0, x1 - x0)) < defects.speckle
            work[y0:y1, x0:x1] |= noise.astype(np.uint8)
        mask = work.astype(bool)
    return largest_component(mask)
