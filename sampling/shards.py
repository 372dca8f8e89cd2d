"""HDF5 training shards: schema, deterministic atomic writer, reader, validator (the torch
Dataset over them: ``sampling.dataset``).

One split lives in ``WORK/shards/<split>/``: shard files and ``index.json`` (shards, sample
counts, sha256, schema, config). A shard is named ``shard-NNNNN.h5`` or, keyed by what it
holds, ``shard-<group>-NNNNN.h5`` (the sample stage: ``shard-S1-Walking_1-54138969-00000.h5``,
one camera of one sequence). Every shard holds a fixed number of samples (the last one of a
group may hold fewer); one sample = one (subject, sequence, camera, frame). Per-sample datasets (S samples, N points, J joints), all camera-space metres:

====================== ================= ======================================================
``image``              (S,) vlen uint8   JPEG of the undistorted square crop
``K``                  (S, 3, 3) f32     crop intrinsics (pixels, centres at integers)
``cam_from_world_R``   (S, 3, 3) f32     ``X_cam = R @ X_world + t``
``cam_from_world_t``   (S, 3) f32        metres
``root``               (S, 3) f32        root joint (pelvis), camera frame
``points``             (S, N, 3) f32     query points, camera frame
``sdf``                (S, N) f32        signed distance to the fitted mesh, negative inside
``votes``              (S, N, J, 4) f16  ``[h, ux, uy, uz]`` towards ``joints`` with ``radius``
``joints``             (S, J, 3) f32     target joints, camera frame
``smplx/<name>``       (S, D) f32        SMPL-X params re-expressed in the camera frame
``fit_mpjpe_mm``       (S,) f32          fit error of the frame against the mocap joints
``key``                (S,) str          "S1/Walking_1/54138969/000120"
``subject`` ``sequence`` ``camera`` (S,) str; ``frame`` (S,) int64 (0-based mocap frame)
====================== ================= ======================================================

Root attributes carry the schema (``schema``, ``schema_version``), units, SDF sign convention,
joint set name and joint names, vote radius and the sampler config as JSON.

Compression, measured on 2 shared CPU cores (h5py 3.16 / HDF5 2.0, 32 synthetic samples,
N = 5000, J = 17, r = 0.3 m, 87% of the votes zero, one sample per chunk; size ratio, write,
read MB/s): votes f16 none 1.00 / 338 / 1492, lzf 0.17 / 119 / 237, gzip-1 0.15 / 80 / 181,
gzip-4 0.14 / 48 / 221; points f32 none 1.00 / 530 / 271, lzf 1.00 / 47 / 91, gzip-1
0.93 / 16 / 44; sdf f32 lzf 1.01, gzip-1 0.94 at a fraction of the speed. So: lzf on votes
(6x smaller, fast, built into h5py so readers need no plugin), no filter on the floats,
JPEG bytes stored as they are.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.hashing import sha256_file
from fitting.joint_sets import get_joint_set
from fitting.smplx_params import SMPLX_PARAM_DIMS
from sampling.errors import ShardError

SCHEMA = "h36m-nvf-shard"
SCHEMA_VERSION = 1
INDEX_NAME = "index.json"
SHARD_PATTERN = re.compile(r"^shard-(?:[A-Za-z0-9_.-]+-)?\d{5}\.h5$")
"""Shard file names: ``shard-00000.h5`` or keyed ``shard-S1-Walking_1-54138969-00000.h5``."""


STRING_FIELDS = ("key", "subject", "sequence", "camera")
_POINT_FIELDS = ("points", "sdf", "votes")
_ARRAY_FIELDS = ("K", "cam_from_world_R", "cam_from_world_t", "root", "joints", "fit_mpjpe_mm", "frame",
                 *_POINT_FIELDS)

# Filters per dataset, chosen by measurement (module docstring).
_COMPRESSION = {"votes": "lzf"}


@dataclass(frozen=True)
class ShardConfig:
    """What every sample of a split shares; stored in each shard and in index.json."""

    joint_set: str = "h36m17"
    """Name of the target joint set (fitting.joint_sets), e.g. ``h36m17``."""
    radius: float = 0.3
    """Vote radius r in metres."""
    num_points: int = 5000
    """Query points N per sample."""
    image_size: int = 256
    """Side of the square crop in pixels."""
    jpeg_quality: int = 95
    """JPEG quality used when the writer is handed raw images."""
    sampler: Mapping = field(default_factory=dict)
    """The sampler's own config (JSON-serialisable), stored verbatim for provenance."""

    def to_json(self) -> dict:
        d = asdict(self)
        d["sampler"] = dict(self.sampler)
        return d


