"""Human3.6M ``metadata.xml``: read it into a typed record, write it in the official structure.

The official file (root ``<a>``) holds, among others:

- ``mapping``: a table ``tr/td``: a header row (Action, subaction, S1..S11), one row per
  (action id, subaction) with one sequence basename per subject, then a second header row
  (subject names) and a row with each subject's per-camera resolution ``[H W;H W;H W;H W]``;
- ``frames``: one row per subject (S1..S11), one cell per mapping row:
  ``[n_cam1 n_cam2 n_cam3 n_cam4 n_mocap200Hz]``;
- ``skel_pos/tree/item``: the 32-joint skeleton (name, id, 1-based parent, 0 = none);
- ``train_subjects``/``val_subjects``/``test_subjects``: ``[1 7 8 9 11]``;
- ``w0``: 300 numbers holding every camera (see :func:`pipeline.release.cameras.camera_from_w0`);
- ``dbcameras/index2id/item``: the 4 camera ids in index order;
- ``actionnames/item``: 16 action names, ids 1..16;
- ``toffiles`` (time offsets per sequence), ``skel_angles`` (the BVH tree of D3_Angles, see
  :mod:`pipeline.release.angles`), ``dbcameras/projectionParams``, ``subject_measurements``:
  written in the official structure (every element path of the real file), read where used.

:func:`default_metadata` returns these public facts as embedded in ``pipeline/data``.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.release.cameras import W0_LENGTH, Camera, camera_from_w0

EMBEDDED_METADATA = "h36m_metadata.json"
"""File in ``pipeline/data`` holding the public metadata facts as JSON."""

SequenceKey = tuple[int, int]
"""(action id, subaction) as in the mapping table, e.g. (14, 1)."""


@dataclass(frozen=True, eq=False)
class Metadata:
    """The content of a metadata.xml that the pipeline uses."""

    subjects: tuple[str, ...]
    """Subject ids of the mapping table's columns, in order ("S1".."S11"); w0's subject index."""
    mapping: dict[SequenceKey, dict[str, str]]
    """{(action id, subaction): {subject: basename}}, e.g. {(4, 1): {"S1": "Eating 2", ...}}."""
    action_names: dict[int, str]
    """Action names by id (1..16) as the file spells them ("TakingPhoto", "WalkingDog")."""
    camera_ids: tuple[str, ...]
    """Camera ids in index order."""
    w0: np.ndarray
    """(300,) float64 calibration vector (read-only)."""
    joint_names: tuple[str, ...] = ()
    """Skeleton joint names (32, ``skel_pos``), index order."""
    joint_parents: tuple[int, ...] = ()
    """0-based parent per joint, -1 for the root."""
    train_subjects: tuple[str, ...] = ()
    """The release's own train split ("S1", "S7", ...)."""
    val_subjects: tuple[str, ...] = ()
    """The release's own validation split."""
    test_subjects: tuple[str, ...] = ()
    """The release's own test split (subjects without public poses)."""
    resolution_hw: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    """Per subject, per camera index: (height, width) in pixels."""
    frames: dict[str, dict[SequenceKey, tuple[int, ...]]] = field(default_factory=dict)
    """Per subject, per (action, subaction): the file's frame counts (4 cameras, then mocap)."""
    actor_names: tuple[str, ...] = ()
    """One name per subject column (the mapping's second header row and ``toffiles``' header);
    empty: the subject ids."""
    skel_angles_offsets_mm: tuple[tuple[float, float, float], ...] = ()
    """(32, 3) ``skel_angles`` bone offsets in the parent's frame, mm (the D3_Angles skeleton:
    the limb lengths shared by all subjects); empty: zeros."""
    subject_measurements: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Per subject, the ``subject_measurements`` row (the real file: 29 points × xyz, mm)."""

    def __post_init__(self):
        w0 = np.array(self.w0, dtype=np.float64)
        w0.setflags(write=False)
        object.__setattr__(self, "w0", w0)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Metadata):
            return NotImplemented
        names = [f for f in self.__dataclass_fields__ if f != "w0"]
        return all(getattr(self, n) == getattr(other, n) for n in names) and np.array_equal(
            self.w0, other.w0)

    __hash__ = None

    def __reduce__(self):  # through __init__, so the unpickled w0 is read-only too
        return (Metadata, tuple(getattr(self, f) for f in self.__dataclass_fields__))

    def subject_index(self, subject: str) -> int:
        """Index of ``subject`` in the table (and in w0's extrinsics)."""
        try:
            return self.subjects.index(subject)
        except ValueError:
            raise DataError(f"metadata: unknown subject {subject!r}") from None

    def basename(self, subject: str, action_id: int, subaction: int) -> str:
        """The release's file basename of a sequence, e.g. ("S1", 4, 1) → "Eating 2"."""
        return self.mapping[(action_id, subaction)][subject]

    def camera(self, subject: str, camera_index: int, width: int | None = None,
               height: int | None = None) -> Camera:
        """Camera ``camera_index`` of ``subject``; size from the resolution table by default."""
        if width is None or height is None:
            table = self.resolution_hw.get(subject)
            if not table:
                raise DataError(f"metadata: no resolution for {subject}; pass width and height")
            height, width = table[camera_index]
        return camera_from_w0(self.w0, self.subject_index(subject), camera_index, width, height,
                              self.camera_ids[camera_index])

    def to_json(self) -> dict:
        """Plain JSON (the format of ``pipeline/data/h36m_metadata.json``)."""
        def key(k: SequenceKey) -> str:
            return f"{k[0]}-{k[1]}"

        return {
            "subjects": list(self.subjects),
            "camera_ids": list(self.camera_ids),
            "action_names_by_id": {str(i): n for i, n in self.action_names.items()},
            "mapping": {s: {key(k): row[s] for k, row in self.mapping.items() if s in row}
                        for s in self.subjects},
            "frames": {s: {key(k): list(v) for k, v in rows.items()} for s, rows in self.frames.items()},
            "resolution_hw": {s: [list(hw) for hw in v] for s, v in self.resolution_hw.items()},
            "train_subjects": list(self.train_subjects),
            "val_subjects": list(self.val_subjects),
            "test_subjects": list(self.test_subjects),
            "skeleton": {"names": list(self.joint_names), "parents": list(self.joint_parents)},
            "w0": self.w0.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> Metadata:
        def key(text: str) -> SequenceKey:
            a, s = text.split("-")
            return int(a), int(s)

        subjects = tuple(data["subjects"])
        mapping: dict[SequenceKey, dict[str, str]] = {}
        for subject in subjects:
            for k, basename in data["mapping"].get(subject, {}).items():
                mapping.setdefault(key(k), {})[subject] = basename
        return cls(
            subjects=subjects,
            mapping=dict(sorted(mapping.items())),
            action_names={int(i): n for i, n in data["action_names_by_id"].items()},
            camera_ids=tuple(data["camera_ids"]),
            w0=np.asarray(data["w0"], dtype=np.float64),
            joint_names=tuple(data.get("skeleton", {}).get("names", ())),
            joint_parents=tuple(data.get("skeleton", {}).get("parents", ())),
            train_subjects=tuple(data.get("train_subjects", ())),
            val_subjects=tuple(data.get("val_subjects", ())),
            test_subjects=tuple(data.get("test_subjects", ())),
            resolution_hw={s: tuple(tuple(hw) for hw in v)
                           for s, v in data.get("resolution_hw", {}).items()},
            frames={s: {key(k): tuple(v) for k, v in rows.items()}
                    for s, rows in data.get("frames", {}).items()},
        )


def default_metadata() -> Metadata:
    """The public Human3.6M metadata embedded in ``pipeline/data`` (real calibration)."""
    text = resources.files("pipeline.release.data").joinpath(EMBEDDED_METADATA).read_text("utf-8")
    return Metadata.from_json(json.loads(text))


# --- reading ---------------------------------------------------------------------------------

_NUMBER_LIST = re.compile(r"^\s*\[?([^\[\]]*)\]?\s*$")


def _numbers(text: str | None, path: Path, what: str) -> list[float]:
    """Parse a bracketed MATLAB-style list "[1 2 3]" (or a bare number)."""
    m = _NUMBER_LIST.match(text or "")
    if m is None:
        raise DataError(f"{path}: {what} is not a list of numbers")
    try:
        return [float(x) for x in m.group(1).replace(";", " ").replace(",", " ").split()]
    except ValueError:
        raise DataError(f"{path}: {what} holds a non-number") from None


def _required(root: ET.Element, tag: str, path: Path) -> ET.Element:
    element = root.find(tag)
    if element is None:
        raise DataError(f"{path}: no <{tag}> element (not a Human3.6M metadata.xml?)")
    return element


def _cells(tr: ET.Element) -> list[str]:
    return [(td.text or "").strip() for td in tr.findall("td")]


def _subject_list(root: ET.Element, tag: str, path: Path) -> tuple[str, ...]:
    element = root.find(tag)
    if element is None:
        return ()
    return tuple(f"S{int(n)}" for n in _numbers(element.text, path, f"<{tag}>"))


def _read_mapping(root: ET.Element, path: Path):
    """(subjects, mapping, row keys in file order, resolution per subject)."""
    rows = [_cells(tr) for tr in _required(root, "mapping", path).findall("tr")]
    if not rows or rows[0][:2] != ["Action", "subaction"] or len(rows[0]) < 3:
        raise DataError(f"{path}: <mapping> lacks its header row (Action, subaction, S1, ...)")
    subjects = tuple(rows[0][2:])
    mapping: dict[SequenceKey, dict[str, str]] = {}
    keys: list[SequenceKey] = []
    resolution: dict[str, tuple[tuple[int, int], ...]] = {}
    actors: tuple[str, ...] = ()
    for cells in rows[1:]:
        if cells[:2] == ["Action", "subaction"]:
            actors = tuple(cells[2:]) if tuple(cells[2:]) != subjects else ()
            continue  # second header (the actors' names)
        if cells[:2] == ["", ""]:  # the resolution row: "[H W;H W;H W;H W]" per subject
            for subject, text in zip(subjects, cells[2:], strict=False):
                hw = [int(v) for v in _numbers(text, path, f"<mapping> resolution of {subject}")]
                if len(hw) % 2:
                    raise DataError(f"{path}: <mapping> resolution of {subject} is not [H W;...]")
                if hw:
                    resolution[subject] = tuple(zip(hw[0::2], hw[1::2], strict=True))
            continue
        try:
            key = (int(cells[0]), int(cells[1]))
        except ValueError:
            raise DataError(f"{path}: <mapping> row {cells[:2]} is not (action id, subaction)") from None
        if len(cells) != len(subjects) + 2:
            raise DataError(f"{path}: <mapping> row {key} has {len(cells) - 2} basenames "
                            f"for {len(subjects)} subjects")
        mapping[key] = dict(zip(subjects, cells[2:], strict=True))
        keys.append(key)
    return subjects, mapping, keys, resolution, actors


def _read_measurements(root: ET.Element, path: Path, subjects) -> dict[str, tuple[float, ...]]:
    text = (root.findtext("subject_measurements") or "").strip().strip("[]")
    rows = text.split(";") if text else []
    out = {}
    for subject, row in zip(subjects, rows, strict=False):
        values = _numbers(row, path, f"<subject_measurements> of {subject}")
        if values:
            out[subject] = tuple(values)
    return out


def _read_frames(root: ET.Element, path: Path, subjects, keys):
    element = root.find("frames")
    frames: dict[str, dict[SequenceKey, tuple[int, ...]]] = {}
    if element is None:
        return frames
    for subject, tr in zip(subjects, element.findall("tr"), strict=False):
        cells = _cells(tr)[1:]
        counts = {}
        for key, text in zip(keys, cells, strict=False):
            values = _numbers(text, path, f"<frames> of {subject} {key}")
            if values:
                counts[key] = tuple(int(v) for v in values)
        if counts:
            frames[subject] = counts
    return frames


def _read_w0(root: ET.Element, path: Path) -> np.ndarray:
    element = root.find("w0")
    if element is None:
        raise DataError(f"{path}: no <w0> element (the camera calibration)")
    w0 = np.array(_numbers(element.text, path, "<w0>"), dtype=np.float64)
    if w0.shape != (W0_LENGTH,):
        raise DataError(f"{path}: <w0> holds {w0.size} numbers, expected {W0_LENGTH}")
    if not np.isfinite(w0).all():
        raise DataError(f"{path}: <w0> holds NaN or infinite values")
    return w0


def _read_angle_offsets(root: ET.Element, path: Path) -> tuple[tuple[float, float, float], ...]:
    offsets = []
    for item in root.findall("skel_angles/tree/item"):
        values = _numbers(item.findtext("offset"), path, "<skel_angles> offset")
        if len(values) != 3:
            raise DataError(f"{path}: <skel_angles> offset of {item.findtext('name')!r} is not 3 numbers")
        offsets.append(tuple(values))
    return tuple(offsets) if any(any(o) for o in offsets) else ()  # all zero = not given


def _read_skeleton(root: ET.Element, path: Path) -> tuple[tuple[str, ...], tuple[int, ...]]:
    items = root.findall("skel_pos/tree/item")
    names, parents = [], []
    for item in items:
        names.append((item.findtext("name") or "").strip())
        try:
            parents.append(int(item.findtext("parent")) - 1)  # 1-based, 0 = no parent
        except (TypeError, ValueError):
            raise DataError(f"{path}: <skel_pos> joint {names[-1]!r} has no integer parent") from None
    return tuple(names), tuple(parents)


def read_metadata(path: str | os.PathLike) -> Metadata:
    """Read a Human3.6M metadata.xml; DataError (naming the file) when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metadata file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: not valid XML ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    subjects, mapping, keys, resolution, actors = _read_mapping(root, path)
    w0 = _read_w0(root, path)
    camera_ids = tuple((i.text or "").strip() for i in _required(root, "dbcameras/index2id", path))
    if len(camera_ids) != 4:
        raise DataError(f"{path}: <dbcameras/index2id> lists {len(camera_ids)} cameras, expected 4")
    names = [(i.text or "").strip() for i in _required(root, "actionnames", path).findall("item")]
    joint_names, joint_parents = _read_skeleton(root, path)
    return Metadata(
        subjects=subjects,
        mapping=mapping,
        action_names={i + 1: n for i, n in enumerate(names)},
        camera_ids=camera_ids,
        w0=w0,
        joint_names=joint_names,
        joint_parents=joint_parents,
        train_subjects=_subject_list(root, "train_subjects", path),
        val_subjects=_subject_list(root, "val_subjects", path),
        test_subjects=_subject_list(root, "test_subjects", path),
        resolution_hw=resolution,
        frames=_read_frames(root, path, subjects, keys),
        skel_angles_offsets_mm=_read_angle_offsets(root, path),
        actor_names=actors,
        subject_measurements=_read_measurements(root, path, subjects),
    )


# --- writing ---------------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _row(parent: ET.Element, cells) -> None:
    tr = _sub(parent, "tr")
    for cell in cells:
        _sub(tr, "td", cell if cell else None)


def _bracket(values) -> str:
    return "[" + " ".join(str(v) for v in values) + "]"


def _subject_numbers(subjects) -> str:
    return _bracket(int(s[1:]) for s in subjects)


_IDENTITY = "[1 0 0;0 1 0;0 0 1]"


def _children_text(parents, j: int) -> str | None:
    children = [str(c + 1) for c, p in enumerate(parents) if p == j]
    if not children:
        return None
    return children[0] if len(children) == 1 else _bracket(children)


def _number(v: float) -> str:
    return repr(float(v)).removesuffix(".0") if float(v) != 0 else "0"


def _write_skeleton(root: ET.Element, tag: str, names, parents, offsets=None) -> None:
    """``skel_pos`` (32 position channels) or ``skel_angles`` (the BVH tree of D3_Angles)
    with every element of the official items."""
    from pipeline.release.angles import ANGLE_CHANNELS, ROTATION_ORDER, rot_ind

    angles = tag == "skel_angles"
    skel = _sub(root, tag)
    for key, text in (("type", "bvh"), ("mass", "1"), ("length", "1"), ("angle", "deg"),
                      ("documentation", None), ("name", "h36m-nvf synthetic skeleton")):
        _sub(skel, key, text)
    tree = _sub(skel, "tree")
    positions = ("Xposition", "Yposition", "Zposition")
    for j, (name, parent) in enumerate(zip(names, parents, strict=True)):
        item = _sub(tree, "item")
        _sub(item, "name", name)
        _sub(item, "id", str(j))
        offset = offsets[j] if angles and offsets else (0.0, 0.0, 0.0)
        _sub(item, "offset", _bracket(_number(v) for v in offset))
        _sub(item, "orientation")
        _sub(item, "axis", "[0 0 0]")
        _sub(item, "axisOrder")
        _sub(item, "C", _IDENTITY)
        _sub(item, "Cinv", _IDENTITY)
        channels = _sub(item, "channels")
        rot = rot_ind(names, j) if angles else None
        if angles:
            chosen = (*positions, *ANGLE_CHANNELS) if parent < 0 else (ANGLE_CHANNELS if rot else ())
        else:
            chosen = positions
        for channel in chosen:
            _sub(channels, "item", channel)
        _sub(item, "bodymass")
        _sub(item, "confmass")
        _sub(item, "parent", str(parent + 1))
        _sub(item, "order", (ROTATION_ORDER if rot else None) if angles else "xyz")
        _sub(item, "rotInd", _bracket(rot) if rot else None)
        pos = "[1 2 3]" if parent < 0 else None
        _sub(item, "posInd", pos if angles else _bracket(range(3 * j + 1, 3 * j + 4)))
        _sub(item, "children", _children_text(parents, j))
        _sub(item, "limits")
        if not angles:
            _sub(item, "relative", "[false]")


def _write_toffiles(root: ET.Element, metadata: Metadata, names) -> None:
    """``toffiles``: per (action, subaction) and subject a time offset; 0 (our videos and
    mocap start together), -1 where the subject has no such sequence."""
    table = _sub(root, "toffiles")
    _row(table, ["Action", "subaction", *names])
    for key, row in metadata.mapping.items():
        _row(table, [str(key[0]), str(key[1]), *("0" if row.get(s) else "-1" for s in metadata.subjects)])


def _projection_params(metadata: Metadata) -> list[str]:
    """40 ``projectionParams`` items. Their layout in the real file is undocumented; ours hold,
    per camera index and the first 10 subjects, ``[angles(3) centre_mm(3) f(2) c(2) k(3)
    p(2)]`` from w0."""
    from pipeline.release.cameras import W0_INTRINSICS_OFFSET

    w0 = metadata.w0
    items = []
    for c in range(4):
        intr = w0[W0_INTRINSICS_OFFSET + 9 * c: W0_INTRINSICS_OFFSET + 9 * c + 9]
        for s in range(10):
            b = 6 * (c * 11 + s)
            items.append(_bracket(repr(float(v)) for v in (*w0[b:b + 6], *intr)))
    return items


def _subject_measurements(metadata: Metadata) -> str:
    rows = [" ".join(repr(float(v)) for v in metadata.subject_measurements.get(s, ()))
            for s in metadata.subjects]
    return "[" + ";".join(rows) + "]"


def metadata_xml(metadata: Metadata) -> ET.ElementTree:
    """The official element structure of metadata.xml for ``metadata``."""
    root = ET.Element("a")
    mapping = _sub(root, "mapping")
    _row(mapping, ["Action", "subaction", *metadata.subjects])
    keys = list(metadata.mapping)
    for key in keys:
        row = metadata.mapping[key]
        _row(mapping, [str(key[0]), str(key[1]), *(row.get(s, "") for s in metadata.subjects)])
    names = list(metadata.actor_names) or list(metadata.subjects)
    if metadata.resolution_hw:
        _row(mapping, ["Action", "subaction", *names])
        _row(mapping, ["", "", *(
            "[" + ";".join(f"{h} {w}" for h, w in metadata.resolution_hw[s]) + "]"
            if s in metadata.resolution_hw else "" for s in metadata.subjects)])
    _write_toffiles(root, metadata, names)
    if metadata.frames:
        frames = _sub(root, "frames")
        for subject in metadata.subjects:
            counts = metadata.frames.get(subject, {})
            _row(frames, ["", *(_bracket(counts[k]) if k in counts else "[]" for k in keys)])
    if metadata.joint_names:
        _write_skeleton(root, "skel_angles", metadata.joint_names, metadata.joint_parents,
                        metadata.skel_angles_offsets_mm)
        _write_skeleton(root, "skel_pos", metadata.joint_names, metadata.joint_parents)
    for tag in ("train_subjects", "val_subjects", "test_subjects"):
        _sub(root, tag, _subject_numbers(getattr(metadata, tag)))
    _sub(root, "w0", _bracket(repr(float(v)) for v in metadata.w0))  # repr: exact round trip
    index2id = _sub(_sub(root, "dbcameras"), "index2id")
    for camera_id in metadata.camera_ids:
        _sub(index2id, "item", camera_id)
    projection = _sub(root.find("dbcameras"), "projectionParams")
    for text in _projection_params(metadata):
        _sub(projection, "item", text)
    actions = _sub(root, "actionnames")
    for action_id in sorted(metadata.action_names):
        _sub(actions, "item", metadata.action_names[action_id])
    _sub(root, "subject_measurements", _subject_measurements(metadata))
    tree = ET.ElementTree(root)
    ET.indent(tree, space="   ")
    return tree


def write_metadata(path: str | os.PathLike, metadata: Metadata) -> Path:
    """Write ``metadata`` as a metadata.xml in the official structure (atomic). Returns path."""
    path = Path(path)
    if sorted(metadata.action_names) != list(range(1, len(metadata.action_names) + 1)):
        raise ValueError("action ids must run 1..N (the file stores names by position)")
    tmp = path.with_name(path.name + ".tmp")
    metadata_xml(metadata).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
    return path
