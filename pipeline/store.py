"""The work directory (``--out WORK``): layout, atomic writes, fingerprints, done-records, lock.

Layout (DESIGN.md "Work directory")::

    WORK/run.json                                   config + versions of each stage's last run
    WORK/params.yaml                                the stage options of the last run (read back)
    WORK/.lock                                      fcntl lock of the run holding WORK
    WORK/<stage>/done/<unit key>.done.json          done-record of one unit
    WORK/<stage>/failures.json                      units that failed in the stage's last run
    WORK/extract/<S>/<seq>/sequence.json            cameras, counts, fps, sources, quirks
    WORK/extract/<S>/<seq>/joints_world.npy         (T, 32, 3) float32, metres
    WORK/images/<S>/<S>_<seq>.<cam>_<frame+1:06d>.jpg
    WORK/fit/<S>/shape.npz   WORK/fit/<S>/<seq>.npz
    WORK/shards/<split>/shard-00000.h5 … index.json   WORK/h3wb/*.json   WORK/audit/index.html

Atomic writes: every output is written under a temporary name in its own folder
(``.<name>.<pid>-<random>.tmp``) and renamed into place with ``os.replace``, so a file with
its final name is always complete. Temporary names end in ``.tmp``; ``clean_temp_files``
removes leftovers of a killed run at the start of the next one (under the lock).

Fingerprints of input files: size and ``mtime_ns`` always, plus the sha256 of files up to
``SMALL_FILE_BYTES`` (metadata.xml, CDF poses). A recorded input still matches when size and
mtime_ns are equal, or, for small files, when the size and sha256 are equal (a copied or
touched file with the same bytes is not stale). Large files (videos) match on size and
mtime_ns only: hashing hundreds of GB of video at every run would cost more than the run.

Done-records (``*.done.json``): unit key, stage version, config hash and the options it
covers, input fingerprints, and each output's size and sha256. A unit is up to date when its
record exists, its config hash and inputs match, and every output exists with the recorded
size (sizes only: re-hashing every JPEG at every run is too slow; the sha256 is there for
audits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import io
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.hashing import sha256_file
from pipeline.errors import DataError, WorkDirBusy

PARAMS_NAME = "params.yaml"
"""The params file of a work dir (see ``Params``)."""
SMALL_FILE_BYTES = 16 * 2**20
"""Input files up to this size are fingerprinted with their sha256 as well."""
TMP_SUFFIX = ".tmp"
"""Every temporary file of an atomic write ends with this suffix."""
DONE_SUFFIX = ".done.json"
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})
"""OSError numbers that mean "this output cannot be written here" (disk full, quota, file-size
limit, read-only file system, no permission): reported as OutputError naming the file."""


class OutputError(DataError):
    """An output in WORK cannot be written (read-only folder, disk full, file-size limit).

    A DataError so the CLI shows it as one line (exit 1); the message names the file.
    """


def output_error(path: Path | str, error: OSError) -> OutputError:
    """``OutputError("<path>: cannot write (No space left on device)")``."""
    reason = error.strerror or str(error)
    return OutputError(f"{path}: cannot write ({reason})")

# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class WorkDir:
    """Paths inside one work directory (nothing is created until a writer needs it)."""

    root: Path
    """The work directory (``--out``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).absolute())

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def params_file(self) -> Path:
        return self.root / PARAMS_NAME

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def done_record(self, stage: str, key: str) -> Path:
        """``WORK/<stage>/done/<key>.done.json``; key parts ("S1/Walking_1/54138969") are folders."""
        check_unit_key(key)
        return self.stage_dir(stage) / "done" / (key + DONE_SUFFIX)

    def failures_json(self, stage: str) -> Path:
        return self.stage_dir(stage) / "failures.json"

    # extract
    def sequence_dir(self, subject: str, seq: str) -> Path:
        return self.extract_dir(subject) / seq

    def sequence_json(self, subject: str, seq: str) -> Path:
        return self.sequence_dir(subject, seq) / "sequence.json"

    def joints_world(self, subject: str, seq: str) -> Path:
        return self.sequence_dir(subject, seq) / "joints_world.npy"

    def image_name(self, subject: str, seq: str, camera: str, frame: int) -> str:
        """H3WB/SPIN naming, ``frame`` 0-based: ``S1_Walking_1.54138969_000001.jpg``."""
        return f"{subject}_{seq}.{camera}_{frame + 1:06d}.jpg"

    def images_dir(self, subject: str) -> Path:
        return self.root / "images" / subject

    def image(self, subject: str, seq: str, camera: str, frame: int) -> Path:
        return self.images_dir(subject) / self.image_name(subject, seq, camera, frame)

    def extract_dir(self, subject: str | None = None) -> Path:
        return self.root / "extract" / subject if subject else self.root / "extract"

    def fit_dir(self, subject: str | None = None) -> Path:
        return self.root / "fit" / subject if subject else self.root / "fit"

    # later stages
    @property
    def bodymodel_dir(self) -> Path:
        return self.root / "bodymodel"

    def fit_shape(self, subject: str) -> Path:
        return self.fit_dir(subject) / "shape.npz"

    def fit_sequence(self, subject: str, seq: str) -> Path:
        return self.fit_dir(subject) / f"{seq}.npz"

    def shards_dir(self, split: str) -> Path:
        return self.root / "shards" / split

    @property
    def h3wb_dir(self) -> Path:
        return self.root / "h3wb"

    @property
    def audit_index(self) -> Path:
        return self.root / "audit" / "index.html"

    def relative(self, path: Path) -> str:
        """``path`` relative to the root as a POSIX string (records survive moving WORK)."""
        return Path(path).absolute().relative_to(self.root).as_posix()

    def lock(self, wait: bool = False, shared: bool = False) -> WorkDirLock:
        return WorkDirLock(self.lock_path, wait=wait, shared=shared)


