"""The ``h3wb`` stage: H3WB-style whole-body splits from the SMPL-X fits (unit = split).

Reads ``WORK/extract/<S>/<seq>/sequence.json`` (cameras), ``WORK/fit/<S>/<seq>.npz`` (SMPL-X
parameters per fitted mocap frame, world frame, metres) and the extracted frames in
``WORK/images/<S>/``; writes ``WORK/h3wb/`` (file names and layout as H3WB's, see
``pipeline/h3wb.py``):

- train: ``2Dto3D_train.json`` (2D + 3D), ``RGBto3D_train.json`` (image, bbox, 3D; same ids),
  ``videopose3d_train.npz``, ``manifest_train.json``;
- test: ``2Dto3D_test_2d.json`` / ``I2Dto3D_test_2d.json`` (inputs of the 2D and I2D tasks:
  alternate whole poses), ``RGBto3D_test_img.json`` (every id), the ground truth
  ``2Dto3D_test_3d.json``, ``I2Dto3D_test_3d.json``, ``RGBto3D_test_3d.json``,
  ``videopose3d_test.npz``, ``manifest_test.json``;
- ``manifest.json``: both splits' manifests (each split unit merges its own in, under a lock).

A pose is one fitted mocap frame whose image exists for every selected camera; its samples
(one per camera, in sequence.json order) get consecutive ids, so with four cameras samples
4k..4k+3 are one pose. Frames are taken every ``stride``-th among those with images, then
frames whose fit MPJPE exceeds ``max_fit_error_mm`` are dropped and counted.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.selection import Selection
from pipeline.stages.base import BODY_MODEL_OPTION, Stage, StageOption, Unit

SPLIT_FILES = {
    "train": ("2Dto3D_train.json", "RGBto3D_train.json", "videopose3d_train.npz",
              "manifest_train.json"),
    "test": ("2Dto3D_test_2d.json", "I2Dto3D_test_2d.json", "RGBto3D_test_img.json",
             "2Dto3D_test_3d.json", "I2Dto3D_test_3d.json", "RGBto3D_test_3d.json",
             "videopose3d_test.npz", "manifest_test.json"),
}
SMPLX_PARAM_KEYS = ("global_orient", "body_pose", "transl", "left_hand_pose", "right_hand_pose",
                    "jaw_pose", "leye_pose", "reye_pose", "expression")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""Fixed member timestamp: np.savez stamps the current time, which breaks byte-identity."""


@dataclass(frozen=True)
class H3WBConfig:
    """Options of the h3wb stage."""

    selection: Selection = field(default_factory=Selection)
    """Actions, cameras, frame range and stride to take (subjects come from train / test)."""
    train: str = "S1,S5,S6,S7"
    """Comma-separated training subjects (H3WB: S1,S5,S6,S7); empty for none."""
    test: str = "S8"
    """Comma-separated test subjects (H3WB: S8); empty for none."""
    max_fit_error_mm: float = 50.0
    """Frames whose fit MPJPE to the mocap joints exceeds this (mm) are left out."""
    seed: int = 0
    """Seed of the I2D masks (each drawn from a generator seeded by (seed, sample id))."""
    body_model: str = "synthetic"
    """SMPL-X file or folder, or 'synthetic' (the model generated into WORK/bodymodel)."""
    batch_size: int = 256
    """Frames per SMPL-X forward pass."""


JointsFn = Callable[[dict], np.ndarray]
"""Fit parameters of n frames (SMPL-X forward kwargs, numpy) → (n, 144, 3) world metres."""


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


# --- reading the work dir ------------------------------------------------------------------------


