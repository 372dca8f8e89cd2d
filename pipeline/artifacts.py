"""One typed reader and writer per work-dir file that stages hand to each other.

Stages, checks and recipes read WORK only through these functions and records, so a file's
schema lives in one place and a bad file is always a one-line ``DataError`` naming it:

==============================  ====================================  =========================
file                            record                                reader / writer
==============================  ====================================  =========================
extract/<S>/<seq>/sequence.json ``SequenceInfo``                      read_sequence_info /
                                                                      write_sequence_info
extract/<S>/<seq>/joints_world  (T, 32, 3) float32 metres, world      read_joints_world /
.npy                                                                  write_joints_world
fit/<S>/shape.npz               ``FitShape``                          read_fit_shape / write_fit_shape
fit/<S>/<seq>.npz               ``FitSequence``                       read_fit_sequence /
                                                                      write_fit_sequence
the body model file             ``BodyModel`` (path + sha256)         resolve_model, check_fit_model
==============================  ====================================  =========================

Shards and their ``index.json`` belong to ``sampling.shards`` (the trainer reads them too);
H3WB files to ``pipeline.h3wb``; done-records and run.json to ``pipeline.store``.
"""

from __future__ import annotations

import functools
import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.hashing import sha256_file
from fitting.smplx_params import SMPLX_FRAME_PARAM_DIMS
from pipeline.errors import DataError
from pipeline.release.cameras import Camera
from pipeline.release.h36m import FPS
from pipeline.release.h36m import NUM_JOINTS as NUM_MOCAP_JOINTS
from pipeline.store import WorkDir, atomic_write_json, atomic_write_npy, atomic_write_npz

SMPLX_PARAM_KEYS = tuple(SMPLX_FRAME_PARAM_DIMS)
"""Per-frame SMPL-X forward keyword arguments stored in a fit npz (``betas`` is per subject)."""
NUM_EXPRESSION = SMPLX_FRAME_PARAM_DIMS["expression"]


# --------------------------------------------------------------------------- sequence.json


@dataclass(frozen=True)
class SequenceInfo:
    """The content of ``extract/<S>/<seq>/sequence.json``: what one sequence holds."""

    path: Path
    """The file it was read from (for error messages)."""
    subject: str
    sequence: str
    """Folder name, e.g. "Walking_1"."""
    basename: str
    """Release basename, e.g. "Walking 1"."""
    action: str
    """Canonical action name, e.g. "Walking"."""
    subaction: int
    cameras: tuple[Camera, ...]
    """Every camera of the sequence (H36M lens model, cam_from_world in metres)."""
    num_frames: int
    """Usable frames (shortest of video and mocap)."""
    raw: Mapping = field(default_factory=dict, repr=False)
    """The whole JSON object (frame counts, quirks, sources)."""

    @property
    def camera_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.cameras)

    def mask(self, kind: str, camera_id: str):
        """The release's ``MySegmentsMat`` file of ``kind`` for a camera (a lazily read
        ``pipeline.release.masks.MaskFile``), or None where the release had none usable."""
        from pipeline.release.masks import MaskFile

        entry = self.raw.get("masks", {}).get(kind, {}).get(camera_id)
        if not entry:
            return None
        return MaskFile(Path(entry["path"]), kind, int(entry["frames"]), int(entry["width"]),
                        int(entry["height"]))

    def camera(self, camera_id: str) -> Camera:
        """The camera called ``camera_id``; DataError listing the sequence's cameras otherwise."""
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise DataError(f"{self.path}: no camera {camera_id} (has {', '.join(self.camera_ids)})")