@dataclass(frozen=True)
class ShardSample:
    """One training sample as the sampler produces it (camera frame, metres)."""

    key: str
    """Provenance key "S1/Walking_1/54138969/000120" (subject/sequence/camera/frame)."""
    subject: str
    """Subject, e.g. "S1"."""
    sequence: str
    """Sequence basename with underscores, e.g. "Walking_1"."""
    camera: str
    """Camera id, e.g. "54138969"."""
    frame: int
    """0-based mocap frame index."""
    image: np.ndarray
    """(H, W, 3) uint8 BGR crop (encoded with the config's JPEG quality) or (L,) uint8 JPEG bytes."""
    K: np.ndarray
    """(3, 3) crop intrinsics."""
    cam_from_world_R: np.ndarray
    """(3, 3) rotation world → camera."""
    cam_from_world_t: np.ndarray
    """(3,) translation world → camera, metres."""
    root: np.ndarray
    """(3,) root joint in the camera frame."""
    points: np.ndarray
    """(N, 3) query points in the camera frame."""
    sdf: np.ndarray
    """(N,) signed distances, negative inside."""
    votes: np.ndarray
    """(N, J, 4) vote targets (sampling.votes.nvf_votes)."""
    joints: np.ndarray
    """(J, 3) target joints in the camera frame."""
    smplx: Mapping[str, np.ndarray]
    """SMPL-X params in the camera frame (see smplx_params_to_camera); keys SMPLX_PARAM_DIMS."""
    fit_mpjpe_mm: float = float("nan")
    """Fit error of this frame against the mocap joints, mm."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard as listed in index.json."""

    name: str
    samples: int
    sha256: str
    bytes: int


def shard_name(number: int, group: Sequence[str] = ()) -> str:
    """``shard-00003.h5``, or with a group ("S1", "Walking_1", "54138969")
    ``shard-S1-Walking_1-54138969-00003.h5``."""
    return "-".join(("shard", *group, f"{number:05d}")) + ".h5"


# --------------------------------------------------------------------------- writer
def _root_attrs(config: ShardConfig) -> dict:
    joint_set = get_joint_set(config.joint_set)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "units": "metres, radians; fit_mpjpe_mm in millimetres",
        "frame": "camera (OpenCV: x right, y down, z forward), X_cam = R @ X_world + t",
        "sdf_sign": "negative inside",
        "vote_layout": "h, ux, uy, uz",
        "joint_set": joint_set.name,
        "joint_names": json.dumps(list(joint_set.names)),
        "radius": float(config.radius),
        "num_points": int(config.num_points),
        "image_size": int(config.image_size),
        "config": json.dumps(config.to_json(), sort_keys=True),
    }


def _encode_image(image: np.ndarray, quality: int, key: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 1 and image.dtype == np.uint8:
        return image
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ShardError(f"sample {key}: image must be (H, W, 3) uint8 or JPEG bytes, got {image.dtype} {image.shape}")
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ShardError(f"sample {key}: JPEG encoding failed")
    return buf.reshape(-1)


def _stack(samples: Sequence[ShardSample], name: str, shape: tuple, dtype) -> np.ndarray:
    arrays = []
    for s in samples:
        a = np.asarray(getattr(s, name), dtype=dtype)
        if a.shape != shape:
            raise ShardError(f"sample {s.key}: {name} has shape {a.shape}, expected {shape}")
        arrays.append(a)
    return np.stack(arrays)


def _new_group(parent, name: str):
    """A group without modification times (HDF5 stamps them by default → non-deterministic bytes)."""
    import h5py

    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    gid = h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl)
    return h5py.Group(gid)