def parse_subjects(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def split_subjects(config: H3WBConfig) -> dict[str, tuple[str, ...]]:
    """``{"train": …, "test": …}`` narrowed by ``--subjects`` (splits left without subjects
    omitted); DataError when a subject is in both."""
    wanted = config.selection.wants_subject
    splits = {name: tuple(s for s in parse_subjects(text) if wanted(s))
              for name, text in (("train", config.train), ("test", config.test))}
    both = set(splits["train"]) & set(splits["test"])
    if both:
        raise DataError(f"h3wb: subjects {', '.join(sorted(both))} are in both train and test")
    return {name: subjects for name, subjects in splits.items() if subjects}


def read_sequence(path: Path, selection: Selection) -> dict:
    """sequence.json → ``{"basename", "cameras": (Camera, …)}`` (selected cameras only)."""
    from pipeline.release.cameras import Camera

    try:
        data = json.loads(Path(path).read_text())
        cameras = tuple(Camera.from_json(c) for c in data["cameras"])
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a valid sequence.json ({e!r})") from None
    return {
        "basename": str(data.get("basename", Path(path).parent.name.replace("_", " "))),
        "action": data.get("action"),
        "cameras": tuple(c for c in cameras if selection.wants_camera(c.id)),
    }


def read_fit(path: Path) -> dict[str, np.ndarray]:
    """A fit npz as arrays; DataError naming the file if a key is missing or lengths differ."""
    try:
        with np.load(path) as npz:
            fit = {k: np.asarray(npz[k]) for k in ("betas", "frame_index", "mpjpe_mm", *SMPLX_PARAM_KEYS)}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except KeyError as e:
        raise DataError(f"{path}: fit file lacks {e}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable npz ({e})") from None
    count = len(fit["frame_index"])
    bad = [k for k in ("mpjpe_mm", *SMPLX_PARAM_KEYS) if len(fit[k]) != count]
    if bad:
        raise DataError(f"{path}: {', '.join(bad)} do not have {count} frames like frame_index")
    return fit


def sequences_of(work, subject: str, selection: Selection) -> list[str]:
    """Sequence folder names of ``subject`` under WORK/extract, sorted, filtered by actions."""
    folder = work.root / "extract" / subject
    if not folder.is_dir():
        return []  # a split subject absent from this release contributes no poses
    names = []
    for d in sorted(folder.iterdir()):
        if (d / "sequence.json").is_file() and selection.wants_sequence(
                _action_of(d / "sequence.json"), d.name):
            names.append(d.name)
    return names


def _action_of(path: Path) -> str:
    try:
        return str(json.loads(path.read_text()).get("action", ""))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a valid sequence.json ({e})") from None


# --- poses -------------------------------------------------------------------------------------


def select_frames(fit: dict, cameras, images: set[str], subject: str, sequence: str,
                  selection: Selection, max_fit_error_mm: float) -> tuple[np.ndarray, dict]:
    """Rows of ``fit`` to use, and the counts of what was left out and why.

    A fitted frame is a candidate when its mocap index is inside the selection's range and
    every camera has an extracted image; every ``stride``-th candidate is taken; those whose
    fit MPJPE exceeds the threshold (or is not finite) are then dropped.
    """
    frames = fit["frame_index"].astype(np.int64)
    order = np.argsort(frames, kind="stable")
    start, stop = selection.frames
    in_range = [t for t in order if frames[t] >= start and (stop is None or frames[t] < stop)]
    with_images = [t for t in in_range
                   if all(f"{subject}_{sequence}.{c.id}_{frames[t] + 1:06d}.jpg" in images
                          for c in cameras)]
    strided = np.array(with_images[:: selection.stride], dtype=np.int64)
    error = fit["mpjpe_mm"][strided].astype(np.float64)
    good = np.isfinite(error) & (error <= max_fit_error_mm)
    counts = {"fitted": len(frames), "in_range": len(in_range), "with_images": len(with_images),
              "strided": len(strided), "excluded_fit_error": int((~good).sum()),
              "kept": int(good.sum())}
    return strided[good], counts


def collect_poses(work, subjects, config: H3WBConfig, joints_fn: JointsFn) -> tuple[list[Pose], list[dict]]:
    """Every pose of ``subjects`` in order (subject, sequence name, frame) and per-sequence counts."""
    from pipeline.h3wb.format import cocowb_from_smplx

    poses: list[Pose] = []
    report: list[dict] = []
    selection = config.selection
    for subject in subjects:
        image_dir = work.root / "images" / subject
        images = set(p.name for p in image_dir.iterdir()) if image_dir.is_dir() else set()
        for sequence in sequences_of(work, subject, selection):
            seq = read_sequence(work.root / "extract" / subject / sequence / "sequence.json", selection)
            fit_path = work.root / "fit" / subject / f"{sequence}.npz"
            entry = {"subject": subject, "sequence": sequence,
                     "cameras": [c.id for c in seq["cameras"]]}
            if not fit_path.is_file():
                report.append({**entry, "skipped": "no fit"})
                continue
            if not seq["cameras"]:
                report.append({**entry, "skipped": "no selected camera"})
                continue
            fit = read_fit(fit_path)
            rows, counts = select_frames(fit, seq["cameras"], images, subject, sequence,
                                         selection, config.max_fit_error_mm)
            report.append({**entry, **counts})
            if len(rows) == 0:
                continue
            keypoints = cocowb_from_smplx(_joints_of_rows(fit, rows, joints_fn, config.batch_size, fit_path))
            for row, kp in zip(rows, keypoints, strict=True):
                poses.append(Pose(subject, sequence, seq["basename"], int(fit["frame_index"][row]),
                                  seq["cameras"], kp.astype(np.float64)))
    return poses, report


def _joints_of_rows(fit: dict, rows: np.ndarray, joints_fn: JointsFn, batch_size: int, path) -> np.ndarray:
    out = []
    for s in range(0, len(rows), batch_size):
        r = rows[s : s + batch_size]
        params = {k: fit[k][r] for k in SMPLX_PARAM_KEYS}
        params["betas"] = np.broadcast_to(fit["betas"].reshape(1, -1), (len(r), fit["betas"].size))
        joints = np.asarray(joints_fn(params), dtype=np.float64)
        if joints.shape != (len(r), 144, 3):
            raise DataError(f"{path}: the body model gave joints of shape {joints.shape}, "
                            f"expected ({len(r)}, 144, 3) (use_face_contour=True)")
        out.append(joints)
    return np.concatenate(out)


def smplx_joints_fn(model_path: Path, device: str = "cpu") -> JointsFn:
    """The 144 smplx output joints of fit parameters, with the SMPL-X file ``model_path``."""
    import torch

    from fitting.bodymodel import load_body_model

    # batch_size 1: smplx expands its landmark tensors from the model's batch size to any input's
    model = load_body_model(model_path, device=device, use_face_contour=True)

    def joints(params: dict) -> np.ndarray:
        kwargs = {k: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float32, device=device)
                  for k, v in params.items()}
        with torch.no_grad():
            out = model(**kwargs, return_verts=True)
        return out.joints.detach().cpu().double().numpy()

    return joints


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
                bbox=bbox_from_keypoints(kp2d[c], camera.width, camera.height),
                image_path=f"{pose.subject}_{pose.sequence}.{camera.id}_{pose.frame + 1:06d}.jpg",
            )