def sequence_record(seq, sources: Mapping[str, Path], joints_shape) -> dict:
    """The JSON of sequence.json for a release Sequence (deterministic for the same release)."""
    cameras = seq.cameras.values() if isinstance(seq.cameras, dict) else seq.cameras
    src = {}
    for role, path in sorted(sources.items()):
        st = Path(path).stat()
        src[role] = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {
        "subject": seq.subject,
        "sequence": seq.name,
        "basename": seq.basename,
        "action": seq.action,
        "subaction": int(seq.subaction),
        "fps": FPS,
        "cameras": [c.to_json() for c in cameras],
        "frame_counts": {str(k): int(v) for k, v in seq.frame_counts.items()},
        "num_frames": int(seq.num_frames),
        "skip_cameras": sorted(seq.skip_cameras),
        "quirks": list(seq.quirks),
        "sources": src,
        "joints_world": {"file": "joints_world.npy", "shape": list(joints_shape), "dtype": "float32",
                         "unit": "m", "frame": "world", "joints": "h36m32"},
        # the release's usable MySegmentsMat files (pipeline.release.masks), read lazily later
        "masks": {kind: {c: {"path": str(m.path), "frames": m.frames, "width": m.width, "height": m.height}
                         for c, m in sorted(found.items())}
                  for kind, found in sorted(getattr(seq, "masks", {}).items())},
    }


def write_sequence_info(path: Path, seq, sources: Mapping[str, Path], joints_shape) -> None:
    atomic_write_json(path, sequence_record(seq, sources, joints_shape))


def read_sequence_info(path: Path) -> SequenceInfo:
    """sequence.json → SequenceInfo; DataError naming the file when missing or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return SequenceInfo(
            path=path, subject=str(data.get("subject", path.parent.parent.name)),
            sequence=str(data.get("sequence", path.parent.name)),
            basename=str(data.get("basename", path.parent.name.replace("_", " "))),
            action=str(data.get("action", "")), subaction=int(data.get("subaction", 0)),
            cameras=tuple(Camera.from_json(c) for c in data["cameras"]),
            num_frames=int(data.get("num_frames", 0)), raw=data)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (run extract first)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a valid sequence.json ({e!r})") from None


def extracted_sequences(work: WorkDir, subject: str) -> list[str]:
    """Sequence folder names of ``subject`` under WORK/extract that have a sequence.json, sorted."""
    folder = work.extract_dir(subject)
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir() if (d / "sequence.json").is_file())


# --------------------------------------------------------------------------- joints_world.npy


def write_joints_world(path: Path, joints: np.ndarray) -> None:
    """joints: (T, 32, 3) metres, world frame; stored as float32."""
    atomic_write_npy(path, np.asarray(joints, dtype=np.float32))


def read_joints_world(path: Path) -> np.ndarray:
    """(T, 32, 3) float64 metres, world frame; DataError naming the file if missing or bad."""
    path = Path(path)
    try:
        joints = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (run extract first)") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy ({e})") from None
    if joints.ndim != 3 or joints.shape[1:] != (NUM_MOCAP_JOINTS, 3) or len(joints) == 0:
        raise DataError(f"{path}: mocap joints have shape {joints.shape}, expected (T, 32, 3)")
    if not np.all(np.isfinite(joints)):
        bad = np.flatnonzero(~np.isfinite(joints).all(axis=(1, 2)))
        raise DataError(f"{path}: non-finite mocap joints in {len(bad)} frames (first {bad[0]})")
    return joints.astype(np.float64)


# --------------------------------------------------------------------------- fit npz files


@dataclass(frozen=True)
class FitSequence:
    """``fit/<S>/<seq>.npz``: SMPL-X parameters of every fitted frame + per-frame metrics.

    World frame, metres, radians, float64. ``params`` are smplx forward kwargs for
    ``smplx.create(..., model_type="smplx", use_pca=False, num_betas=len(betas),
    num_expression_coeffs=10, flat_hand_mean=False)``.
    """

    betas: np.ndarray
    """(B,) shape of the subject."""
    params: Mapping[str, np.ndarray]
    """SMPLX_PARAM_KEYS → (T, d)."""
    frame_index: np.ndarray
    """(T,) int64 mocap frame of each row."""
    mpjpe_mm: np.ndarray
    """(T,) fit error to the mocap h36m17 joints, mm."""
    joint_err_mm: np.ndarray
    """(T, 17) per-joint fit error, mm."""
    converged: np.ndarray
    """(T,) bool."""
    energies: Mapping[str, np.ndarray] = field(default_factory=dict)
    """"energy_*" → (T,) final energy terms of the fitter."""
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Further per-frame or per-sequence arrays a fitter records (kept as written)."""
    body_model_sha256: str = ""
    """sha256 of the model file the fit used ("" when not recorded)."""
    path: Path | None = None
    """The file it was read from."""

    def __len__(self) -> int:
        return len(self.frame_index)

    def row_of(self, frame: int) -> int:
        """Row of mocap frame ``frame``; DataError when it was not fitted."""
        rows = np.flatnonzero(self.frame_index == frame)
        if len(rows) == 0:
            raise DataError(f"{self.path}: frame {frame} was not fitted (fitted: {len(self)} frames "
                            f"from {int(self.frame_index.min())} to {int(self.frame_index.max())})")
        return int(rows[0])

    def smplx_kwargs(self, rows) -> dict[str, np.ndarray]:
        """Forward kwargs of ``rows`` (int or index array), betas repeated per row: (n, d) each."""
        rows = np.atleast_1d(np.asarray(rows))
        out = {k: np.asarray(self.params[k])[rows] for k in SMPLX_PARAM_KEYS}
        out["betas"] = np.repeat(np.asarray(self.betas).reshape(1, -1), len(rows), axis=0)
        return out


