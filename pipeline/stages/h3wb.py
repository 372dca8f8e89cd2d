"""The ``h3wb`` stage: H3WB-style whole-body splits from the SMPL-X fits (unit = split).

Reads ``WORK/extract/<S>/<seq>/sequence.json`` (cameras), ``WORK/fit/<S>/<seq>.npz`` (SMPL-X
parameters per fitted mocap frame, world frame, metres) and the extracted frames in
``WORK/images/<S>/``; writes ``WORK/h3wb/`` (file names and layout as H3WB's, see
``pipeline/h3wb.py``):

- train: ``2Dto3D_train.json`` (2D + 3D), ``RGBto3D_train.json`` (image, bbox, 3D; same ids),
  ``videopose3d_train.npz`` (every fitted frame of each sequence), ``manifest_train.json``;
- test: ``2Dto3D_test_2d.json`` / ``I2Dto3D_test_2d.json`` (inputs of the 2D and I2D tasks:
  alternate whole poses), ``RGBto3D_test_img.json`` (every id), the ground truth
  ``2Dto3D_test_3d.json``, ``I2Dto3D_test_3d.json``, ``RGBto3D_test_3d.json``,
  ``videopose3d_test.npz``, ``manifest_test.json``;
- ``manifest.json``: both splits' manifests (each split unit merges its own in, under a lock).

A pose is one fitted mocap frame whose image exists for every selected camera; its samples
(one per camera, in sequence.json order) get consecutive ids, so with four cameras samples
4k..4k+3 are one pose. Frames are taken every ``stride``-th among those with images, then
frames whose fit MPJPE exceeds ``max_fit_error_mm`` are dropped and counted. The RGB tasks'
``bbox`` is the release's official ground_truth_bb box where extract found one (``--bbox``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import (
    BodyModel,
    FitSequence,
    check_fit_model,
    extracted_sequences,
    read_fit_sequence,
    read_sequence_info,
    resolve_model,
)
from pipeline.errors import DataError, SelectionError
from pipeline.h3wb.writer import FORMAT, Pose, update_manifest, write_split
from pipeline.selection import Selection
from pipeline.stages.base import BODY_MODEL_OPTION, Stage, StageConfig, StageOption, Unit

SPLIT_FILES = {
    "train": ("2Dto3D_train.json", "RGBto3D_train.json", "videopose3d_train.npz",
              "manifest_train.json"),
    "test": ("2Dto3D_test_2d.json", "I2Dto3D_test_2d.json", "RGBto3D_test_img.json",
             "2Dto3D_test_3d.json", "I2Dto3D_test_3d.json", "RGBto3D_test_3d.json",
             "videopose3d_test.npz", "manifest_test.json"),
}


@dataclass(frozen=True)
class H3WBConfig(StageConfig):
    """Options of the h3wb stage (reads WORK; the selection's subjects narrow train / test)."""

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
    bbox: str = "official"
    """Source of the RGB tasks' ``bbox``: "official" (the release's ground_truth_bb boxes where
    a frame has one, else the keypoints' extent) or "keypoints" (always the keypoints')."""

    def __post_init__(self) -> None:
        if self.bbox not in BBOX_SOURCES:
            raise SelectionError(f"--bbox: unknown value {self.bbox!r}; use {', '.join(BBOX_SOURCES)}")


BBOX_SOURCES = ("official", "keypoints")
"""Values of ``H3WBConfig.bbox``."""

JointsFn = Callable[[dict], np.ndarray]
"""Fit parameters of n frames (SMPL-X forward kwargs, numpy) → (n, 144, 3) world metres."""


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


def sequences_of(work, subject: str, selection: Selection) -> list[str]:
    """Extracted sequence names of ``subject``, sorted, filtered by the selection's actions."""
    return [s for s in extracted_sequences(work, subject)
            if selection.wants_sequence(read_sequence_info(work.sequence_json(subject, s)).action, s)]


# --- poses -------------------------------------------------------------------------------------


def select_frames(fit: FitSequence, cameras, images: set[str], subject: str, sequence: str,
                  selection: Selection, max_fit_error_mm: float) -> tuple[np.ndarray, dict]:
    """Rows of ``fit`` to use, and the counts of what was left out and why.

    A fitted frame is a candidate when its mocap index is inside the selection's range and
    every camera has an extracted image; every ``stride``-th candidate is taken; those whose
    fit MPJPE exceeds the threshold (or is not finite) are then dropped.
    """
    frames = fit.frame_index
    order = np.argsort(frames, kind="stable")
    start, stop = selection.frames
    in_range = [t for t in order if frames[t] >= start and (stop is None or frames[t] < stop)]
    with_images = [t for t in in_range
                   if all(f"{subject}_{sequence}.{c.id}_{frames[t] + 1:06d}.jpg" in images
                          for c in cameras)]
    strided = np.array(with_images[:: selection.stride or 1], dtype=np.int64)
    counts_all = _usable_rows(fit, in_range, max_fit_error_mm)
    error = fit.mpjpe_mm[strided].astype(np.float64)
    good = np.isfinite(error) & (error <= max_fit_error_mm)
    counts = {"fitted": len(frames), "in_range": len(in_range), "with_images": len(with_images),
              "strided": len(strided), "excluded_fit_error": int((~good).sum()),
              "kept": int(good.sum()), "sequence_frames": len(counts_all)}
    return strided[good], counts


def _usable_rows(fit: FitSequence, rows, max_fit_error_mm: float) -> np.ndarray:
    """Rows (in frame order) whose fit error is finite and within the threshold."""
    rows = np.asarray(rows, dtype=np.int64)
    error = fit.mpjpe_mm[rows].astype(np.float64) if len(rows) else np.zeros(0)
    return rows[np.isfinite(error) & (error <= max_fit_error_mm)]


def sequence_rows(fit: FitSequence, selection: Selection, max_fit_error_mm: float) -> np.ndarray:
    """Every fitted row in the selection's frame range within the error threshold, frame
    order, images or not and without the stride: the VideoPose3D-style npz's frames."""
    frames = fit.frame_index
    order = np.argsort(frames, kind="stable")
    start, stop = selection.frames
    in_range = [t for t in order if frames[t] >= start and (stop is None or frames[t] < stop)]
    return _usable_rows(fit, in_range, max_fit_error_mm)


def official_boxes(info, cameras, frames) -> list[tuple | None]:
    """Per frame of ``frames``: per camera the release's ground_truth_bb box ((4,) int or None),
    or None when no camera has one. Each camera's mask file is opened once for all frames."""
    per_camera = []
    for camera in cameras:
        mask = info.mask("ground_truth_bb", camera.id)
        held = [f for f in frames if mask is not None and f < mask.frames]
        boxes = dict(zip(held, mask.boxes(held), strict=True)) if held else {}
        per_camera.append([boxes.get(f) for f in frames])
    by_frame = [tuple(column) for column in zip(*per_camera, strict=True)] if per_camera else [()] * len(frames)
    return [b if any(x is not None for x in b) else None for b in by_frame]


def collect_poses(work, subjects, config: H3WBConfig, joints_fn: JointsFn,
                  model: BodyModel | None = None, sequence_poses: list | None = None
                  ) -> tuple[list[Pose], list[dict]]:
    """Every pose of ``subjects`` in order (subject, sequence name, frame) and per-sequence counts.

    With ``model``, each fit must have been made with that model file (DataError otherwise).
    ``sequence_poses``, when given, receives every fitted frame of each sequence
    (:func:`sequence_rows`, for the VideoPose3D-style npz)."""
    from pipeline.h3wb.format import cocowb_from_smplx

    poses: list[Pose] = []
    report: list[dict] = []
    selection = config.selection
    for subject in subjects:
        image_dir = work.images_dir(subject)
        images = set(p.name for p in image_dir.iterdir()) if image_dir.is_dir() else set()
        for sequence in sequences_of(work, subject, selection):
            info = read_sequence_info(work.sequence_json(subject, sequence))
            cameras = tuple(c for c in info.cameras if selection.wants_camera(c.id))
            fit_path = work.fit_sequence(subject, sequence)
            entry = {"subject": subject, "sequence": sequence, "cameras": [c.id for c in cameras]}
            if not fit_path.is_file():
                report.append({**entry, "skipped": "no fit"})
                continue
            if not cameras:
                report.append({**entry, "skipped": "no selected camera"})
                continue
            fit = read_fit_sequence(fit_path)
            if model is not None:
                check_fit_model(model, [fit])
            rows, counts = select_frames(fit, cameras, images, subject, sequence,
                                         selection, config.max_fit_error_mm)
            report.append({**entry, **counts})
            every = sequence_rows(fit, selection, config.max_fit_error_mm) if sequence_poses is not None else rows
            every = np.union1d(every, rows) if len(rows) else every
            if len(every) == 0:
                continue
            keypoints = dict(zip(every.tolist(), cocowb_from_smplx(
                _joints_of_rows(fit, every, joints_fn, config.batch_size, fit_path)), strict=True))
            frames = [int(fit.frame_index[row]) for row in rows]
            boxes = official_boxes(info, cameras, frames) if config.bbox == "official" else [None] * len(frames)
            for row, frame, box in zip(rows, frames, boxes, strict=True):
                poses.append(Pose(subject, sequence, info.basename, frame, cameras,
                                  keypoints[int(row)].astype(np.float64), box))
            if sequence_poses is not None:
                for row in sorted(every.tolist(), key=lambda r: fit.frame_index[r]):
                    sequence_poses.append(Pose(subject, sequence, info.basename, int(fit.frame_index[row]),
                                               cameras, keypoints[row].astype(np.float64)))
    return poses, report


def _joints_of_rows(fit: FitSequence, rows: np.ndarray, joints_fn: JointsFn, batch_size: int, path) -> np.ndarray:
    out = []
    for s in range(0, len(rows), batch_size):
        r = rows[s : s + batch_size]
        params = fit.smplx_kwargs(r)
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
    model = resolve_model(config.body_model, work) if with_body_model else None
    model_path = model.path if model else None
    units = []
    for split, subjects in split_subjects(config).items():
        inputs = {"body_model": model_path} if model_path else {}
        for subject in subjects:
            for sequence in sequences_of(work, subject, config.selection):
                inputs[f"{subject}/{sequence}/sequence"] = work.sequence_json(subject, sequence)
                fit = work.fit_sequence(subject, sequence)
                if fit.is_file():
                    inputs[f"{subject}/{sequence}/fit"] = fit
        params = {k: v for k, v in asdict(config).items() if k not in ("selection", "h36m")}
        params["selection"] = config.selection.to_json()
        units.append(Unit(key=split, outputs=tuple(work.h3wb_dir / n for n in SPLIT_FILES[split]),
                          inputs=inputs, params={**params, "split": split, "subjects": list(subjects)},
                          payload={"work": str(work.root), "split": split, "subjects": subjects,
                                   "body_model": model}))
    return units


def run_unit(unit, config: H3WBConfig, joints_fn: JointsFn | None = None) -> dict:
    """Build one split into WORK/h3wb: its files, ``manifest_<split>.json`` and its entry in
    ``manifest.json``. Returns the split's counts."""
    from pipeline.store import atomic_write_json

    work = _work(unit.payload["work"])
    split, subjects = unit.payload["split"], tuple(unit.payload["subjects"])
    model = unit.payload["body_model"]
    if joints_fn is None:
        joints_fn = smplx_joints_fn(model.path)
    every_frame: list[Pose] = []
    poses, sequences = collect_poses(work, subjects, config, joints_fn, model, every_frame)
    if not poses:
        raise DataError(f"{work.root}: no usable pose for the {split} split "
                        f"({', '.join(subjects)}): need fits, extracted images and fit errors "
                        f"under {config.max_fit_error_mm} mm")
    written = write_split(split, poses, work.h3wb_dir, config.seed, every_frame)
    official = sum(b is not None for p in poses for b in (p.boxes or ()))
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
                  "bbox": "px, int, inclusive; the release's ground_truth_bb box (distorted video image) where "
                          "present, else the keypoints' extent", "frame": "0-based mocap frame"},
        "bbox": {"source": config.bbox, "official": official,
                 "from_keypoints": sum(len(p.cameras) for p in poses) - official},
        "videopose3d": {"frames": len(every_frame),
                        "note": "every fitted frame of each sequence within the frame range and the fit error "
                                "threshold (images or not, no stride)"},
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
    return {"split": split, **manifest["counts"]}  # "files": samples per file, for the summary