def _records(poses, make, keep=lambda s: True):
    for s in iter_samples(poses):
        if keep(s):
            yield s.id, make(s)


def write_split(split: str, poses: list[Pose], out_dir: Path, seed: int) -> dict:
    """Write one split's JSON files and npz into ``out_dir``; return what the manifest needs."""
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
    write_videopose3d_npz(out_dir / f"videopose3d_{split}.npz", poses)
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


def write_videopose3d_npz(path: Path, poses: list[Pose]) -> None:
    """``np.savez``-compatible file with ``train_data`` and ``metadata`` (pickled dicts, as
    H3WB's; load with ``allow_pickle=True``), written with fixed timestamps (byte-identical)."""
    from pipeline.store import atomic_path

    train_data, metadata = videopose3d_data(poses)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, value in (("metadata", metadata), ("train_data", train_data)):
            buf = io.BytesIO()
            array = np.empty((), dtype=object)
            array[()] = value
            np.lib.format.write_array(buf, array, allow_pickle=True)
            zf.writestr(zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE), buf.getvalue())


# --- stage ---------------------------------------------------------------------------------------


def _work(work):
    from pipeline.store import WorkDir

    return work if isinstance(work, WorkDir) else WorkDir(Path(work))


def plan(config: H3WBConfig, work, *, with_body_model: bool = True) -> list:
    """One unit per split; inputs: the body model file and every sequence.json and fit npz of
    the split's subjects.

    The body model is resolved here, once (the synthetic one is written into WORK/bodymodel),
    so the split units do not race to generate it. The extracted images are not
    fingerprinted (hundreds of thousands of files): after re-extracting, run with ``--force``.
    """
    from dataclasses import asdict

    work = _work(work)
    model_path = None
    if with_body_model:
        from fitting.bodymodel import resolve_body_model

        model_path = resolve_body_model(config.body_model, work.root)
    units = []
    for split, subjects in split_subjects(config).items():
        inputs = {"body_model": model_path} if model_path else {}
        for subject in subjects:
            for sequence in sequences_of(work, subject, config.selection):
                inputs[f"{subject}/{sequence}/sequence"] = work.sequence_json(subject, sequence)
                fit = work.fit_sequence(subject, sequence)
                if fit.is_file():
                    inputs[f"{subject}/{sequence}/fit"] = fit
        params = {k: v for k, v in asdict(config).items() if k != "selection"}
        params["selection"] = config.selection.to_json()
        units.append(Unit(key=split, outputs=tuple(work.h3wb_dir / n for n in SPLIT_FILES[split]),
                          inputs=inputs, params={**params, "split": split, "subjects": list(subjects)},
                          payload={"work": str(work.root), "split": split, "subjects": subjects,
                                   "body_model": str(model_path) if model_path else None}))
    return units