def write_fit_sequence(path: Path, fit: FitSequence) -> None:
    """Write atomically and deterministically (the same fit gives the same bytes)."""
    arrays = {"betas": np.asarray(fit.betas, dtype=np.float64),
              **{k: np.asarray(fit.params[k], dtype=np.float64) for k in SMPLX_PARAM_KEYS},
              "frame_index": np.asarray(fit.frame_index, dtype=np.int64),
              "mpjpe_mm": np.asarray(fit.mpjpe_mm, dtype=np.float64),
              "joint_err_mm": np.asarray(fit.joint_err_mm, dtype=np.float64),
              "converged": np.asarray(fit.converged, dtype=bool),
              **{k: np.asarray(v, dtype=np.float64) for k, v in fit.energies.items()},
              **{k: np.asarray(v) for k, v in fit.extras.items()},
              "body_model_sha256": np.array(fit.body_model_sha256)}
    atomic_write_npz(path, arrays)


_FIT_CORE = ("betas", "frame_index", "mpjpe_mm", "joint_err_mm", "converged", "body_model_sha256",
             *SMPLX_PARAM_KEYS)


def read_fit_sequence(path: Path) -> FitSequence:
    """fit/<S>/<seq>.npz → FitSequence; DataError naming the file when missing or inconsistent."""
    path = Path(path)
    z = _load_npz(path)
    missing = [k for k in ("betas", "frame_index", "mpjpe_mm", *SMPLX_PARAM_KEYS) if k not in z]
    if missing:
        raise DataError(f"{path}: fit file lacks {', '.join(missing)}")
    count = len(z["frame_index"])
    bad = [k for k in ("mpjpe_mm", *SMPLX_PARAM_KEYS) if len(z[k]) != count]
    if bad:
        raise DataError(f"{path}: {', '.join(bad)} do not have {count} frames like frame_index")
    return FitSequence(
        betas=z["betas"].reshape(-1), params={k: z[k] for k in SMPLX_PARAM_KEYS},
        frame_index=z["frame_index"].astype(np.int64), mpjpe_mm=z["mpjpe_mm"],
        joint_err_mm=z.get("joint_err_mm", np.full((count, 17), np.nan)),
        converged=z.get("converged", np.zeros(count, bool)).astype(bool),
        energies={k: v for k, v in z.items() if k.startswith("energy_")},
        extras={k: v for k, v in z.items() if k not in _FIT_CORE and not k.startswith("energy_")},
        body_model_sha256=str(z.get("body_model_sha256", "")), path=path)


