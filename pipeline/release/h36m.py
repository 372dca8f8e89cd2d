"""The Human3.6M release on disk → typed Sequence records (cameras, mocap, videos, quirks).

Layout (real release and the synthetic one alike)::

    <root>/metadata.xml
    <root>/S1/Videos/<basename>.<camera>.mp4                 50 fps
    <root>/S1/MyPoseFeatures/D3_Positions/<basename>.cdf     world joints, mm, (1, T, 96)
    <root>/S1/MyPoseFeatures/<feature>/...                   optional (POSE_FEATURES)
    <root>/S1/MySegmentsMat/ground_truth_b{b,s}/<basename>.<camera>.mat   optional masks

Basenames come from metadata.xml's mapping table, never built from action names. Quirks
(:mod:`pipeline.release.quirks`) are applied and noted per sequence; anything unexpected is recorded
in ``problems`` rather than raised, so a stage can skip one bad sequence and go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.units import MM_PER_M
from pipeline.errors import DataError
from pipeline.release import quirks
from pipeline.release.cameras import Camera
from pipeline.release.masks import MASK_KINDS, MaskFile, mask_path, probe_mask_file
from pipeline.release.metadata import Metadata, read_metadata
from pipeline.selection import H36M_SUBJECTS, Selection

SUBJECTS_WITH_DATA: tuple[str, ...] = H36M_SUBJECTS
"""Subjects whose poses are public (the others are the withheld test set)."""
CAMERA_IDS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")
"""Camera ids in index order (metadata.xml ``dbcameras/index2id``)."""
ACTIONS: dict[int, str] = dict(quirks.CANONICAL_ACTIONS)
"""Canonical action names by metadata action id (2..16)."""

POSE_VARIABLE = "Pose"
"""The CDF variable holding the poses, shape (1, T, D)."""
POSE_COLUMNS = (96, 64)
"""D of 3D (32 joints × xyz) and 2D (32 joints × uv) pose files."""
NUM_JOINTS = 32
FPS = 50.0
"""Video and D3_Positions frame rate."""

METADATA_FILE = "metadata.xml"
VIDEOS_DIR = "Videos"
MOCAP_DIR = Path("MyPoseFeatures") / "D3_Positions"
VIDEO_SUFFIX = ".mp4"
MOCAP_SUFFIX = ".cdf"
POSE_FEATURES = {
    "D3_Positions_mono": True, "D2_Positions": True, "D3_Positions_mono_universal": True,
    "D3_Angles": False, "D3_Angles_mono": True,
}
"""Optional MyPoseFeatures folders beside D3_Positions: name → one file per camera."""
MAX_LISTED = 5
"""Absent sequences named per subject in Release.problems before "and N more"."""


def video_path(root: Path, subject: str, basename: str, camera: str) -> Path:
    return Path(root) / subject / VIDEOS_DIR / f"{basename}.{camera}{VIDEO_SUFFIX}"


def mocap_path(root: Path, subject: str, basename: str) -> Path:
    return Path(root) / subject / MOCAP_DIR / f"{basename}{MOCAP_SUFFIX}"


def image_name(subject: str, sequence_name: str, camera: str, frame_index: int) -> str:
    """SPIN/mmhuman3d/H3WB frame name: ``S1_Walking_1.54138969_000001.jpg`` (1-based)."""
    return f"{subject}_{sequence_name}.{camera}_{frame_index + 1:06d}.jpg"


# --- CDF poses -------------------------------------------------------------------------------


def read_pose_cdf(path: str | os.PathLike, columns: int | tuple[int, ...] = POSE_COLUMNS) -> np.ndarray:
    """The ``Pose`` variable of a Human3.6M CDF as (T, D) float64 (file units: mm or px).

    DataError (naming the file) when it is missing, unreadable, not (1, T, D) with D in
    ``columns``, empty, or holds NaN/inf.
    """
    import cdflib

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pose file not found")
    try:
        pose = np.asarray(cdflib.CDF(str(path)).varget(POSE_VARIABLE))
    except Exception as e:  # cdflib raises assorted types for broken files
        raise DataError(f"{path}: unreadable CDF or no '{POSE_VARIABLE}' variable ({e})") from None
    columns = (columns,) if isinstance(columns, int) else tuple(columns)
    if pose.ndim == 2:  # one frame files come back without the frame axis
        pose = pose[None]
    if pose.ndim != 3 or pose.shape[0] != 1 or pose.shape[2] not in columns:
        raise DataError(f"{path}: '{POSE_VARIABLE}' has shape {pose.shape}, expected (1, T, D) "
                        f"with D in {columns}")
    pose = pose[0].astype(np.float64)
    if pose.shape[0] == 0:
        raise DataError(f"{path}: '{POSE_VARIABLE}' holds no frames")
    bad = ~np.isfinite(pose).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: NaN or infinite values in {int(bad.sum())} frame(s), first at "
                        f"frame {int(np.argmax(bad))}")
    return pose


def write_pose_cdf(path: str | os.PathLike, pose: np.ndarray, dtype=np.float32) -> Path:
    """Write (T, D) poses as a Human3.6M-style CDF (variable ``Pose``, (1, T, D)); atomic.

    ``dtype`` float32 (``CDF_FLOAT``, like the release) or float64 (``CDF_DOUBLE``).
    """
    from cdflib.cdfwrite import CDF

    path = Path(path)
    pose = np.asarray(pose)
    if pose.ndim != 2 or pose.shape[0] == 0:
        raise ValueError(f"pose must be (T, D) with T ≥ 1, got shape {pose.shape}")
    dtype = np.dtype(dtype)
    kind = {np.dtype(np.float32): CDF.CDF_FLOAT, np.dtype(np.float64): CDF.CDF_DOUBLE}[dtype]
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{MOCAP_SUFFIX}")  # cdflib wants .cdf
    writer = CDF(str(tmp), cdf_spec={"Majority": "row_major"}, delete=True)
    try:
        writer.write_var(
            {"Variable": POSE_VARIABLE, "Data_Type": kind, "Num_Elements": 1, "Rec_Vary": True,
             "Dim_Sizes": list(pose.shape)},
            var_data=pose.astype(dtype)[None],
        )
    finally:
        writer.close()
    os.replace(tmp, path)
    return path


def read_mocap_world(path: str | os.PathLike) -> np.ndarray:
    """D3_Positions CDF → (T, 32, 3) float64 world joints in metres."""
    pose = read_pose_cdf(path, columns=NUM_JOINTS * 3)
    return pose.reshape(len(pose), NUM_JOINTS, 3) / MM_PER_M


def count_pose_frames(path: str | os.PathLike) -> int:
    """T of a pose CDF from its header (cheap); DataError when unreadable or misshapen."""
    import cdflib

    path = Path(path)
    try:
        info = cdflib.CDF(str(path)).varinq(POSE_VARIABLE)
    except Exception as e:
        raise DataError(f"{path}: unreadable CDF or no '{POSE_VARIABLE}' variable ({e})") from None
    dims = list(info.Dim_Sizes)
    if len(dims) != 2 or dims[1] not in POSE_COLUMNS or info.Last_Rec != 0:
        raise DataError(f"{path}: '{POSE_VARIABLE}' has dims {dims} in {info.Last_Rec + 1} "
                        "record(s), expected one record of (T, D)")
    return int(dims[0])


# --- videos ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about a video."""

    frames: int
    """Frame count (``cv2.CAP_PROP_FRAME_COUNT``)."""
    width: int
    """Frame width in pixels."""
    height: int
    """Frame height in pixels."""
    fps: float
    """Frames per second."""


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, size and fps of a video via OpenCV; DataError when it cannot be opened."""
    import cv2

    path = Path(path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DataError(f"{path}: cannot open video")
        info = VideoInfo(
            frames=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
        )
    finally:
        capture.release()
    if info.frames <= 0 or info.width <= 0 or info.height <= 0:
        raise DataError(f"{path}: video reports {info.frames} frames of {info.width}×{info.height}")
    return info


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sequence:
    """One (subject, action, subaction) recording: four videos and one mocap file."""

    subject: str
    """Subject id, e.g. "S1"."""
    basename: str
    """Release file basename from the mapping table, e.g. "Walking 1", "TakingPhoto 1"."""
    name: str
    """Basename with spaces as underscores ("Walking_1"): work-dir and image names."""
    action: str
    """Canonical action name ("Photo" even where the files say "TakingPhoto")."""
    action_id: int
    """metadata.xml action id (2..16)."""
    subaction: int
    """1 or 2 (the mapping table's row)."""
    cameras: tuple[Camera, ...]
    """The 4 cameras in index order with this subject's extrinsics; size from the video."""
    videos: dict[str, Path]
    """Camera id → video path, for the videos that exist (known-bad ones included)."""
    mocap_path: Path
    """D3_Positions CDF (may not exist: see problems)."""
    frame_counts: dict[str, int] = field(default_factory=dict)
    """Per camera id with a readable video, and "mocap": frame counts. Empty when not counted."""
    num_frames: int | None = None
    """Usable frames: the shortest of mocap and the used videos' counts; 0 when unusable
    (no mocap); None when frames were not counted."""
    quirks: tuple[str, ...] = ()
    """Human-readable notes of the quirks applied (renamed action, skipped camera, truncation)."""
    skip_cameras: tuple[str, ...] = ()
    """Camera ids not to use (known-bad videos)."""
    problems: tuple[str, ...] = ()
    """What is wrong with this sequence (missing or unreadable files)."""
    features: tuple[str, ...] = ()
    """Optional per-sequence files present for every camera (``POSE_FEATURES`` folders and
    ``MySegmentsMat`` kinds), e.g. ("D3_Angles", "ground_truth_bb")."""
    masks: dict[str, dict[str, MaskFile]] = field(default_factory=dict)
    """{"ground_truth_bb" | "ground_truth_bs": {camera id: MaskFile}}: usable mask files
    (header-checked, aligned with the video), frames read lazily."""
    feature_problems: tuple[str, ...] = ()
    """Defects of optional files (missing, truncated or misaligned masks), each naming the
    file: the sequence goes on without them."""

    def mask(self, kind: str, camera_id: str) -> MaskFile | None:
        """The usable mask file of ``kind`` for a camera, or None."""
        return self.masks.get(kind, {}).get(camera_id)

    @property
    def usable_cameras(self) -> tuple[str, ...]:
        """Camera ids with a video that is not skipped, index order."""
        return tuple(c.id for c in self.cameras if c.id in self.videos and c.id not in self.skip_cameras)

    def camera(self, camera_id: str) -> Camera:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise KeyError(f"{self.subject} {self.basename}: no camera {camera_id}")

    def image_name(self, camera_id: str, frame_index: int) -> str:
        """``S1_Walking_1.54138969_000001.jpg`` for frame index 0."""
        return image_name(self.subject, self.name, camera_id, frame_index)

    def to_json(self) -> dict:
        return {
            "subject": self.subject, "basename": self.basename, "name": self.name,
            "action": self.action, "action_id": self.action_id, "subaction": self.subaction,
            "cameras": [c.to_json() for c in self.cameras],
            "videos": {k: str(v) for k, v in self.videos.items()},
            "mocap_path": str(self.mocap_path), "frame_counts": dict(self.frame_counts),
            "num_frames": self.num_frames, "quirks": list(self.quirks),
            "skip_cameras": list(self.skip_cameras), "problems": list(self.problems),
            "features": list(self.features), "feature_problems": list(self.feature_problems),
            "masks": {k: {c: str(m.path) for c, m in v.items()} for k, v in self.masks.items()},
        }


@dataclass(frozen=True)
class Release:
    """A Human3.6M release (or part of one) as found on disk."""

    root: Path
    """Release root (holds metadata.xml and the subject folders)."""
    metadata: Metadata
    """Its metadata.xml."""
    sequences: tuple[Sequence, ...]
    """Selected sequences that have at least one file, subject then mapping order."""
    problems: tuple[str, ...] = ()
    """Release-level findings: missing sequences/subjects, videos without mocap and the
    reverse, unexpected files."""

    def sequence(self, subject: str, name: str) -> Sequence:
        """The sequence by subject and name ("Walking_1" or "Walking 1")."""
        for seq in self.sequences:
            if seq.subject == subject and name in (seq.name, seq.basename):
                return seq
        raise KeyError(f"{self.root}: no sequence {subject} {name}")


# --- reading a release ------------------------------------------------------------------------


def _subjects_to_read(root: Path, metadata: Metadata, selection: Selection) -> tuple[list[str], list[str]]:
    """(subjects to read, problems). Default: the subjects with public poses that exist."""
    problems = []
    if selection.subjects is not None:
        wanted = list(selection.subjects)
    else:
        wanted = [s for s in metadata.subjects if s in SUBJECTS_WITH_DATA]
    subjects = []
    for subject in wanted:
        if subject not in metadata.subjects:
            problems.append(f"{subject}: not a subject of {root / METADATA_FILE}")
        elif not (root / subject).is_dir():
            if selection.subjects is not None:
                problems.append(f"{subject}: no folder {root / subject}")
        else:
            subjects.append(subject)
    return subjects, problems


def _camera_sizes(metadata: Metadata, subject: str, probes: dict[str, VideoInfo]):
    """(width, height) per camera index: the video's own size, else the metadata table."""
    table = metadata.resolution_hw.get(subject, ())
    sizes = []
    for index, camera_id in enumerate(metadata.camera_ids):
        if camera_id in probes:
            sizes.append((probes[camera_id].width, probes[camera_id].height))
        elif index < len(table):
            sizes.append((table[index][1], table[index][0]))
        else:
            sizes.append((0, 0))
    return sizes


def _read_sequence(root: Path, metadata: Metadata, subject: str, action_id: int, subaction: int,
                   basename: str, count_frames: bool) -> Sequence:
    action = ACTIONS[action_id]
    notes: list[str] = []
    problems: list[str] = []
    prefix = basename.split(" ")[0]
    if prefix != action and quirks.canonical_action(prefix) == action:
        notes.append(f"files say '{prefix}': canonical action '{action}'")

    videos = {}
    skip = []
    for camera_id in metadata.camera_ids:
        path = video_path(root, subject, basename, camera_id)
        if path.is_file():
            videos[camera_id] = path
        bad = quirks.known_bad_video(subject, basename, camera_id)
        if bad is not None:
            skip.append(camera_id)
            notes.append(f"camera {camera_id}: {bad.reason}")

    missing = [c for c in metadata.camera_ids if c not in videos]
    if missing:
        problems.append(f"missing video(s) for camera(s) {', '.join(missing)} "
                        f"({video_path(root, subject, basename, missing[0]).relative_to(root)} ...)")
    mocap = mocap_path(root, subject, basename)
    if not mocap.is_file():
        problems.append(f"missing mocap {mocap.relative_to(root)}")

    counts: dict[str, int] = {}
    probes: dict[str, VideoInfo] = {}
    num_frames = None
    if count_frames:
        for camera_id, path in videos.items():
            try:
                probes[camera_id] = probe_video(path)
                counts[camera_id] = probes[camera_id].frames
            except DataError as e:
                problems.append(str(e))
        if mocap.is_file():
            try:
                counts["mocap"] = count_pose_frames(mocap)
            except DataError as e:
                problems.append(str(e))
        num_frames = _usable_frames(counts, skip, notes, problems)

    sizes = _camera_sizes(metadata, subject, probes)
    for camera_id, (width, height) in zip(metadata.camera_ids, sizes, strict=True):
        if (width, height) == (0, 0):
            problems.append(f"camera {camera_id}: unknown image size (no video, no resolution "
                            "in metadata.xml)")
    cameras = tuple(metadata.camera(subject, i, w, h) for i, (w, h) in enumerate(sizes))
    features, masks, feature_problems = _optional_features(root, subject, basename, cameras,
                                                           num_frames, count_frames)
    return Sequence(
        subject=subject, basename=basename, name=basename.replace(" ", "_"), action=action,
        action_id=action_id, subaction=subaction, cameras=cameras, videos=videos,
        mocap_path=mocap, frame_counts=counts, num_frames=num_frames, quirks=tuple(notes),
        skip_cameras=tuple(skip), problems=tuple(problems), features=features, masks=masks,
        feature_problems=feature_problems,
    )


def _optional_features(root: Path, subject: str, basename: str, cameras, num_frames: int | None,
                       check: bool):
    """(features present, usable masks, problems) of a sequence's optional files.

    A mask folder that exists for the subject but lacks this sequence's file for a camera, or
    a file that is damaged, truncated or of another size than the video, is a problem naming
    the file; the other cameras' masks stay usable."""
    features = []
    for name, per_camera in POSE_FEATURES.items():
        folder = root / subject / "MyPoseFeatures" / name
        files = ([folder / f"{basename}.{c.id}{MOCAP_SUFFIX}" for c in cameras] if per_camera
                 else [folder / f"{basename}{MOCAP_SUFFIX}"])
        if all(f.is_file() for f in files):
            features.append(name)
    masks: dict[str, dict[str, MaskFile]] = {}
    problems = []
    for kind in MASK_KINDS:
        if not (mask_path(root, subject, basename, cameras[0].id, kind).parent).is_dir():
            continue  # downloads differ in which mask folders they hold
        found = {}
        for camera in cameras:
            path = mask_path(root, subject, basename, camera.id, kind)
            if not path.is_file():
                problems.append(f"missing mask file {path.relative_to(root)}")
                continue
            if not check:
                found[camera.id] = MaskFile(path, kind, num_frames or 0, camera.width, camera.height)
                continue
            mask, problem = probe_mask_file(path, kind, num_frames, camera.width, camera.height)
            if problem:
                problems.append(problem)
            else:
                found[camera.id] = mask
        if found:
            masks[kind] = found
            if len(found) == len(cameras):
                features.append(kind)
    return tuple(features), masks, tuple(problems)


def _usable_frames(counts: dict[str, int], skip: list[str], notes: list[str],
                   problems: list[str]) -> int:
    """Shortest of the mocap and the used videos' counts (quirks.TRUNCATE_TO_SHORTEST)."""
    if "mocap" not in counts:
        return 0
    used = {k: v for k, v in counts.items() if k not in skip}
    shortest = min(used.values())
    longest = max(used.values())
    if longest != shortest:
        detail = ", ".join(f"{k} {v}" for k, v in used.items())
        notes.append(f"truncated to the shortest count {shortest} ({detail})")
        if longest - shortest > quirks.MAX_FRAME_COUNT_MISMATCH:
            problems.append(f"frame counts differ by {longest - shortest} (> "
                            f"{quirks.MAX_FRAME_COUNT_MISMATCH}): {detail}")
    return shortest


def _unexpected_files(root: Path, metadata: Metadata, subject: str) -> list[str]:
    """Files in the subject's Videos/ and D3_Positions/ that no mapping basename explains."""
    basenames = {row[subject] for row in metadata.mapping.values() if subject in row}
    expected_videos = {f"{b}.{c}{VIDEO_SUFFIX}" for b in basenames for c in metadata.camera_ids}
    expected_mocap = {f"{b}{MOCAP_SUFFIX}" for b in basenames}
    found = []
    for folder, expected in ((root / subject / VIDEOS_DIR, expected_videos),
                             (root / subject / MOCAP_DIR, expected_mocap)):
        if folder.is_dir():
            found += [f"unexpected file {p.relative_to(root)}" for p in sorted(folder.iterdir())
                      if p.name not in expected]
    return found


def read_release(root: str | os.PathLike, selection: Selection | None = None,
                 count_frames: bool = True) -> Release:
    """Read a release's layout into Sequence records (selection filters subjects/sequences).

    Cheap: reads metadata.xml, video headers (frame count, size) and CDF headers; no frames,
    no poses. DataError when the root or its metadata.xml is missing or malformed; anything
    else wrong is recorded in ``problems`` (per sequence and release-wide).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: release folder not found")
    if not (root / METADATA_FILE).is_file():
        raise DataError(f"{root}: no {METADATA_FILE} (is this a Human3.6M release root?)")
    metadata = read_metadata(root / METADATA_FILE)
    selection = Selection() if selection is None else selection
    subjects, problems = _subjects_to_read(root, metadata, selection)
    sequences = []
    for subject in subjects:
        problems += [f"{subject}: {p}" for p in _unexpected_files(root, metadata, subject)]
        absent = []
        for (action_id, subaction), row in metadata.mapping.items():
            if action_id in quirks.IGNORED_ACTION_IDS or action_id not in ACTIONS:
                continue
            basename = row.get(subject, "")
            if not basename or not selection.wants_sequence(ACTIONS[action_id],
                                                            basename.replace(" ", "_")):
                continue
            seq = _read_sequence(root, metadata, subject, action_id, subaction, basename, count_frames)
            where = f"{subject} {basename!r}"
            if not seq.videos and not seq.mocap_path.is_file():
                absent.append(basename)
                continue
            if not seq.mocap_path.is_file():
                problems.append(f"{where}: videos but no mocap")
            elif not seq.videos:
                problems.append(f"{where}: mocap but no videos")
            sequences.append(seq)
        if absent:  # one line per subject: a partial release is normal, not a flood
            shown = ", ".join(repr(b) for b in absent[:MAX_LISTED])
            more = f" and {len(absent) - MAX_LISTED} more" if len(absent) > MAX_LISTED else ""
            problems.append(f"{subject}: {len(absent)} selected sequence(s) of metadata.xml have "
                            f"no files: {shown}{more}")
    return Release(root=root, metadata=metadata, sequences=tuple(sequences), problems=tuple(problems))


FEATURE_CODES = {"D3_Positions_mono": "mono", "D2_Positions": "2d",
                 "D3_Positions_mono_universal": "univ", "D3_Angles": "ang", "D3_Angles_mono": "angmono",
                 "ground_truth_bb": "bb", "ground_truth_bs": "bs"}
FEATURE_LEGEND = ", ".join(f"{v} = {k}" for k, v in FEATURE_CODES.items())


def feature_summary(seq: Sequence) -> str:
    """Short codes of the optional files a sequence has ("mono,2d,bb"; "-" for none); a mask
    kind usable for some cameras only is shown with their count, e.g. "bs(3/4)"."""
    codes = [FEATURE_CODES[f] for f in seq.features]
    for kind, found in seq.masks.items():
        if kind not in seq.features:
            codes.append(f"{FEATURE_CODES[kind]}({len(found)}/{len(seq.cameras)})")
    return ",".join(codes) or "-"


def format_release_table(release: Release) -> str:
    """The ``inspect`` table: one line per sequence, then the release-level problems."""
    cams = release.metadata.camera_ids
    header = ["subject", "sequence", "action", "sub", *cams, "mocap", "usable", "features", "notes"]
    rows = []
    for seq in release.sequences:
        counts = [str(seq.frame_counts.get(c, "-")) + ("*" if c in seq.skip_cameras else "")
                  for c in cams]
        notes = "; ".join([*seq.quirks, *(f"PROBLEM: {p}" for p in seq.problems),
                           *(f"feature problem: {p}" for p in seq.feature_problems)])
        usable = "?" if seq.num_frames is None else str(seq.num_frames)
        rows.append([seq.subject, seq.name, seq.action, str(seq.subaction), *counts,
                     str(seq.frame_counts.get("mocap", "-")), usable, feature_summary(seq), notes])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[-1]
             for r in [header, *rows]]
    total = sum(s.num_frames or 0 for s in release.sequences)
    lines.append(f"{len(release.sequences)} sequences, {total} usable mocap frames "
                 f"(* = camera skipped; features: {FEATURE_LEGEND})")
    if release.problems:
        lines.append(f"{len(release.problems)} release problem(s):")
        lines += [f"  {p}" for p in release.problems]
    return "\n".join(line.rstrip() for line in lines)