def run_unit(unit, config: H3WBConfig, joints_fn: JointsFn | None = None) -> dict:
    """Build one split into WORK/h3wb: its files, ``manifest_<split>.json`` and its entry in
    ``manifest.json``. Returns the split's counts."""
    from pipeline.store import atomic_write_json

    work = _work(unit.payload["work"])
    split, subjects = unit.payload["split"], tuple(unit.payload["subjects"])
    if joints_fn is None:
        joints_fn = smplx_joints_fn(Path(unit.payload["body_model"]))
    poses, sequences = collect_poses(work, subjects, config, joints_fn)
    if not poses:
        raise DataError(f"{work.root}: no usable pose for the {split} split "
                        f"({', '.join(subjects)}): need fits, extracted images and fit errors "
                        f"under {config.max_fit_error_mm} mm")
    written = write_split(split, poses, work.h3wb_dir, config.seed)
    total = lambda key: sum(s.get(key, 0) for s in sequences)  # noqa: E731
    manifest = {
        "format": FORMAT,
        "split": split,
        "subjects": list(subjects),
        "seed": config.seed,
        "max_fit_error_mm": config.max_fit_error_mm,
        "selection": config.selection.to_json(),
        "body_model": config.body_model,
        "units": {"keypoints_3d": "mm, R_cam @ X_world", "keypoints_2d": "px, undistorted pinhole",
                  "bbox": "px, int", "frame": "0-based mocap frame"},
        "counts": {
            "poses": len(poses),
            "samples": sum(len(p.cameras) for p in poses),
            "frames_fitted": total("fitted"),
            "frames_without_images": total("in_range") - total("with_images"),
            "frames_after_stride": total("strided"),
            "excluded_fit_error": total("excluded_fit_error"),
            "sequences_skipped": sum(1 for s in sequences if "skipped" in s),
            "files": written["files"],
        },
        "sequences": sequences,
        "provenance": written["provenance"],
    }
    atomic_write_json(work.h3wb_dir / f"manifest_{split}.json", manifest)
    update_manifest(work.h3wb_dir, split, manifest)
    return {"split": split, **{k: v for k, v in manifest["counts"].items() if k != "files"}}


FORMAT = "H3WB (github.com/wholebody3d/wholebody3d); keypoints cocowb133"


def update_manifest(h3wb_dir: Path, split: str, manifest: dict) -> dict:
    """Put one split's manifest into ``manifest.json`` (both splits; written under a file lock,
    since the split units may finish at the same time on different workers)."""
    import fcntl

    from pipeline.store import atomic_write_json

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


def build_h3wb(work, config: H3WBConfig, joints_fn: JointsFn | None = None) -> dict:
    """Build every split in this process (no dask, no done-records); return ``manifest.json``."""
    work = _work(work)
    units = plan(config, work, with_body_model=joints_fn is None)
    if not units:
        raise DataError("h3wb: no train or test subjects given")
    if joints_fn is None:
        joints_fn = smplx_joints_fn(Path(units[0].payload["body_model"]))
    for unit in units:
        run_unit(unit, config, joints_fn)
    return json.loads((work.h3wb_dir / "manifest.json").read_text())


STAGE = Stage(
    name="h3wb",
    version="1",
    help="Build H3WB-style whole-body splits (2D→3D, I2D→3D, RGB→3D) from the SMPL-X fits.",
    config_type=H3WBConfig,
    plan=plan,
    run_unit=run_unit,
    default_stride=1,
    options=(
        StageOption("train", str, "Training subjects, comma-separated (H3WB: S1,S5,S6,S7)."),
        StageOption("test", str, "Test subjects, comma-separated (H3WB: S8)."),
        StageOption("max_fit_error_mm", float, "Leave out frames whose fit MPJPE exceeds this (mm)."),
        StageOption("seed", int, "Seed of the I2D masks."),
        BODY_MODEL_OPTION,
    ),
)