@dataclass(frozen=True)
class FitShape:
    """``fit/<S>/shape.npz``: the subject's betas and the frames they were fitted to."""

    betas: np.ndarray
    """(B,)."""
    shape_frames: np.ndarray
    """(N, 2) int [sequence number, frame] of the frames used."""
    sequences: tuple[str, ...]
    """Sequence folder names the numbers in shape_frames refer to."""
    mpjpe_mm: np.ndarray
    """(N,) fit error of those frames, mm."""
    body_model_sha256: str = ""
    skeleton_offsets_m: np.ndarray | None = None
    """(M, 3) the mocap skeleton's fitted per-joint offsets in the bone frames, metres
    (fitting.correspondence.H36M32_BONE_FRAME), or None (older files)."""
    path: Path | None = None


def write_fit_shape(path: Path, shape: FitShape) -> None:
    atomic_write_npz(path, {"betas": np.asarray(shape.betas, dtype=np.float64),
                  "shape_frames": np.asarray(shape.shape_frames), "sequences": np.array(shape.sequences),
                  "mpjpe_mm": np.asarray(shape.mpjpe_mm, dtype=np.float64),
                  "body_model_sha256": np.array(shape.body_model_sha256),
                  **({} if shape.skeleton_offsets_m is None
                     else {"skeleton_offsets_m": np.asarray(shape.skeleton_offsets_m, dtype=np.float64)})})


def read_fit_shape(path: Path) -> FitShape:
    path = Path(path)
    z = _load_npz(path)
    if "betas" not in z:
        raise DataError(f"{path}: shape file lacks betas")
    return FitShape(betas=z["betas"].reshape(-1), shape_frames=z.get("shape_frames", np.zeros((0, 2), int)),
                    sequences=tuple(str(s) for s in z.get("sequences", ())),
                    mpjpe_mm=z.get("mpjpe_mm", np.zeros(0)),
                    body_model_sha256=str(z.get("body_model_sha256", "")),
                    skeleton_offsets_m=z.get("skeleton_offsets_m"), path=path)


def fitted_sequences(work: WorkDir, subject: str) -> list[str]:
    """Sequence names of ``subject`` with a fit npz, sorted."""
    folder = work.fit_dir(subject)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.npz") if p.name != "shape.npz")


def fitted_subjects(work: WorkDir) -> list[str]:
    folder = work.fit_dir()
    return sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (run fit first)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable npz ({e})") from None


# --------------------------------------------------------------------------- the body model


@dataclass(frozen=True)
class BodyModel:
    """The SMPL-X model file of a run, resolved once, with its identity."""

    path: Path
    sha256: str


def resolve_model(spec: str | Path, work: WorkDir | None) -> BodyModel:
    """``--body-model SPEC`` ("synthetic", a file or a folder) → BodyModel (written/validated once)."""
    from fitting.bodymodel import resolve_body_model

    path = resolve_body_model(spec, work.root if work is not None else None)
    return BodyModel(path, _sha256_cached(str(path), *_stat_key(path)))


def check_fit_model(model: BodyModel, fits: Iterable[FitSequence | FitShape]) -> None:
    """DataError naming both files when a fit was made with another model than ``model``.

    Fits that recorded no sha256 (older files) are not checked.
    """
    for fit in fits:
        if fit.body_model_sha256 and fit.body_model_sha256 != model.sha256:
            raise DataError(
                f"{model.path}: not the body model that {fit.path} was fitted with (sha256 "
                f"{model.sha256[:12]}… vs {fit.body_model_sha256[:12]}… recorded); pass the fit's "
                "--body-model or refit")


def _stat_key(path: Path) -> tuple[int, int]:
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