def write_shard(path: Path, samples: Sequence[ShardSample], config: ShardConfig) -> ShardInfo:
    """Write ``samples`` to ``path`` atomically (``path.tmp``, verify, os.replace); deterministic bytes."""
    import h5py

    if not samples:
        raise ShardError(f"{path}: refusing to write an empty shard")
    J = len(get_joint_set(config.joint_set))
    N = config.num_points
    S = len(samples)
    data = {
        "K": _stack(samples, "K", (3, 3), np.float32),
        "cam_from_world_R": _stack(samples, "cam_from_world_R", (3, 3), np.float32),
        "cam_from_world_t": _stack(samples, "cam_from_world_t", (3,), np.float32),
        "root": _stack(samples, "root", (3,), np.float32),
        "points": _stack(samples, "points", (N, 3), np.float32),
        "sdf": _stack(samples, "sdf", (N,), np.float32),
        "votes": _stack(samples, "votes", (N, J, 4), np.float16),
        "joints": _stack(samples, "joints", (J, 3), np.float32),
        "fit_mpjpe_mm": np.array([s.fit_mpjpe_mm for s in samples], np.float32),
        "frame": np.array([s.frame for s in samples], np.int64),
    }
    smplx = {}
    for name, dim in SMPLX_PARAM_DIMS.items():
        rows = []
        for s in samples:
            if name not in s.smplx:
                raise ShardError(f"sample {s.key}: SMPL-X parameter {name!r} missing")
            a = np.asarray(s.smplx[name], np.float32).reshape(-1)
            if a.shape != (dim,):
                raise ShardError(f"sample {s.key}: smplx {name} has {a.size} values, expected {dim}")
            rows.append(a)
        smplx[name] = np.stack(rows)
    images = [_encode_image(s.image, config.jpeg_quality, s.key) for s in samples]

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    # Built in memory, then written with plain writes: HDF5 crashes the process (segfault on
    # close) when a disk-full or file-size-limit error hits it mid-file.
    # libver pinned so the on-disk format does not depend on the HDF5 default; datasets and
    # groups without modification times make identical inputs byte-identical (tested). No
    # chunk cache: each chunk is written once, and a cached chunk would get its file space
    # when its dataset handle is closed, which Python may do late (a handle kept alive, or
    # h5py deferring the close while another thread holds its lock): the layout would vary.
    file_image = io.BytesIO()
    with h5py.File(file_image, "w", libver=("v110", "v110"), track_order=False, rdcc_nbytes=0) as f:
        for k, v in _root_attrs(config).items():
            f.attrs[k] = v
        for name, arr in data.items():
            chunks = (1, *arr.shape[1:]) if arr.ndim >= 2 and arr[0].size >= 64 else None
            f.create_dataset(name, data=arr, chunks=chunks, compression=_COMPRESSION.get(name),
                             track_times=False)
        img = f.create_dataset("image", shape=(S,), dtype=h5py.vlen_dtype(np.uint8), track_times=False)
        for i, buf in enumerate(images):
            img[i] = buf
        str_dtype = h5py.string_dtype("utf-8")
        for name in STRING_FIELDS:
            f.create_dataset(name, data=[str(getattr(s, name)) for s in samples], dtype=str_dtype,
                             track_times=False)
        g = _new_group(f, "smplx")
        for name, arr in smplx.items():
            g.create_dataset(name, data=arr, track_times=False)
    try:
        tmp.write_bytes(file_image.getbuffer())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ShardError(f"{path}: cannot write ({e.strerror or e})") from None
    problems = check_shard(tmp, None)
    if problems:
        tmp.unlink(missing_ok=True)
        raise ShardError(f"{path}: written shard failed verification: {problems[0]}")
    info = ShardInfo(path.name, S, sha256_file(tmp), tmp.stat().st_size)
    os.replace(tmp, path)
    return info


class ShardWriter:
    """Buffer samples and write ``<dir>/<split>/shard-NNNNN.h5`` every ``samples_per_shard``.

    ``close()`` (or leaving the ``with`` block without an exception) writes the last partial
    shard and ``index.json``. Samples are written in the order they are added, so the same
    inputs give byte-identical shards and index. ``first_shard`` lets independent writers
    (e.g. parallel units) fill disjoint number ranges; pass ``write_index=False`` to them and
    call ``write_index`` once at the end.
    """

    def __init__(self, dir, split: str, config: ShardConfig, samples_per_shard: int = 256,
                 first_shard: int = 0, write_index: bool = True):
        if samples_per_shard < 1:
            raise ValueError("samples_per_shard must be >= 1")
        self.split_dir = Path(dir) / split
        self.split = split
        self.config = config
        self.samples_per_shard = samples_per_shard
        self.next_shard = first_shard
        self.write_index_on_close = write_index
        self.written: list[ShardInfo] = []
        self._buffer: list[ShardSample] = []
        self.split_dir.mkdir(parents=True, exist_ok=True)

    def add(self, sample: ShardSample) -> None:
        self._buffer.append(sample)
        if len(self._buffer) >= self.samples_per_shard:
            self.flush()

    def extend(self, samples: Iterable[ShardSample]) -> None:
        for s in samples:
            self.add(s)

    def flush(self) -> None:
        """Write the buffered samples as one shard (no-op when empty)."""
        if not self._buffer:
            return
        info = write_shard(self.split_dir / shard_name(self.next_shard), self._buffer, self.config)
        self.written.append(info)
        self.next_shard += 1
        self._buffer = []

    def close(self) -> list[ShardInfo]:
        self.flush()
        if self.write_index_on_close:
            write_index(self.split_dir, self.config)
        return list(self.written)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()


