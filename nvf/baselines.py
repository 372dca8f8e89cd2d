"""The numbers that give a model's MPJPE meaning: baselines on the same samples.

- **zero**: every joint at the root (a root-relative prediction of all zeros);
- **mean pose**: the TRAINING split's mean root-relative pose (camera frame), placed at the
  sample's root; the statistics are computed once from the training shards and stored with
  the run (RUN/train_stats.json and inside the checkpoint);
- **oracle**: the voting decoder (nvf/vote.py) applied to the stored ground-truth SDF and votes
  at the stored points: what the decoder gives when the network is perfect (< 1 mm).

All poses are (S, J, 3) metres, camera frame; joint 0 is the root (pelvis).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nvf.errors import NVFError
from sampling.shards import ShardReader, read_index

TRAIN_STATS = "train_stats.json"


def split_joints(split_dir) -> np.ndarray:
    """All target joints of a split: (S, J, 3) float64, camera frame, metres (no images read)."""
    split_dir = Path(split_dir)
    index = read_index(split_dir)
    parts = []
    for shard in index["shards"]:
        with ShardReader(split_dir / shard["name"]) as reader:
            parts.append(np.asarray(reader.file["joints"][...], np.float64))
    if not parts:
        raise NVFError(f"{split_dir}: no samples")
    return np.concatenate(parts)


def training_stats(split_dir) -> dict:
    """JSON-able statistics of a training split: sample count, joint names, mean and standard
    deviation of the root-relative pose (J, 3) in metres, camera frame, and the shards' schema
    version and config."""
    from fitting.joint_sets import get_joint_set

    split_dir = Path(split_dir)
    joints = split_joints(split_dir)
    rel = joints - joints[:, :1]
    index = read_index(split_dir)
    names = get_joint_set(index["config"]["joint_set"]).names
    return {"split": split_dir.name, "samples": int(len(joints)), "joint_names": list(names),
            "mean_root_relative_m": rel.mean(0).tolist(), "std_root_relative_m": rel.std(0).tolist(),
            # what evaluate compares an evaluation split with (crop, points, sampler, joint set)
            "shards": {"schema_version": index["schema_version"], "config": index["config"]}}


def read_training_stats(run_dir) -> dict:
    """RUN/train_stats.json (written by ``train``)."""
    path = Path(run_dir) / TRAIN_STATS
    if not path.is_file():
        raise NVFError(f"{path}: missing (a run trained before training statistics were stored; "
                       "train it again)")
    return json.loads(path.read_text())


def zero_pose(gt: np.ndarray) -> np.ndarray:
    """Every joint at the sample's root: (S, J, 3) from gt (S, J, 3)."""
    return np.repeat(gt[:, :1], gt.shape[1], axis=1)


def mean_pose(gt: np.ndarray, stats: dict) -> np.ndarray:
    """The training mean root-relative pose placed at each sample's root: (S, J, 3)."""
    mean = np.asarray(stats["mean_root_relative_m"], np.float64)
    if mean.shape != gt.shape[1:]:
        raise NVFError(f"training statistics hold {mean.shape[0]} joints, the split {gt.shape[1]}")
    return gt[:, :1] + mean
