"""H3WB (Human3.6M 3D WholeBody) format, I2D masks and metrics: pure functions.

The format (reference/README.md "H3WB", github.com/wholebody3d/wholebody3d):
``{"<id>": {"image_path", "bbox": {x_min, y_min, x_max, y_max}, "keypoints_2d": {"0": {x, y},
…}, "keypoints_3d": {"0": {x, y, z}, …}}}`` with 133 COCO-WholeBody keypoints. 3D is
``R_cam @ X_world`` in millimetres (rotated into the camera, not translated); 2D is the pinhole
projection ``K (R X + t)`` in pixels, without lens distortion.

Test ids split between the 2D and the I2D task the way the official loader reads them
(``test_leaderboard.py``): whole poses alternate, so with four cameras the 2D task holds ids
``8k..8k+3`` and the I2D task ids ``8k+4..8k+7``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from common.units import MM_PER_M
from pipeline.errors import DataError
from pipeline.release.cameras import project_pinhole
from pipeline.store import atomic_path

NUM_KEYPOINTS = 133
BODY = slice(0, 23)
"""Body and feet keypoints (COCO body 0–16, feet 17–22)."""
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)
HANDS = slice(91, 133)
PELVIS_PAIR = (11, 12)
"""The pelvis is the mean of the left and right hip."""
NOSE = 0
LEFT_HAND_ROOT = 91
RIGHT_HAND_ROOT = 112

DECIMALS = 4
"""Digits kept in the JSON files: 1e-4 px and 1e-4 mm, far below any annotation error."""

MASK_STRATEGIES = ("random", "face", "left_hand", "right_hand")
MASK_STRATEGY_PROBS = (0.4, 0.2, 0.2, 0.2)
KEYPOINT_MASK_PROB = 0.25
"""H3WB's I2D masking: 40% of samples mask each keypoint with probability 0.25, 20% mask the
whole face, 20% the left hand, 20% the right hand."""
_MASK_EDGES = (*np.cumsum(MASK_STRATEGY_PROBS)[:-1].tolist(), np.inf)
_MASK_PARTS = {"face": FACE, "left_hand": LEFT_HAND, "right_hand": RIGHT_HAND}

TEST_TASKS = ("2D", "I2D")


# --- geometry -----------------------------------------------------------------------------------


def cocowb_from_smplx(joints):
    """(..., 144, 3) smplx output joints (use_face_contour=True) → (..., 133, 3) COCO-WholeBody."""
    from fitting.joint_sets import cocowb133_from_smplx144

    if joints.shape[-2] != 144:
        raise ValueError(f"expected 144 smplx joints, got shape {tuple(joints.shape)}")
    return joints[..., cocowb133_from_smplx144(), :]


def h3wb_keypoints(points_world, R, t, K):
    """The H3WB 3D and 2D keypoints of world points seen by one camera.

    points_world (..., J, 3) world metres; R (..., 3, 3), t (..., 3) cam_from_world (metres);
    K (..., 3, 3) pixels. Returns ``(keypoints_3d, keypoints_2d)``: (..., J, 3) ``R @ X`` in
    millimetres (rotated, not translated) and (..., J, 2) undistorted pinhole pixels of
    ``R @ X + t``.
    """
    R, t, K = R[..., None, :, :], t[..., None, :], K[..., None, :, :]
    rotated = (R @ points_world[..., None])[..., 0]
    keypoints_2d = project_pinhole(rotated + t, K)
    return rotated * MM_PER_M, keypoints_2d


def bbox_from_keypoints(keypoints_2d, width: int, height: int) -> np.ndarray:
    """(..., J, 2) pixels → (..., 4) int ``[x_min, y_min, x_max, y_max]``: the keypoints'
    floor/ceil extent clipped to the image (pixel centres 0..width-1, 0..height-1)."""
    keypoints_2d = np.asarray(keypoints_2d, dtype=np.float64)
    lo = np.floor(keypoints_2d.min(axis=-2))
    hi = np.ceil(keypoints_2d.max(axis=-2))
    upper = np.array([width - 1, height - 1], dtype=np.float64)
    lo, hi = np.clip(lo, 0, upper), np.clip(hi, 0, upper)
    return np.concatenate([lo, hi], axis=-1).astype(np.int64)


# --- I2D masks ----------------------------------------------------------------------------------


def draw_i2d_mask(seed: int, sample_id: int) -> tuple[np.ndarray, str]:
    """H3WB's I2D mask of one sample: ``(visible (133,) bool, strategy)``.

    Drawn from a generator seeded by ``(seed, sample_id)`` alone, so a sample's mask does not
    depend on which other samples exist. ``strategy`` is one of :data:`MASK_STRATEGIES`.
    """
    rng = np.random.default_rng([int(seed), int(sample_id)])
    u = rng.random(NUM_KEYPOINTS + 1)  # one call: u[0] picks the strategy, u[1:] the keypoints
    strategy = next(s for s, edge in zip(MASK_STRATEGIES, _MASK_EDGES, strict=True) if u[0] < edge)
    if strategy == "random":
        visible = u[1:] >= KEYPOINT_MASK_PROB
    else:
        visible = np.ones(NUM_KEYPOINTS, dtype=bool)
        visible[_MASK_PARTS[strategy]] = False
    return visible, strategy


def apply_mask(keypoints_2d, visible):
    """(..., 133, 2) pixels, (..., 133) bool → the keypoints with the masked ones set to 0."""
    return np.where(np.asarray(visible)[..., None], keypoints_2d, 0.0)


# --- JSON records -------------------------------------------------------------------------------


def keypoints_json(keypoints, axes: str) -> dict:
    """(J, len(axes)) array → ``{"0": {"x": …, …}, …}`` with :data:`DECIMALS` digits."""
    values = np.round(np.asarray(keypoints, dtype=np.float64), DECIMALS).tolist()
    return {str(j): dict(zip(axes, (v + 0.0 for v in row), strict=True))  # + 0.0 drops -0.0
            for j, row in enumerate(values)}


def sample_record(*, image_path: str | None = None, bbox=None, keypoints_2d=None,
                  keypoints_3d=None, visibility=None) -> dict:
    """One H3WB sample with the given fields, in H3WB's key order.

    bbox (4,) int pixels; keypoints_2d (133, 2) pixels; keypoints_3d (133, 3) millimetres;
    visibility (133,) bool (the I2D files' per-keypoint flag, 1 = visible).
    """
    record: dict = {}
    if image_path is not None:
        record["image_path"] = image_path
    if bbox is not None:
        record["bbox"] = dict(zip(("x_min", "y_min", "x_max", "y_max"), map(int, bbox), strict=True))
    if keypoints_2d is not None:
        record["keypoints_2d"] = keypoints_json(keypoints_2d, "xy")
    if keypoints_3d is not None:
        record["keypoints_3d"] = keypoints_json(keypoints_3d, "xyz")
    if visibility is not None:
        record["visibility"] = [int(bool(v)) for v in visibility]
    return record


def write_records_atomic(path: Path, records: Iterable[tuple[str, dict]]) -> int:
    """Stream ``(id, record)`` pairs into one JSON object, one sample per line; atomic.

    Streaming keeps memory flat for the 80k-sample files. Returns the number of records.
    """
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("{")
        for sample_id, record in records:
            f.write(",\n" if count else "\n")
            f.write(json.dumps(str(sample_id)) + ": ")
            f.write(json.dumps(record, separators=(", ", ": "), allow_nan=False))
            count += 1
        f.write("\n}\n")
    return count


def read_h3wb_json(path) -> dict:
    """An H3WB JSON file as ``{id: record}``; DataError naming the file if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataError(f"{path}: expected an object of samples {{id: {{...}}}}")
    return data


def keypoints_array(data: dict, ids: Iterable[str], key: str, path) -> np.ndarray:
    """(N, 133, C) float64 from ``data[id][key]`` (``keypoints_2d``: C=2, ``keypoints_3d``: C=3).

    DataError naming ``path`` for a missing id, a missing field or a wrong keypoint count.
    """
    axes = "xy" if key == "keypoints_2d" else "xyz"
    ids = list(ids)
    out = np.empty((len(ids), NUM_KEYPOINTS, len(axes)), dtype=np.float64)
    for n, sample_id in enumerate(ids):
        sample = data.get(sample_id)
        if sample is None:
            raise DataError(f"{path}: sample id {sample_id!r} is missing")
        keypoints = sample.get(key)
        if not isinstance(keypoints, dict):
            raise DataError(f"{path}: sample {sample_id!r} has no {key}")
        if len(keypoints) != NUM_KEYPOINTS:
            raise DataError(f"{path}: sample {sample_id!r} has {len(keypoints)} {key}, "
                            f"expected {NUM_KEYPOINTS}")
        try:
            out[n] = [[float(keypoints[str(j)][a]) for a in axes] for j in range(NUM_KEYPOINTS)]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: sample {sample_id!r} has a malformed {key} entry ({e!r})") from None
    return out


# --- splits -------------------------------------------------------------------------------------


def task_of_test_pose(pose_index: int) -> str:
    """Which test task a test pose (all its cameras) goes to: alternating 2D, I2D, 2D, …"""
    return TEST_TASKS[pose_index % 2]


def iter_ids(counts: Iterable[int]) -> Iterator[list[int]]:
    """Consecutive sample ids for poses with ``counts`` cameras each: [0..c0), [c0..c0+c1), …"""
    start = 0
    for count in counts:
        yield list(range(start, start + count))
        start += count