def shard_entry(path, known: Mapping | None = None) -> dict:
    """The index entry of one shard file: name, samples, sha256, bytes (+ ``known``'s extras).

    ``known`` (e.g. from the writer's done-record or the previous index) is trusted when its
    size equals the file's; otherwise the file is hashed and opened.
    """
    import h5py

    path = Path(path)
    size = path.stat().st_size
    if known is not None and known.get("bytes") == size and known.get("sha256") and "samples" in known:
        return {**dict(known), "name": path.name}
    with h5py.File(path, "r") as f:
        samples = int(f["key"].shape[0])
    return {**dict(known or {}), **asdict(ShardInfo(path.name, samples, sha256_file(path), size))}


def write_index(split_dir, config: ShardConfig | None = None, known: Mapping[str, Mapping] | None = None,
                extra: Mapping | Callable[[list[dict]], Mapping] | None = None,
                exclude: Iterable[str] = ()) -> dict:
    """(Re)build ``index.json`` from the shards present in ``split_dir`` (sorted by name), atomically.

    ``known``: entries by shard name that need no re-hashing (see ``shard_entry``);
    ``extra``: more top-level fields, or a function of the entries giving them (e.g. a
    part's stride and frame count); ``exclude``: shard names left out (about to be rewritten
    or removed). Deterministic: the same shards give the same bytes.
    """
    import h5py

    split_dir = Path(split_dir)
    known = known or {}
    excluded = set(exclude)
    shards = [shard_entry(p, known.get(p.name))
              for p in sorted(split_dir.iterdir()) if SHARD_PATTERN.match(p.name) and p.name not in excluded]
    stored_config = None
    if config is None and shards:
        with h5py.File(split_dir / shards[0]["name"], "r") as f:
            stored_config = json.loads(f.attrs["config"])
    index = {
        **dict((extra(shards) if callable(extra) else extra) or {}),
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "split": split_dir.name,
        "samples": sum(s["samples"] for s in shards),
        "config": config.to_json() if config is not None else stored_config,
        "shards": shards,
    }
    text = json.dumps(index, indent=1, sort_keys=True) + "\n"
    path = split_dir / INDEX_NAME
    with contextlib.suppress(OSError):
        if path.read_text() == text:  # unchanged: keep the file (and its mtime) as it is
            return index
    tmp = split_dir / f".{INDEX_NAME}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return index


