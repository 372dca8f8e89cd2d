"""Extract stage: video frames as JPEGs, cameras and mocap joints per sequence.

Units (``plan``):

- one per sequence, key "S1/Walking_1": ``WORK/extract/<S>/<seq>/sequence.json`` (action,
  subaction, basename, the four cameras, fps, per-camera and mocap frame counts, the usable
  count after truncation to the shortest, source files with size and mtime, quirks applied)
  and ``joints_world.npy`` (T, 32, 3) float32 metres, T = usable count, every frame (the
  stride applies to images only);
- one per (sequence, camera), key "S1/Walking_1/54138969": every stride-th frame of the
  ``--frames`` range (clipped to the usable count) as a full-resolution JPEG
  ``WORK/images/<S>/<S>_<seq>.<cam>_<frame+1:06d>.jpg``.

The two kinds write disjoint files, so they run in any order without races. Each video is
decoded once, sequentially, with OpenCV: ``grab()`` for skipped frames, ``retrieve()`` only
for kept ones. JPEG encoding is deterministic (fixed quality, OpenCV's libjpeg), so the same
release and options give byte-identical files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.artifacts import write_joints_world, write_sequence_info
from pipeline.errors import DataError, SelectionError
from pipeline.release.h36m import METADATA_FILE
from pipeline.release.splits import SPLITS
from pipeline.selection import Selection
from pipeline.stages.base import Stage, StageConfig, StageOption, Unit
from pipeline.store import WorkDir, atomic_write_bytes

log = logging.getLogger(__name__)

DEFAULT_STRIDE = 5
PROTOCOL1_TEST_STRIDE = SPLITS["protocol1"].test_stride
NUM_JOINTS = 32


@dataclass(frozen=True)
class ExtractConfig(StageConfig):
    """Options of the extract stage (``h36m``: the release root, holding metadata.xml and S1/, …)."""

    selection: Selection = field(default_factory=lambda: Selection(stride=DEFAULT_STRIDE))
    """Subjects, actions, cameras, frame range and stride of the images."""
    jpeg_quality: int = 95
    """OpenCV JPEG quality (0-100) of the written frames."""
    also_every: int = PROTOCOL1_TEST_STRIDE
    """Also keep the frames of the range that are multiples of N (0: none). The default, protocol 1's test stride,
    gives ``sample``'s default test part its frames beside the stride-5 grid (1.25 % more
    images); without it that part could only use the multiples of 320."""

    def __post_init__(self) -> None:
        if not 0 <= self.jpeg_quality <= 100:
            raise SelectionError(f"--jpeg-quality must be within 0..100, got {self.jpeg_quality}")
        if self.also_every < 0:
            raise SelectionError(f"--also-every must be 0 (none) or a positive frame count, got {self.also_every}")

    def frame_indices(self, count: int) -> list[int]:
        """The frames to extract among ``count``: the selection's grid and every also_every-th."""
        frames = set(self.selection.frame_indices(count))
        if self.also_every:  # absolute multiples: the grid sample's parts take (frame % stride == 0)
            whole = replace(self.selection, stride=1).frame_indices(count)
            frames.update(range(-(-whole.start // self.also_every) * self.also_every, whole.stop, self.also_every))
        return sorted(frames)


# --------------------------------------------------------------------------- plan


def plan(config: ExtractConfig, work: WorkDir) -> list[Unit]:
    """One sequence unit and one unit per selected camera for every selected sequence."""
    from pipeline.release.h36m import read_release

    release = read_release(Path(config.h36m), config.selection, count_frames=True)
    if not release.sequences:
        raise DataError(f"{config.h36m}: no sequence matches the selection"
                        + (f" ({release.problems[0]})" if release.problems else ""))
    for problem in release.problems:  # e.g. sequences of metadata.xml absent from a partial copy
        log.info("%s: %s", config.h36m, problem)
    metadata_path = Path(config.h36m) / METADATA_FILE
    units: list[Unit] = []
    for seq in release.sequences:
        units.append(_sequence_unit(seq, work, metadata_path))
        frames = config.frame_indices(seq.num_frames)
        for cam_id in _camera_ids(seq):
            # a missing video is a problem of the sequence unit; a corrupt one fails its own unit
            if (not config.selection.wants_camera(cam_id) or cam_id in seq.skip_cameras
                    or cam_id not in seq.videos or not frames):
                continue
            units.append(_camera_unit(seq, cam_id, frames, config, work))
    return units


def _camera_ids(seq) -> list[str]:
    cameras = seq.cameras.values() if isinstance(seq.cameras, dict) else seq.cameras
    return [c.id for c in cameras]


def _sequence_unit(seq, work: WorkDir, metadata_path: Path) -> Unit:
    inputs = {"mocap": Path(seq.mocap_path)}
    inputs.update({f"video:{c}": Path(p) for c, p in sorted(seq.videos.items())})
    if metadata_path.exists():
        inputs["metadata"] = metadata_path
    return Unit(
        key=f"{seq.subject}/{seq.name}",
        outputs=(work.sequence_json(seq.subject, seq.name), work.joints_world(seq.subject, seq.name)),
        inputs=inputs,
        params={"kind": "sequence", "num_frames": seq.num_frames},
        payload={"kind": "sequence", "sequence": seq, "sources": inputs},
    )


def _camera_unit(seq, cam_id: str, frames: list[int], config: ExtractConfig, work: WorkDir) -> Unit:
    video = Path(seq.videos[cam_id])
    return Unit(
        key=f"{seq.subject}/{seq.name}/{cam_id}",
        outputs=tuple(work.image(seq.subject, seq.name, cam_id, i) for i in frames),
        inputs={"video": video},
        # the kept frames (not --frames/--stride as typed) decide the outputs
        params={"kind": "images", "frames": [frames[0], frames[-1] + 1, config.selection.stride],
                **({"also_every": config.also_every} if config.also_every else {}),
                "jpeg_quality": config.jpeg_quality},
        payload={"kind": "images", "video": video, "frames": frames},
    )


# --------------------------------------------------------------------------- units


def run_unit(unit: Unit, config: ExtractConfig) -> dict:
    if unit.payload["kind"] == "sequence":
        return write_sequence(unit.payload["sequence"], unit.payload["sources"], unit.outputs)
    return extract_frames(unit.payload["video"], unit.payload["frames"], unit.outputs,
                          config.jpeg_quality)


def write_sequence(seq, sources: dict[str, Path], outputs: tuple[Path, Path]) -> dict:
    """Write sequence.json and joints_world.npy (every usable mocap frame, metres)."""
    import numpy as np

    from pipeline.release.h36m import read_mocap_world

    if seq.problems:
        raise DataError("; ".join(seq.problems))
    joints = np.asarray(read_mocap_world(Path(seq.mocap_path)), dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise DataError(f"{seq.mocap_path}: mocap has shape {joints.shape}, expected (T, 32, 3)")
    if joints.shape[0] < seq.num_frames:
        raise DataError(f"{seq.mocap_path}: {joints.shape[0]} mocap frames, "
                        f"fewer than the usable count {seq.num_frames}")
    joints = joints[: seq.num_frames].astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(joints).all(axis=(1, 2)))
    if bad.size:
        raise DataError(f"{seq.mocap_path}: non-finite mocap in {bad.size} frames (first: {bad[0]})")
    write_sequence_info(outputs[0], seq, sources, joints.shape)
    write_joints_world(outputs[1], joints)
    return {"frames": int(joints.shape[0])}


def extract_frames(video: Path, frames: list[int], outputs, jpeg_quality: int) -> dict:
    """Decode ``video`` once and write frame ``frames[i]`` as JPEG ``outputs[i]``.

    frames: sorted 0-based frame indices; outputs: the same number of paths.
    """
    import cv2

    from pipeline.stages.progress import unit_progress

    if not frames:
        return {"frames": 0}
    # parallelism comes from units on all cores: OpenCV's own thread pool would only
    # oversubscribe them (the colour conversion and the encoder are per-frame serial anyway)
    cv2.setNumThreads(1)
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise DataError(f"{video}: cannot open video")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    image = None  # reused: dask workers set MALLOC_TRIM_THRESHOLD_, so a fresh 3 MB frame per
    # retrieve() would be a new mmap and page faults every frame (~1.5× the CPU time)
    try:
        it = iter(zip(frames, outputs, strict=True))
        want, out = next(it)
        written = 0
        for index in range(frames[-1] + 1):
            if not cap.grab():
                raise DataError(f"{video}: video ends at frame {index}, "
                                f"expected at least {frames[-1] + 1} frames")
            if index != want:
                continue
            ok, image = cap.retrieve(image)
            if not ok or image is None:
                raise DataError(f"{video}: cannot decode frame {index}")
            ok, jpeg = cv2.imencode(".jpg", image, params)
            if not ok:
                raise DataError(f"{video}: cannot encode frame {index} as JPEG")
            atomic_write_bytes(out, jpeg.tobytes())
            written += 1
            unit_progress(written, len(frames), "frames")
            want, out = next(it, (None, None))
    finally:
        cap.release()
    return {"frames": len(frames)}


STAGE = Stage(
    name="extract",
    version="1",
    help="Extract video frames (JPEG), cameras and mocap joints from a Human3.6M release.",
    config_type=ExtractConfig,
    plan=plan,
    run_unit=run_unit,
    options=(StageOption("jpeg_quality", int, "JPEG quality (0-100) of the extracted frames."),
             StageOption("also_every", int, "Also keep every N-th frame (0: none); default 64, protocol 1's "
                                            "test stride, so that sample's default test part has its frames.")),
    default_stride=DEFAULT_STRIDE,
    needs_release=True,
)
