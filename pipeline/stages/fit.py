"""Fit stage: SMPL-X pseudo-ground truth from the mocap joints (fitting.smplify).

Units (``plan``), per subject: "S9/shape" fits the subject's shape (betas), which all its
sequences share, on frames drawn from all of them; then one unit per selected sequence,
"S9/Walking_1", fits its poses with those betas and runs after the shape unit (``Unit.after``:
the runner starts it once the shape is written, and reruns it when the shape is refitted).
The sequences of a subject, and the subjects, fit in parallel on as many workers:

- ``WORK/fit/<S>/shape.npz``: ``betas (10,)`` fitted on frames of *every* extracted sequence
  of the subject (not only the selected ones, so the shape does not depend on the
  selection), ``shape_frames (N, 2)`` [sequence number, frame], ``sequences``,
  ``mpjpe_mm (N,)``, ``body_model_sha256``;
- ``WORK/fit/<S>/<seq>.npz`` for each selected sequence: smplx forward kwargs for
  ``smplx.create(..., model_type="smplx", use_pca=False, num_betas=10,
  num_expression_coeffs=10, flat_hand_mean=False)`` — ``betas (10,)``, ``global_orient (T,3)``,
  ``body_pose (T,63)``, ``transl (T,3)``, ``left_hand_pose``/``right_hand_pose (T,45)``,
  ``jaw_pose``/``leye_pose``/``reye_pose (T,3)``, ``expression (T,10)`` (hands, face at their
  mean) — plus ``frame_index (T,)`` (mocap frames of the ``--frames`` range and ``--stride``,
  default every frame), ``mpjpe_mm (T,)`` and ``joint_err_mm (T,17)`` to the mocap h36m17
  joints, ``converged (T,)``, ``energy_data``/``energy_pose_prior``/``energy_angle_limits``/
  ``energy_temporal (T,)`` and ``body_model_sha256``. World frame, metres, float64.

With ``--device cuda`` (or auto on a machine with CUDA) units carry ``resources={"GPU": 1}``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.device import DeviceError, check_device_name, cuda_device_count
from fitting.smplx_params import SMPLX_FRAME_PARAM_DIMS
from pipeline.artifacts import (
    NUM_EXPRESSION,
    BodyModel,
    FitSequence,
    FitShape,
    extracted_sequences,
    read_fit_shape,
    read_joints_world,
    read_sequence_info,
    resolve_model,
    write_fit_sequence,
    write_fit_shape,
)
from pipeline.errors import DataError, SelectionError
from pipeline.stages.base import BODY_MODEL_OPTION, Stage, StageConfig, StageOption, Unit
from pipeline.store import WorkDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitStageConfig(StageConfig):
    """Options of the fit stage (reads WORK/extract; the selection's stride 1 = every mocap frame)."""

    body_model: str = "synthetic"
    """SMPL-X file or folder, or 'synthetic' (generated into WORK/bodymodel)."""
    device: str = "auto"
    """auto (CUDA when the client sees one), cuda or cpu."""
    joint_regressor: Path | None = None
    """Optional (17|32, V) regressor file (.npy/.npz) replacing the named correspondence."""
    pose_prior: Path | None = None
    """Optional GMM pose prior file (.pkl/.npz: means, covars, weights) replacing the L2 prior."""
    shape_frames: int = 96
    """Mocap frames, drawn from all of a subject's sequences, that its shape (betas) is fitted
    to; fewer is faster (spot checks) and less exact."""


def _resolve_device(device: str) -> str:
    """"cuda" or "cpu" for the units (auto: CUDA when this machine has a device)."""
    try:
        check_device_name(device)
    except DeviceError as e:
        raise SelectionError(f"--device: {e}") from None
    if device == "auto":
        return "cuda" if cuda_device_count() > 0 else "cpu"
    return device


def plan(config: FitStageConfig, work: WorkDir) -> list[Unit]:
    """Per selected subject with extracted sequences: its shape unit, then one unit per
    selected sequence (see the module docstring)."""
    if config.shape_frames < 1:
        raise SelectionError(f"--shape-frames must be at least 1, got {config.shape_frames}")
    sel = config.selection
    root = work.extract_dir()
    subjects = sorted(d.name for d in root.iterdir() if d.is_dir() and sel.wants_subject(d.name)) \
        if root.is_dir() else []
    device = _resolve_device(config.device)
    _check_user_files(config)
    model = None
    units = []
    for subject in subjects:
        every = extracted_sequences(work, subject)
        chosen = [s for s in every if sel.wants_sequence(read_sequence_info(work.sequence_json(subject, s)).action, s)]
        if not chosen:
            continue
        if model is None:  # resolved once, here, so units do not race to write it
            model = resolve_model(config.body_model, work)
        user_files = {name: Path(getattr(config, name)) for name in ("joint_regressor", "pose_prior")
                      if getattr(config, name) is not None}
        common = {"device": device, "joint_regressor": str(config.joint_regressor or ""),
                  "pose_prior": str(config.pose_prior or ""), "shape_frames": config.shape_frames}
        payload = {"work": str(work.root), "subject": subject, "model": model, "device": device}
        resources = {"GPU": 1} if device == "cuda" else None
        shape_key = f"{subject}/shape"
        units.append(Unit(
            key=shape_key,
            outputs=(work.fit_shape(subject),),
            inputs={"body_model": model.path, **{f"joints:{s}": work.joints_world(subject, s) for s in every},
                    **user_files},
            params={**common, "sequences": every},
            payload={**payload, "kind": "shape", "every": every},
            resources=resources,
        ))
        for seq in chosen:
            units.append(Unit(
                key=f"{subject}/{seq}",
                outputs=(work.fit_sequence(subject, seq),),
                inputs={"body_model": model.path, "shape": work.fit_shape(subject),
                        f"joints:{seq}": work.joints_world(subject, seq), **user_files},
                params={**common, "frames": list(sel.frames), "stride": sel.stride},
                payload={**payload, "kind": "sequence", "sequence": seq},
                resources=resources,
                after=(shape_key,),
            ))
    if not units:
        raise DataError(f"{root}: no extracted sequences match the selection (run 'h36m-nvf extract' first)")
    return units


def _check_user_files(config: FitStageConfig) -> None:
    """Fail before any unit runs when a user regressor or prior file is bad (BodyModelError)."""
    from fitting.bodymodel import NUM_SMPLX_VERTICES
    from fitting.priors import load_gmm_prior
    from fitting.smplify import load_joint_regressor

    if config.joint_regressor is not None:
        load_joint_regressor(config.joint_regressor, NUM_SMPLX_VERTICES)
    if config.pose_prior is not None:
        load_gmm_prior(config.pose_prior)


def make_fitter(model_path: Path, device: str, joint_regressor: Path | None = None, pose_prior: Path | None = None,
                shape_frames: int = 96):
    """A fitting.smplify.Fitter for a model file, on ``device``, with the optional user files."""
    import torch

    from fitting.bodymodel import load_body_model
    from fitting.priors import load_gmm_prior
    from fitting.smplify import FitConfig, Fitter, load_joint_regressor

    model = load_body_model(model_path, device="cpu", dtype=torch.float32, num_betas=10,
                            num_expression_coeffs=NUM_EXPRESSION, use_face_contour=False, flat_hand_mean=False)
    regressor = load_joint_regressor(joint_regressor, model.v_template.shape[0]) if joint_regressor else None
    gmm = load_gmm_prior(pose_prior) if pose_prior else None
    return Fitter(model, FitConfig(device=device, shape_frames=shape_frames), regressor=regressor, gmm=gmm)


def run_unit(unit: Unit, config: FitStageConfig) -> dict:
    """Fit a subject's shape from all its sequences, or one sequence's poses with that shape."""
    p = unit.payload
    work = WorkDir(Path(p["work"]))
    subject = p["subject"]
    model: BodyModel = p["model"]
    fitter = _cached_fitter(model.path, p["device"], config.joint_regressor, config.pose_prior,
                            config.shape_frames)
    if p["kind"] == "shape":
        joints = [read_joints_world(work.joints_world(subject, s)) for s in p["every"]]
        betas, info = fitter.fit_shape(joints)
        write_fit_shape(work.fit_shape(subject), FitShape(
            betas=betas, shape_frames=info["frames"], sequences=tuple(p["every"]), mpjpe_mm=info["mpjpe_mm"],
            body_model_sha256=model.sha256, skeleton_offsets_m=info["skeleton_offsets_m"]))
        return {"shape_frames": int(len(info["frames"])), "shape_mpjpe_mm": float(np.mean(info["mpjpe_mm"]))}
    seq = p["sequence"]
    shape = read_fit_shape(work.fit_shape(subject))
    betas = shape.betas
    joints = read_joints_world(work.joints_world(subject, seq))
    frame_index = np.asarray(config.selection.frame_indices(len(joints)), dtype=np.int64)
    if len(frame_index) == 0:
        raise DataError(f"{work.joints_world(subject, seq)}: the --frames range selects no frame "
                        f"(sequence has {len(joints)})")
    from pipeline.stages.progress import unit_progress

    unit_progress(0, len(frame_index), "frames")  # the total, for the client's ETA
    fit = fitter.fit_sequence(joints[frame_index], betas, shape.skeleton_offsets_m)
    write_fit_sequence(work.fit_sequence(subject, seq), fit_record(fit, betas, frame_index, model.sha256))
    return {"frames": int(len(frame_index)), "mpjpe_mm_mean": float(fit.mpjpe_mm.mean()),
            "mpjpe_mm_max": float(fit.mpjpe_mm.max()), "converged_fraction": float(fit.converged.mean())}


def warm_up(config: FitStageConfig, unit: Unit) -> None:
    """On a worker before its first unit: the fitter load (torch import, body model), which a
    worker idle while a subject's shape unit runs would otherwise do when its first pose unit
    comes (~2 s on the critical path)."""
    p = unit.payload
    _cached_fitter(p["model"].path, p["device"], config.joint_regressor, config.pose_prior, config.shape_frames)


_FITTERS: dict = {}


def _cached_fitter(model_path: str, device: str, joint_regressor, pose_prior, shape_frames: int):
    """One fitter per (model, device, user files, shape frames) per worker process: a subject's
    sequence units reuse the model load (about a second) instead of repeating it."""
    key = (model_path, _file_stamp(model_path), device, str(joint_regressor or ""), _file_stamp(joint_regressor),
           str(pose_prior or ""), _file_stamp(pose_prior), shape_frames)
    if key not in _FITTERS:
        _FITTERS.clear()  # one at a time: a fitter holds the model on its device
        _FITTERS[key] = make_fitter(Path(model_path), device, joint_regressor, pose_prior, shape_frames)
    return _FITTERS[key]


def _file_stamp(path) -> tuple:
    if not path:
        return ()
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


def fit_record(fit, betas: np.ndarray, frame_index: np.ndarray, sha: str) -> FitSequence:
    """The FitSequence of a fitter result (hands, face and expression at their mean: zeros)."""
    t = len(frame_index)
    params = {k: np.zeros((t, d)) for k, d in SMPLX_FRAME_PARAM_DIMS.items()}
    params.update(global_orient=fit.global_orient, body_pose=fit.body_pose, transl=fit.transl)
    return FitSequence(betas=np.asarray(betas), params=params, frame_index=frame_index,
                       mpjpe_mm=fit.mpjpe_mm, joint_err_mm=fit.joint_err_mm, converged=fit.converged,
                       energies=dict(fit.energies), body_model_sha256=sha)


STAGE = Stage(
    name="fit",
    version="1",
    help="Fit SMPL-X (shape per subject, pose per mocap frame) to the mocap joints.",
    config_type=FitStageConfig,
    plan=plan,
    run_unit=run_unit,
    warm_up=warm_up,
    options=(
        BODY_MODEL_OPTION,
        StageOption("device", str, "auto, cuda or cpu."),
        StageOption("joint_regressor", Path, "Regressor file (17|32 x V, .npy/.npz) replacing the named correspondence."),
        StageOption("pose_prior", Path, "GMM pose prior file (.pkl/.npz) replacing the L2 pose prior."),
        StageOption("shape_frames", int, "Frames the subject's shape is fitted to (default 96; fewer: faster)."),
    ),
    default_stride=1,
)