def read_index_entries(split_dir) -> dict[str, dict]:
    """Shard name → entry of the existing ``index.json`` ({} when there is none or it is unreadable)."""
    try:
        index = json.loads((Path(split_dir) / INDEX_NAME).read_text())
        return {s["name"]: s for s in index.get("shards", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def read_index(split_dir) -> dict:
    """The parsed ``index.json`` of a split folder; ShardError naming the file when unusable."""
    path = Path(split_dir) / INDEX_NAME
    if not path.is_file():
        raise ShardError(f"{path}: no shard index (is {split_dir} a shard split folder?)")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: not valid JSON ({e})") from None
    if index.get("schema") != SCHEMA:
        raise ShardError(f"{path}: schema {index.get('schema')!r}, expected {SCHEMA!r}")
    if index.get("schema_version") != SCHEMA_VERSION:
        raise ShardError(f"{path}: schema version {index.get('schema_version')}, this build reads {SCHEMA_VERSION}")
    return index


# --------------------------------------------------------------------------- reader
class ShardReader:
    """Read access to one shard file; use as a context manager or call ``close()``."""

    def __init__(self, path):
        import h5py

        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise ShardError(f"{self.path}: cannot open as HDF5 ({e})") from None
        attrs = self.file.attrs
        if attrs.get("schema") != SCHEMA or int(attrs.get("schema_version", -1)) != SCHEMA_VERSION:
            self.file.close()
            raise ShardError(f"{self.path}: not a {SCHEMA} v{SCHEMA_VERSION} shard")
        self.radius = float(attrs["radius"])
        self.joint_set = str(attrs["joint_set"])
        self.joint_names = tuple(json.loads(attrs["joint_names"]))
        self.config = json.loads(attrs["config"])
        # h5py resolves a name on every f[name]: look each dataset up once.
        self._ds = {name: self.file[name] for name in (*_ARRAY_FIELDS, *STRING_FIELDS, "image")}
        self._str = {name: self._ds[name].asstr() for name in STRING_FIELDS}

    def __len__(self) -> int:
        return int(self.file["key"].shape[0])

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def image_bytes(self, i: int) -> np.ndarray:
        return np.asarray(self._ds["image"][i], np.uint8)

    def sample(self, i: int, point_index: np.ndarray | None = None, smplx: bool = True) -> dict:
        """Sample ``i`` as numpy arrays (JPEG bytes under ``image``), points optionally subset."""
        out = {name: self._ds[name][i] for name in _ARRAY_FIELDS if name not in _POINT_FIELDS}
        # One chunk per sample: read it whole, then subset in memory (h5py fancy indexing is slow).
        for name in _POINT_FIELDS:
            a = self._ds[name][i]
            out[name] = a if point_index is None else a[point_index]
        for name in STRING_FIELDS:
            out[name] = self._str[name][i]
        if smplx:
            out["smplx"] = {k: self.file["smplx"][k][i] for k in self.file["smplx"]}
        out["image"] = self.image_bytes(i)
        return out


def open_shard(path) -> ShardReader:
    """Open one shard for reading (ShardError if it is not a readable shard of this schema)."""
    return ShardReader(path)


def check_shard(path, expected_sha256: str | None) -> list[str]:
    """One-line problems with a shard (empty when fine): missing, checksum, schema, shapes, data."""
    import h5py

    path = Path(path)
    if not path.is_file():
        return [f"{path}: missing"]
    problems = []
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            problems.append(f"{path}: sha256 {actual[:12]}… differs from index {expected_sha256[:12]}…")
    try:
        with h5py.File(path, "r") as f:
            problems += _check_open_shard(path, f)
    except Exception as e:  # noqa: BLE001 - any failure to read is the problem we report
        problems.append(f"{path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    return problems


def _check_open_shard(path: Path, f) -> list[str]:
    attrs = f.attrs
    if attrs.get("schema") != SCHEMA:
        return [f"{path}: schema attribute {attrs.get('schema')!r}, expected {SCHEMA!r}"]
    if int(attrs.get("schema_version", -1)) != SCHEMA_VERSION:
        return [f"{path}: schema version {attrs.get('schema_version')}, expected {SCHEMA_VERSION}"]
    J = len(json.loads(attrs["joint_names"]))
    N = int(attrs["num_points"])
    if "key" not in f:
        return [f"{path}: dataset 'key' missing"]
    S = int(f["key"].shape[0])
    expected = {
        "image": (S,), "K": (S, 3, 3), "cam_from_world_R": (S, 3, 3), "cam_from_world_t": (S, 3),
        "root": (S, 3), "points": (S, N, 3), "sdf": (S, N), "votes": (S, N, J, 4),
        "joints": (S, J, 3), "fit_mpjpe_mm": (S,), "frame": (S,),
        **{name: (S,) for name in STRING_FIELDS},
        **{f"smplx/{k}": (S, d) for k, d in SMPLX_PARAM_DIMS.items()},
    }
    problems = []
    for name, shape in expected.items():
        if name not in f:
            problems.append(f"{path}: dataset {name!r} missing")
        elif f[name].shape != shape:
            problems.append(f"{path}: dataset {name!r} has shape {f[name].shape}, expected {shape}")
    if problems:
        return problems
    # Read everything once: corrupt chunks and truncation show up as read errors here.
    for name in expected:
        arr = f[name][()]
        if arr.dtype.kind == "f" and not np.isfinite(arr).all() and name != "fit_mpjpe_mm":
            problems.append(f"{path}: dataset {name!r} holds non-finite values")
    return problems