def sequence_folder_name(basename: str) -> str:
    """The release basename with spaces as underscores: "Walking 1" → "Walking_1"."""
    return basename.replace(" ", "_")


def check_unit_key(key: str) -> None:
    """Unit keys become file paths: relative, "/"-separated, no empty or dot parts."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"invalid unit key {key!r}")


# --------------------------------------------------------------------------- atomic writes


def temp_name(path: Path) -> Path:
    """A temporary sibling of ``path``, unique per process and call, ending in ``.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    For writers that want a file name (cv2.imwrite, h5py, np.savez): write to the yielded path.
    A write failure (disk full, read-only folder, file-size limit: ``WRITE_ERRNOS``) becomes
    an ``OutputError`` naming ``path``; the old file at ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            raise output_error(path, e) from e
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def canonical_json(obj) -> str:
    """Deterministic JSON text (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: Path | str, obj) -> None:
    atomic_write_bytes(path, canonical_json(obj).encode())


def atomic_write_npy(path: Path | str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_npz(path: Path | str, arrays) -> None:
    """An .npz of ``arrays`` (no pickles) with fixed member timestamps and order, atomically."""
    from common.zipfiles import write_npz

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write_npz(f, arrays)


def read_json(path: Path | str) -> dict:
    """Read a JSON file; DataError naming the file when it is unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable JSON ({e})") from e


