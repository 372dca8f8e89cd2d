"""Writing H3WB splits: poses → the JSON files, the VideoPose3D-style npz and the manifests.

Knows nothing of the work dir: ``pipeline.stages.h3wb`` collects the poses from it and calls
``write_split`` and ``update_manifest``. Formats and layout: ``pipeline.h3wb.format``.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.zipfiles import write_npz
from pipeline.store import atomic_path, atomic_write_json


@dataclass(frozen=True)
class Pose:
    """One fitted mocap frame and the cameras that see it."""

    subject: str
    sequence: str
    """Sequence folder name, e.g. "Walking_1"."""
    basename: str
    """Release basename, e.g. "Walking 1" (the VideoPose3D-style npz is keyed by it)."""
    frame: int
    """0-based mocap frame index."""
    cameras: tuple
    """pipeline.release.cameras.Camera of each sample, in sequence.json order."""
    keypoints_world: np.ndarray
    """(133, 3) float64 COCO-WholeBody keypoints, world metres."""
    boxes: tuple | None = None
    """Per camera (``cameras`` order) the release's official ground_truth_bb box (4,) int
    ``x_min, y_min, x_max, y_max`` or None; None: every box from the keypoints."""


# --- samples -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    id: str
    pose_index: int
    pose: Pose
    camera: object
    keypoints_3d: np.ndarray
    """(133, 3) R @ X in mm."""
    keypoints_2d: np.ndarray
    """(133, 2) pixels."""
    bbox: np.ndarray
    image_path: str


def iter_samples(poses: list[Pose]) -> Iterator[Sample]:
    """Every (pose, camera) sample with consecutive ids, cameras of a pose together."""
    from pipeline.h3wb.format import bbox_from_keypoints, h3wb_keypoints, iter_ids

    for p, (pose, ids) in enumerate(zip(poses, iter_ids(len(q.cameras) for q in poses), strict=True)):
        R = np.stack([c.R for c in pose.cameras])
        t = np.stack([c.t for c in pose.cameras])
        K = np.stack([c.K for c in pose.cameras])
        kp3d, kp2d = h3wb_keypoints(pose.keypoints_world[None], R, t, K)
        for c, camera in enumerate(pose.cameras):
            yield Sample(
                id=str(ids[c]), pose_index=p, pose=pose, camera=camera,
                keypoints_3d=kp3d[c], keypoints_2d=kp2d[c],
                bbox=(pose.boxes[c] if pose.boxes is not None and pose.boxes[c] is not None
                      else bbox_from_keypoints(kp2d[c], camera.width, camera.height)),
                image_path=f"{pose.subject}_{pose.sequence}.{camera.id}_{pose.frame + 1:06d}.jpg",
            )


def _records(poses, make, keep=lambda s: True):
    for s in iter_samples(poses):
        if keep(s):
            yield s.id, make(s)


def write_split(split: str, poses: list[Pose], out_dir: Path, seed: int,
                sequence_poses: list[Pose] | None = None) -> dict:
    """Write one split's JSON files and npz into ``out_dir``; return what the manifest needs.

    ``sequence_poses`` (default ``poses``) go to the VideoPose3D-style npz: every fitted frame
    of each sequence, so temporal loaders (H3WB's ``seq_len=27``) keep the sequences."""
    from pipeline.h3wb.format import (
        apply_mask,
        draw_i2d_mask,
        sample_record,
        task_of_test_pose,
        write_records_atomic,
    )

    files: dict[str, int] = {}
    out_dir.mkdir(parents=True, exist_ok=True)

    def write(name, make, keep=lambda s: True):
        files[name] = write_records_atomic(out_dir / name, _records(poses, make, keep))

    def task(s):
        return task_of_test_pose(s.pose_index)

    def masked(s):
        visible, _ = draw_i2d_mask(seed, int(s.id))
        return sample_record(keypoints_2d=apply_mask(s.keypoints_2d, visible), visibility=visible)

    def truth_i2d(s):
        visible, _ = draw_i2d_mask(seed, int(s.id))
        return sample_record(keypoints_2d=s.keypoints_2d, keypoints_3d=s.keypoints_3d,
                             visibility=visible)

    if split == "train":
        write("2Dto3D_train.json",
              lambda s: sample_record(keypoints_2d=s.keypoints_2d, keypoints_3d=s.keypoints_3d))
        write("RGBto3D_train.json",
              lambda s: sample_record(image_path=s.image_path, bbox=s.bbox, keypoints_3d=s.keypoints_3d))
    else:
        is_2d, is_i2d = (lambda s: task(s) == "2D"), (lambda s: task(s) == "I2D")
        write("2Dto3D_test_2d.json", lambda s: sample_record(keypoints_2d=s.keypoints_2d), is_2d)
        write("I2Dto3D_test_2d.json", masked, is_i2d)
        write("RGBto3D_test_img.json", lambda s: sample_record(image_path=s.image_path, bbox=s.bbox))
        write("2Dto3D_test_3d.json",
              lambda s: sample_record(keypoints_2d=s.keypoints_2d, keypoints_3d=s.keypoints_3d), is_2d)
        write("I2Dto3D_test_3d.json", truth_i2d, is_i2d)
        write("RGBto3D_test_3d.json",
              lambda s: sample_record(image_path=s.image_path, bbox=s.bbox, keypoints_3d=s.keypoints_3d))
    write_videopose3d_npz(out_dir / f"videopose3d_{split}.npz", poses if sequence_poses is None else sequence_poses)
    return {"files": files, "provenance": _provenance(split, poses, seed)}


def _provenance(split: str, poses: list[Pose], seed: int) -> dict:
    from pipeline.h3wb.format import MASK_STRATEGIES, draw_i2d_mask, task_of_test_pose

    columns = ["id", "subject", "sequence", "camera", "frame"]
    if split == "test":
        columns += ["task", "mask"]
    rows = []
    masks = dict.fromkeys(MASK_STRATEGIES, 0)
    for s in iter_samples(poses):
        row = [s.id, s.pose.subject, s.pose.sequence, s.camera.id, s.pose.frame]
        if split == "test":
            task = task_of_test_pose(s.pose_index)
            strategy = draw_i2d_mask(seed, int(s.id))[1] if task == "I2D" else None
            if strategy:
                masks[strategy] += 1
            row += [task, strategy]
        rows.append(row)
    out = {"columns": columns, "rows": rows}
    if split == "test":
        out["i2d_masks"] = masks
    return out


# --- VideoPose3D-style npz -------------------------------------------------------------------------


def videopose3d_data(poses: list[Pose]) -> tuple[dict, dict]:
    """``(train_data, metadata)`` as H3WB's ``prepare_data_h3wb.py`` reads them.

    ``train_data[subject][basename]``: ``global_3d`` (T, 133, 3) world metres, ``frame_id``
    (T,) 0-based mocap frames, and per camera id ``camera_3d`` (T, 133, 3) camera-frame metres
    (``R X + t``) and ``pose_2d`` (T, 133, 2) undistorted pixels (all float32).
    ``metadata``: ``left_side`` / ``right_side`` / ``face`` keypoint indices and
    ``metadata[subject][camera id]`` = the camera (K, dist, R, t, size).
    """
    from fitting.joint_sets import COCOWB133
    from pipeline.h3wb.format import FACE
    from pipeline.release.cameras import cam_from_world, project_pinhole

    grouped: dict[tuple[str, str], list[Pose]] = {}
    for pose in poses:
        grouped.setdefault((pose.subject, pose.basename), []).append(pose)
    train_data: dict = {}
    metadata: dict = {
        "left_side": [i for i, n in enumerate(COCOWB133.names) if n.startswith("left_")],
        "right_side": [i for i, n in enumerate(COCOWB133.names) if n.startswith("right_")],
        "face": list(range(FACE.start, FACE.stop)),
        "units": "3D in metres (global_3d: world, camera_3d: camera = R X + t), 2D in pixels",
    }
    for (subject, basename), group in grouped.items():
        world = np.stack([p.keypoints_world for p in group])
        action = {"global_3d": world.astype(np.float32),
                  "frame_id": np.array([p.frame for p in group], dtype=np.int64)}
        for camera in group[0].cameras:
            cam = cam_from_world(world, camera.R, camera.t)
            action[camera.id] = {"camera_3d": cam.astype(np.float32),
                                 "pose_2d": project_pinhole(cam, camera.K).astype(np.float32)}
            metadata.setdefault(subject, {})[camera.id] = camera.to_json()
        train_data.setdefault(subject, {})[basename] = action
    return train_data, metadata


VIDEOPOSE3D_DATA_KEY = "train_data"
"""The key of the poses in every ``videopose3d_<split>.npz``, the test split's included: H3WB's
loader (``utils/prepare_data_h3wb.py``, ``Human3WBDataset.__init__``) reads
``np.load(path)['train_data']`` whatever the file, and splits by subject afterwards; a
``test_data`` key would make the only public reader of this format fail on the test file.
(VideoPose3D's own ``data_3d_h36m.npz`` is another layout, ``positions_3d``.)"""


def write_videopose3d_npz(path: Path, poses: list[Pose]) -> None:
    """``np.savez``-compatible file with ``VIDEOPOSE3D_DATA_KEY`` and ``metadata`` (pickled
    dicts, as H3WB's; load with ``allow_pickle=True``), written with fixed timestamps
    (byte-identical)."""
    train_data, metadata = videopose3d_data(poses)
    arrays = {}
    for name, value in (("metadata", metadata), (VIDEOPOSE3D_DATA_KEY, train_data)):
        arrays[name] = np.empty((), dtype=object)
        arrays[name][()] = value
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write_npz(fh, arrays, allow_pickle=True)


FORMAT = "H3WB (github.com/wholebody3d/wholebody3d); keypoints cocowb133"


def update_manifest(h3wb_dir: Path, split: str, manifest: dict) -> dict:
    """Put one split's manifest into ``manifest.json`` (both splits; written under a file lock,
    since the split units may finish at the same time on different workers)."""
    h3wb_dir.mkdir(parents=True, exist_ok=True)
    path = h3wb_dir / "manifest.json"
    with open(h3wb_dir / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            merged = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            merged = {}  # a damaged manifest is rebuilt from the splits written from now on
        splits = {**merged.get("splits", {}), split: manifest}
        merged = {"format": FORMAT, "counts": {k: m["counts"] for k, m in splits.items()},
                  "splits": splits}
        atomic_write_json(path, merged)
    return merged