def build_h3wb(work, config: H3WBConfig, joints_fn: JointsFn | None = None) -> dict:
    """Build every split in this process (no dask, no done-records); return ``manifest.json``."""
    work = _work(work)
    units = plan(config, work, with_body_model=joints_fn is None)
    if not units:
        raise DataError("h3wb: no train or test subjects given")
    if joints_fn is None:
        joints_fn = smplx_joints_fn(units[0].payload["body_model"].path)
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
    stride_help=("--stride N takes every N-th of the fitted frames that have an extracted image in "
                 "every camera (default 1: all of them). Images exist only where extract kept them: "
                 "with extract's default stride 5, --stride 1 gives every 5th mocap frame and "
                 "--stride 2 every 10th. The manifest counts frames with images and after the stride."),
    options=(
        StageOption("train", str, "Training subjects, comma-separated (H3WB: S1,S5,S6,S7)."),
        StageOption("test", str, "Test subjects, comma-separated (H3WB: S8)."),
        StageOption("max_fit_error_mm", float, "Leave out frames whose fit MPJPE exceeds this (mm)."),
        StageOption("seed", int, "Seed of the I2D masks."),
        StageOption("bbox", str, "RGB-task boxes: official (ground_truth_bb where present) or keypoints."),
        BODY_MODEL_OPTION,
    ),
)
