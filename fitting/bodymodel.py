"""Find, validate and load an SMPL-X body model (a real one or the synthetic default).

``resolve_body_model("synthetic", work_dir)`` writes the project's synthetic model into
``WORK/bodymodel/SMPLX_NEUTRAL.npz`` (kept while its recorded seed and generator version
match); any other spec is a real SMPL-X file (``SMPLX_{NEUTRAL,MALE,FEMALE}.{npz,pkl}``) or
a folder holding one (directly or in its ``smplx/`` subfolder, the layout of the official
download). Files are checked before smplx sees them, so a wrong file is a one-line
``BodyModelError`` that names it instead of an assertion deep inside smplx.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from common.hashing import sha256_file
from fitting.errors import BodyModelError

SYNTHETIC_SPEC = "synthetic"
GENDERS = ("NEUTRAL", "MALE", "FEMALE")
SYNTHETIC_GENERATOR_VERSION = 1
"""Bump when fitting/synthetic_model.py changes its output, so cached copies are rebuilt."""

NUM_SMPLX_VERTICES = 10475
NUM_SMPLX_JOINTS = 55

# key -> expected shape; None = any length along that axis (v1.0 has 20 shape directions).
REQUIRED_KEYS: dict[str, tuple[int | None, ...]] = {
    "v_template": (NUM_SMPLX_VERTICES, 3),
    "f": (None, 3),
    "shapedirs": (NUM_SMPLX_VERTICES, 3, None),
    "posedirs": (NUM_SMPLX_VERTICES, 3, (NUM_SMPLX_JOINTS - 1) * 9),
    "J_regressor": (NUM_SMPLX_JOINTS, NUM_SMPLX_VERTICES),
    "weights": (NUM_SMPLX_VERTICES, NUM_SMPLX_JOINTS),
    "kintree_table": (2, NUM_SMPLX_JOINTS),
    "hands_componentsl": (45, 45),
    "hands_componentsr": (45, 45),
    "hands_meanl": (45,),
    "hands_meanr": (45,),
    "lmk_faces_idx": (51,),
    "lmk_bary_coords": (51, 3),
}
CONTOUR_KEYS: dict[str, tuple[int | None, ...]] = {
    "dynamic_lmk_faces_idx": (79, 17),
    "dynamic_lmk_bary_coords": (79, 17, 3),
}


def _gender_of(path: Path) -> str:
    stem = path.stem
    if not stem.upper().startswith("SMPLX_"):
        if stem.upper().startswith(("SMPL_", "SMPLH_", "MANO_", "FLAME_")):
            raise BodyModelError(f"{path}: not an SMPL-X model file (file name {path.name!r}); "
                                 "expected SMPLX_NEUTRAL/MALE/FEMALE.npz or .pkl")
        raise BodyModelError(f"{path}: file name must be SMPLX_<GENDER>.npz or .pkl "
                             f"(smplx reads the model type from it), got {path.name!r}")
    gender = stem[len("SMPLX_"):]
    if gender not in GENDERS:
        raise BodyModelError(f"{path}: gender part {gender!r} of the file name is not one of "
                             f"{', '.join(GENDERS)}")
    return gender


def _shape_of(value) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    if shape is None:
        try:
            shape = np.asarray(value).shape
        except Exception:  # noqa: BLE001 - any unreadable value is reported as such
            return None
    return tuple(int(s) for s in shape)


def _read_arrays(path: Path) -> dict:
    """The file's key -> array-like mapping; BodyModelError when it cannot be read."""
    if path.suffix == ".npz":
        if not zipfile.is_zipfile(path):
            raise BodyModelError(f"{path}: not a readable .npz file (not a zip archive)")
        try:
            with np.load(path, allow_pickle=True) as data:
                return {k: data[k] for k in data.files}
        except Exception as e:  # noqa: BLE001 - numpy raises many kinds on corrupt archives
            raise BodyModelError(f"{path}: unreadable .npz file ({type(e).__name__}: {e})") from None
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh, encoding="latin1")
    except Exception as e:  # noqa: BLE001 - pickle raises many kinds on corrupt files
        raise BodyModelError(f"{path}: unreadable .pkl file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise BodyModelError(f"{path}: .pkl file does not hold a dict of model arrays")
    return data


def check_model_file(path: str | Path, *, use_face_contour: bool = True) -> Path:
    """Validate an SMPL-X model file and return its path; BodyModelError (one line) otherwise.

    Checks: the file exists, is .npz/.pkl, is named SMPLX_<NEUTRAL|MALE|FEMALE>, is readable,
    has every key smplx reads at the SMPL-X shapes (10475 vertices, 55 joints), and is not
    another model (an SMPL file has 6890 vertices and 24 joints).
    """
    path = Path(path)
    if not path.exists():
        raise BodyModelError(f"{path}: body model file not found")
    if not path.is_file():
        raise BodyModelError(f"{path}: not a file")
    if path.suffix not in (".npz", ".pkl"):
        raise BodyModelError(f"{path}: wrong file type {path.suffix or '(none)'!r}; "
                             "an SMPL-X model is a .npz or .pkl file")
    _gender_of(path)
    data = _read_arrays(path)
    v = data.get("v_template")
    nv = _shape_of(v)[0] if v is not None and _shape_of(v) else None
    kt = data.get("kintree_table")
    nj = _shape_of(kt)[1] if kt is not None and _shape_of(kt) and len(_shape_of(kt)) == 2 else None
    if nv is not None and nv != NUM_SMPLX_VERTICES:
        kind = {6890: "an SMPL/SMPL-H model", 778: "a MANO hand model", 5023: "a FLAME head model"}
        what = kind.get(nv, "not an SMPL-X model")
        raise BodyModelError(f"{path}: {what} ({nv} vertices, {nj} joints); "
                             f"SMPL-X has {NUM_SMPLX_VERTICES} vertices and {NUM_SMPLX_JOINTS} joints")
    required = dict(REQUIRED_KEYS, **(CONTOUR_KEYS if use_face_contour else {}))
    missing = [k for k in required if k not in data]
    if missing:
        raise BodyModelError(f"{path}: missing keys {', '.join(missing)} (not an SMPL-X v1.1 model?)")
    for key, expected in required.items():
        shape = _shape_of(data[key])
        ok = shape is not None and len(shape) == len(expected) and all(
            e is None or s == e for s, e in zip(shape, expected, strict=True))
        if not ok:
            want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
            raise BodyModelError(f"{path}: array {key!r} has shape {shape}, expected {want}")
    nshape = _shape_of(data["shapedirs"])[2]
    if nshape < 20:
        raise BodyModelError(f"{path}: 'shapedirs' has {nshape} directions, expected 20 (v1.0) or 400 (v1.1)")
    faces = np.asarray(data["f"])
    if faces.size and (faces.min() < 0 or faces.max() >= NUM_SMPLX_VERTICES):
        raise BodyModelError(f"{path}: face indices out of range 0..{NUM_SMPLX_VERTICES - 1}")
    return path


def _find_in_folder(folder: Path) -> Path:
    for sub in (folder, folder / "smplx"):
        for ext in ("npz", "pkl"):
            for gender in GENDERS:
                cand = sub / f"SMPLX_{gender}.{ext}"
                if cand.is_file():
                    return cand
    raise BodyModelError(f"{folder}: no SMPLX_NEUTRAL/MALE/FEMALE .npz or .pkl in this folder "
                         "or its smplx/ subfolder")


def _synthetic_stamp(seed: int) -> dict:
    return {"generator_version": SYNTHETIC_GENERATOR_VERSION, "seed": int(seed)}


CACHE_ENV = "H36M_NVF_CACHE"
"""Environment variable: folder that keeps the generated synthetic model between work dirs
(default ``$XDG_CACHE_HOME/h36m-nvf`` or ``~/.cache/h36m-nvf``; "off": no cache)."""
_STAMP_FILENAME = "SMPLX_NEUTRAL.json"


def synthetic_cache_dir(seed: int) -> Path | None:
    """Cache folder of the synthetic model of ``seed`` (None when the cache is off)."""
    root = os.environ.get(CACHE_ENV, "")
    if root == "off":
        return None
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "h36m-nvf"
    return base / f"synthetic-smplx-v{SYNTHETIC_GENERATOR_VERSION}-seed{int(seed)}"


def _synthetic_is_current(folder: Path, stamp: dict) -> bool:
    """The folder's model matches the stamp (seed, generator version) and its recorded sha256."""
    from fitting.synthetic_model import MODEL_FILENAME

    path, stamp_path = folder / MODEL_FILENAME, folder / _STAMP_FILENAME
    if not (path.is_file() and stamp_path.is_file()):
        return False
    try:
        recorded = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return False
    return {k: recorded.get(k) for k in stamp} == stamp and recorded.get("sha256") == sha256_file(path)


def _copy_synthetic(src: Path, dst: Path) -> None:
    """Copy model then stamp (the stamp last: a half copy is never current), each atomically."""
    import shutil

    from fitting.synthetic_model import MODEL_FILENAME

    dst.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILENAME, _STAMP_FILENAME):
        tmp = dst / f".{name}.{os.getpid()}.tmp"
        shutil.copyfile(src / name, tmp)
        os.replace(tmp, dst / name)