def clean_temp_files(root: Path | str) -> list[Path]:
    """Remove every ``*.tmp`` file under ``root`` (leftovers of a killed run); return them.

    Call only while holding the work dir's lock: a running writer's temp files look the same.
    """
    removed = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(TMP_SUFFIX):
                p = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def fingerprint(path: Path | str) -> dict:
    """{"path", "size", "mtime_ns"} plus "sha256" for files up to SMALL_FILE_BYTES."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return {"path": str(path), "missing": True}
    fp = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if st.st_size <= SMALL_FILE_BYTES:
        fp["sha256"] = sha256_file(path)
    return fp


def fingerprint_matches(recorded: Mapping, current: Mapping) -> bool:
    """True when two fingerprints describe the same bytes (see the module docstring)."""
    if recorded.get("missing") or current.get("missing"):
        return bool(recorded.get("missing")) and bool(current.get("missing"))
    if recorded.get("size") != current.get("size"):
        return False
    if recorded.get("mtime_ns") == current.get("mtime_ns"):
        return True
    return "sha256" in recorded and recorded.get("sha256") == current.get("sha256")


class FingerprintCache:
    """Fingerprints computed once per run (many units share metadata.xml and a sequence's files).

    Cheap first: (size, mtime_ns) is taken for every lookup; the sha256 is computed only once
    per path and reused while size and mtime_ns stay the same.
    """

    def __init__(self) -> None:
        self._cache: dict[str, dict] = {}

    def __call__(self, path: Path | str) -> dict:
        path = str(Path(path).absolute())
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return {"path": path, "missing": True}
        hit = self._cache.get(path)
        if hit and hit["size"] == st.st_size and hit["mtime_ns"] == st.st_mtime_ns:
            return hit
        fp = fingerprint(path)
        self._cache[path] = fp
        return fp


# --------------------------------------------------------------------------- params file


@dataclass(frozen=True)
class Params:
    """``WORK/params.yaml``: every stage option of the last run, which each stage command reads
    back, so that a plain rerun reproduces it.

    YAML because people read and edit it (comments say who set a value); pyyaml comes with
    dask. Values are written as JSON flow scalars, which YAML reads back unchanged.
    """

    h36m: str | None = None
    """Release root of the last run that read the release."""
    stages: Mapping[str, Mapping[str, object]] = dataclasses.field(default_factory=dict)
    """Stage name → option field (``stride`` included) → value."""
    set_by: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    """Stage name → option field → what set it when not its default (e.g. "--crop on
    `h36m-nvf sample`, 2026-12-01 23:50"); values without an entry are the stage defaults."""


_PARAMS_HEADER = """\
# h36m-nvf: the stage options of the last run in this work dir (written by `run`, `demo` and
# each stage command). Each stage command reads its section back, so a plain rerun reproduces
# the last run; a flag on the command line overrides one value and is recorded under set_by
# (and in the comment beside it). Edit a value here to change it for the next run.
"""


def _yaml_scalar(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def format_params(params: Params) -> str:
    """The text of a params file (deterministic: sorted stages and keys)."""
    lines = [_PARAMS_HEADER.rstrip("\n"), f"h36m: {_yaml_scalar(params.h36m)}", "stages:"]
    for stage in sorted(params.stages):
        lines.append(f"  {stage}:")
        notes = params.set_by.get(stage, {})
        for key in sorted(params.stages[stage]):
            note = f"  # {notes[key]}" if key in notes else ""
            lines.append(f"    {key}: {_yaml_scalar(params.stages[stage][key])}{note}")
    lines.append("set_by:")
    for stage in sorted(s for s in params.set_by if params.set_by[s]):
        lines.append(f"  {stage}:")
        lines += [f"    {k}: {_yaml_scalar(v)}" for k, v in sorted(params.set_by[stage].items())]
    return "\n".join(lines) + "\n"


def write_params(work: WorkDir, params: Params) -> None:
    atomic_write_bytes(work.params_file, format_params(params).encode())


def read_params(work: WorkDir) -> Params:
    """The params file (an empty ``Params`` when there is none); DataError naming it when it is
    not a mapping of the documented shape."""
    import yaml

    path = work.params_file
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return Params()
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{path}: unreadable params file ({str(e).splitlines()[0]})") from e
    data = {} if data is None else data

    def table(value, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, dict) or v is None for v in value.values()):
            raise DataError(f"{path}: {what} must map each stage to its options")
        return {str(k): dict(v or {}) for k, v in value.items()}

    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with h36m, stages and set_by")
    unknown = sorted(set(data) - {"h36m", "stages", "set_by"})
    if unknown:
        raise DataError(f"{path}: unknown key {unknown[0]!r} (expected h36m, stages, set_by)")
    h36m = data.get("h36m")
    return Params(h36m=None if h36m is None else str(h36m), stages=table(data.get("stages"), "stages"),
                  set_by={s: {k: str(v) for k, v in t.items()} for s, t in table(data.get("set_by"), "set_by").items()})


# --------------------------------------------------------------------------- done-records


def write_done_record(
    work: WorkDir,
    stage: str,
    key: str,
    *,
    stage_version: str,
    params: Mapping,
    config_hash: str,
    inputs: Mapping[str, Mapping],
    outputs: list[Path],
    info: Mapping | None = None,
) -> dict:
    """Hash the outputs and write ``WORK/<stage>/done/<key>.done.json`` atomically."""
    record = {
        "unit": key,
        "stage": stage,
        "stage_version": stage_version,
        "config_hash": config_hash,
        "params": dict(params),
        "inputs": {name: dict(fp) for name, fp in inputs.items()},
        "outputs": {
            work.relative(p): {"size": Path(p).stat().st_size, "sha256": sha256_file(p)} for p in outputs
        },
        "info": dict(info or {}),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(work.done_record(stage, key), record)
    return record


def read_done_record(work: WorkDir, stage: str, key: str) -> dict | None:
    path = work.done_record(stage, key)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable record: treated as stale, never as up to date


def remove_done_record(work: WorkDir, stage: str, key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        work.done_record(stage, key).unlink()


def _plain(value):
    """``value`` as JSON would give it back (tuples → lists): what a record compares against."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def short_value(value, limit: int = 40) -> str:
    """A value for a one-line message: lists longer than 3 items and long texts shortened."""
    if isinstance(value, list) and len(value) > 3:
        return f"[{len(value)} items: {short_value(value[0], 20)}, …, {short_value(value[-1], 20)}]"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def changed_keys(old: Mapping, new: Mapping, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old, new) of every leaf that differs; dicts are compared key by key, so key
    order (and tuple vs list) is never a change; a key only one side has shows ``None``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((prefix + key, a, b))
    return out


def describe_changes(old: Mapping, new: Mapping, max_keys: int = 4) -> str:
    """"crop 128→256, stride 64→20": the changed keys with old → new values, shortened."""
    changes = changed_keys(_plain(dict(old)), _plain(dict(new)))
    parts = []
    for key, a, b in changes[:max_keys]:
        if isinstance(a, list) and isinstance(b, list) and (len(a) > 3 or len(b) > 3):
            gone, added = [x for x in a if x not in b], [x for x in b if x not in a]
            what = f"{key} {len(a)}→{len(b)} items"
            if added or gone:
                what += " (" + ", ".join(
                    [f"+{short_value(added[0], 30)}" + (f" and {len(added) - 1} more" if len(added) > 1 else "")]
                    * bool(added)
                    + [f"-{short_value(gone[0], 30)}" + (f" and {len(gone) - 1} more" if len(gone) > 1 else "")]
                    * bool(gone)) + ")"
            parts.append(what)
        else:
            parts.append(f"{key} {short_value(a)}→{short_value(b)}")
    if len(changes) > max_keys:
        parts.append(f"and {len(changes) - max_keys} more")
    return ", ".join(parts)


def unit_status(
    work: WorkDir,
    stage: str,
    key: str,
    *,
    config_hash: str,
    params: Mapping,
    inputs: Mapping[str, Mapping],
    outputs: list[Path],
    force: bool = False,
) -> str:
    """"missing" | "stale (why)" | "forced" | "up to date" for one unit.

    ``inputs`` are current fingerprints by role ("video", "mocap", ...); ``outputs`` the
    unit's output paths.
    """
    record = read_done_record(work, stage, key)
    if record is None:
        return "missing"
    if not record:
        return "stale (unreadable done-record)"
    if force:
        return "forced"
    if record.get("config_hash") != config_hash:
        changes = describe_changes(record.get("params", {}), params)
        if not changes:
            return f"stale (stage version {record.get('stage_version', '?')} changed)"
        return f"stale (options changed: {changes})"
    old_inputs = record.get("inputs", {})
    if set(old_inputs) != set(inputs):
        return "stale (different inputs)"
    for name, fp in inputs.items():
        if not fingerprint_matches(old_inputs[name], fp):
            return f"stale (input changed: {fp.get('path', name)})"
    recorded_outputs = record.get("outputs", {})
    for p in outputs:
        rel = work.relative(p)
        entry = recorded_outputs.get(rel)
        if entry is None:
            return f"stale (output not recorded: {rel})"
        try:
            size = Path(p).stat().st_size
        except FileNotFoundError:
            return f"stale (output missing: {rel})"
        if size != entry.get("size"):
            return f"stale (output modified: {rel})"
    return "up to date"


# --------------------------------------------------------------------------- lock


class WorkDirLock:
    """An exclusive ``fcntl.flock`` on ``WORK/.lock``; the OS drops it when the process dies.

    ``shared``: the read side (``audit``): any number of readers, never beside a run. With
    ``wait``, a busy lock is waited for after one line on stderr saying what for.
    Use as a context manager. Holds the holder's pid in the file for the busy message.
    """

    def __init__(self, path: Path, wait: bool = False, shared: bool = False) -> None:
        self.path = Path(path)
        self.wait = wait
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # a read-only WORK: say so before any unit runs
            if e.errno in WRITE_ERRNOS:
                raise output_error(self.path, e) from None
            raise
        try:
            fcntl.flock(fd, self.mode | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) and self.wait:
                import sys  # said once, on stderr: a silent wait looks like a hang

                print(f"waiting for the run holding {self.path.parent}{holder} to finish…",
                      file=sys.stderr, flush=True)
                try:
                    fcntl.flock(fd, self.mode)
                except BaseException:
                    os.close(fd)
                    raise
            else:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise WorkDirBusy(
                        f"{self.path.parent}: another run holds this work dir{holder}; "
                        "wait for it to finish or pass --wait"
                    ) from None
                raise
        if not self.shared:  # readers leave the writer's pid for the busy message
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    @property
    def mode(self) -> int:
        return fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