def resolve_body_model(spec: str | Path, work_dir: Path | None, *, seed: int = 0) -> Path:
    """The model file to load for ``--body-model SPEC``.

    ``"synthetic"``: ``work_dir/bodymodel/SMPLX_NEUTRAL.npz``, written when absent or stale
    (different seed or generator version, recorded in ``SMPLX_NEUTRAL.json`` beside it; the
    file's sha256 is checked too): copied from the cache (``synthetic_cache_dir``) when a
    current copy is there, else generated (≈20 s on CPU) and cached. Otherwise ``spec`` is a
    real SMPL-X file or a folder holding one; it is validated and returned.
    """
    if str(spec) == SYNTHETIC_SPEC:
        if work_dir is None:
            raise BodyModelError("--body-model synthetic needs a work directory to write the model into")
        from fitting.synthetic_model import MODEL_FILENAME, write_synthetic_model

        folder = Path(work_dir) / "bodymodel"
        stamp = _synthetic_stamp(seed)
        if _synthetic_is_current(folder, stamp):
            return folder / MODEL_FILENAME
        cache = synthetic_cache_dir(seed)
        if cache is not None and _synthetic_is_current(cache, stamp):
            _copy_synthetic(cache, folder)
            return folder / MODEL_FILENAME
        write_synthetic_model(folder, seed=seed)
        stamp_path = folder / _STAMP_FILENAME
        tmp = stamp_path.with_name(stamp_path.name + ".tmp")
        tmp.write_text(json.dumps(dict(stamp, sha256=sha256_file(folder / MODEL_FILENAME)), indent=1) + "\n")
        os.replace(tmp, stamp_path)
        if cache is not None:
            try:
                _copy_synthetic(folder, cache)
            except OSError:  # a read-only or full home: the cache is only an optimisation
                pass
        return folder / MODEL_FILENAME
    p = Path(spec).expanduser()
    if p.is_dir():
        p = _find_in_folder(p)
    return check_model_file(p)


def load_body_model(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int = 1,
    num_betas: int = 10,
    num_expression_coeffs: int = 10,
    use_face_contour: bool = True,
    flat_hand_mean: bool = False,
):
    """The ``smplx.SMPLX`` module for a validated model file (full axis-angle hands).

    ``num_betas`` is always passed explicitly (smplx versions differ in the default).
    The gender comes from the file name.
    """
    import smplx

    path = check_model_file(path, use_face_contour=use_face_contour)
    model = smplx.create(
        str(path), model_type="smplx", gender=_gender_of(path).lower(), ext=path.suffix[1:],
        use_pca=False, num_betas=num_betas, num_expression_coeffs=num_expression_coeffs,
        use_face_contour=use_face_contour, flat_hand_mean=flat_hand_mean,
        batch_size=batch_size, dtype=dtype,
    )
    return model.to(device)


@functools.lru_cache(maxsize=2)
def cached_body_model_f64(path: str, use_face_contour: bool = False):
    """A float64 CPU model per (file, contour flag), loaded once per process.

    For readers that pose many single frames (the sampler, the audit overlays): reloading the
    ~12 MB file per frame would dominate their cost.
    """
    return load_body_model(Path(path), dtype=torch.float64, use_face_contour=use_face_contour)

