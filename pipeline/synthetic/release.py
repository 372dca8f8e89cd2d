"""A synthetic Human3.6M release with known ground truth (the project's embedded demo data).

People — the synthetic SMPL-X-format body model with one shape per subject — move with
procedural motion (:mod:`pipeline.synthetic.motion`) in the Human3.6M world (z up, floor z = 0) and
are rendered (:mod:`pipeline.synthetic.render`) into the four real cameras of each subject (real
extrinsics, intrinsics and lens distortion from the embedded metadata; ``scale`` shrinks
images and intrinsics together). The release has the real layout and naming::

    OUT/metadata.xml
    OUT/S1/Videos/<basename>.<camera>.mp4                          50 fps, mp4v
    OUT/S1/MyPoseFeatures/D3_Positions/<basename>.cdf              Pose (1, T, 96) world mm
    OUT/S1/MyPoseFeatures/D3_Positions_mono/<basename>.<camera>.cdf  (1, T, 96) camera mm
    OUT/S1/MyPoseFeatures/D2_Positions/<basename>.<camera>.cdf       (1, T, 64) pixels
    OUT/S1/MyPoseFeatures/D3_Positions_mono_universal/<basename>.<camera>.cdf  (1, T, 96) camera
                                           mm, the same motion on the universal skeleton
    OUT/S1/MyPoseFeatures/D3_Angles/<basename>.cdf                 (1, T, 78) root mm + degrees
    OUT/S1/MyPoseFeatures/D3_Angles_mono/<basename>.<camera>.cdf   (1, T, 78) root in the camera
    OUT/S1/MySegmentsMat/ground_truth_bb/<basename>.<camera>.mat   official boxes (MATLAB v7.3)
    OUT/S1/MySegmentsMat/ground_truth_bs/<basename>.<camera>.mat   rendered silhouettes
    OUT/groundtruth/S1/<basename>.npz      true SMPL-X params per frame, noise-free mocap
                                           (joints_h36m32), the correspondence's joints
                                           (joints_h36m32_correspondence) and the mocap
                                           skeleton's offsets (mocap_offsets_m, (32, 3) bone frames)
    OUT/groundtruth/model.json             the body model's seed and sha256

The mocap is the 32-joint Human3.6M skeleton derived from the posed body through
:func:`fitting.correspondence.h36m32_from_smplx`, so a perfect fit reproduces it exactly
(up to ``marker_noise_mm``, which is added to the written mocap only). With
``mocap_skeleton="mismatched"`` the mocap joints are defined differently, as a real mocap
system's are: fixed per-subject offsets in the bone frames (1-4 cm by default), which no
SMPL-X body matches exactly. The body model is
not part of the release: the pipeline regenerates it from the recorded seed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from common.hashing import sha256_file
from common.rng import rng_for
from common.units import MM_PER_M
from fitting.smplx_params import body_world_rotations
from pipeline.errors import DataError
from pipeline.release.cameras import (
    W0_INTRINSICS_OFFSET,
    Camera,
    cam_from_world,
    project_h36m,
    w0_from_cameras,
)
from pipeline.release.masks import MASK_KINDS, bb_rectangles, mask_path, rectangle_mask
from pipeline.release.metadata import Metadata, default_metadata, write_metadata
from pipeline.release.quirks import canonical_action
from pipeline.store import (
    WorkDir,
    atomic_write_bytes,
    atomic_write_npz,
    sequence_folder_name,
)
from pipeline.synthetic.segments import SilhouetteDefects, background_subtraction

FPS = 50
"""Frame rate of the videos and the mocap (Human3.6M's videos run at 50 fps)."""

MOCAP_RATE_FACTOR = 4
"""metadata.xml's 5th frame count is the 200 Hz mocap count: 4 × the 50 fps frames."""

NUM_BETAS = 10
NUM_EXPRESSION = 10

VIDEO_FOURCC = "mp4v"

SequenceKey = tuple[int, int]
"""(action id, subaction) as in metadata.xml's mapping table, e.g. (14, 1) = Walking 1."""


@dataclass(frozen=True)
class VideoQuirk:
    """A defect injected into one video, like the real release's (for tests)."""

    subject: str
    """Subject id, e.g. "S5"."""
    sequence: SequenceKey
    """(action id, subaction) of the sequence."""
    camera: str
    """Camera id, e.g. "54138969"."""
    drop_last: int = 0
    """Frames missing at the end of this video (S5 "Waiting 2": 4857/4866/4866/4857)."""
    corrupt: bool = False
    """Truncate the file to a quarter of its bytes so no decoder can open it (S11 Directions)."""


@dataclass(frozen=True)
class SyntheticReleaseConfig:
    """What :func:`write_synthetic_release` generates."""

    subjects: tuple[str, ...] = ("S1", "S8", "S9")
    """Subjects to generate (S1..S11). The default gives protocol 1 (test S9) and H3WB
    (test S8) both train and test data."""
    sequences: tuple[SequenceKey, ...] = ((14, 1), (4, 1))
    """(action id, subaction) pairs generated for every subject; basenames come from the
    real mapping table (S1's (4, 1) is "Eating 2", S1's (15, 1) is "WalkingDog 1")."""
    frames: int = 100
    """Mocap frames per sequence (50 fps)."""
    scale: float = 1.0
    """Image scale against the real 1000 × 1002 / 1000 × 1000 cameras (intrinsics follow via
    Camera.scaled); 1 = the real resolution, which hard-coded third-party camera tables
    assume. The scaled sizes must be even (mp4 drops an odd last row/column): 1, 0.8,
    0.2 and 0.1 work for every camera, 0.5 does not (1002 × 0.5 = 501)."""
    seed: int = 0
    """Seed of every random draw (shapes, motion, colours, marker noise)."""
    marker_noise_mm: float = 0.0
    """Standard deviation of Gaussian noise added to the written mocap (mm, per coordinate);
    the ground-truth params and ground-truth joints stay noise-free."""
    mocap_skeleton: str = "smplx"
    """How the mocap joints are defined: "smplx" — through the fitter's named
    correspondence (fitting.correspondence), so a perfect fit reproduces them; "mismatched"
    — as a mocap system's own joint centres would differ: each of the 32 joints moved by a
    fixed per-subject offset in its parent bone's frame (``H36M32_BONE_FRAME``), of a
    length drawn in ``mocap_offset_mm``. The ground truth stays the true SMPL-X body."""
    mocap_offset_mm: tuple[float, float] = (10.0, 40.0)
    """(min, max) length of the per-joint offsets of the "mismatched" skeleton, mm."""
    model_seed: int = 0
    """Seed of the synthetic body model (fitting.synthetic_model)."""
    model_cache: Path | None = None
    """A work directory whose ``bodymodel/SMPLX_NEUTRAL.npz`` holds (or receives) the body
    model — where the pipeline's ``--body-model synthetic`` looks, so passing the pipeline's
    work dir generates the model once. None: a temporary folder. Never inside the release."""
    video_quirks: tuple[VideoQuirk, ...] = ()
    """Injected video defects (short videos, corrupt files)."""
    workers: int = 0
    """Processes rendering videos in parallel (0: one per CPU core; 1: in this process)."""
    masks: tuple[str, ...] = MASK_KINDS
    """MySegmentsMat folders to write: "ground_truth_bb" (official boxes from the mocap),
    "ground_truth_bs" (the rendered silhouettes); real downloads hold one or both."""
    mask_defects: bool = False
    """Give ground_truth_bs the defects of real background subtraction (holes, a shadow at
    the feet, speckle, now and then a missed limb); False: the exact silhouette."""


# --- sequence keys ----------------------------------------------------------------------------


def parse_sequence_key(text: str, metadata: Metadata | None = None) -> SequenceKey:
    """"14-1", "Walking-1" or "WalkingDog-2" → (action id, subaction)."""
    metadata = metadata or default_metadata()
    name, sep, sub = text.strip().rpartition("-")
    if not sep or not sub.isdigit():
        raise DataError(f"sequence {text!r}: expected ACTION-SUBACTION, e.g. Walking-1 or 14-1")
    if name.isdigit():
        action = int(name)
    else:
        ids = {canonical_action(n): i for i, n in metadata.action_names.items()}
        action = ids.get(canonical_action(name), -1)
    key = (action, int(sub))
    if key not in metadata.mapping:
        raise DataError(f"sequence {text!r}: no such (action, subaction) in the mapping table")
    return key


# --- body -------------------------------------------------------------------------------------


@dataclass
class _Body:
    """The loaded body model and per-model constants."""

    model: object
    faces: np.ndarray
    part: np.ndarray  # (V,) index of the joint with the largest skinning weight
    model_path: Path


def _load_body(work_dir: Path, model_seed: int, frames: int) -> _Body:
    import torch

    from fitting.bodymodel import load_body_model, resolve_body_model

    # Generating the model takes tens of seconds: resolve_body_model reuses a matching one.
    path = resolve_body_model("synthetic", work_dir, seed=model_seed)
    model = load_body_model(path, device="cpu", dtype=torch.float64, batch_size=frames,
                            num_betas=NUM_BETAS, num_expression_coeffs=NUM_EXPRESSION,
                            use_face_contour=True, flat_hand_mean=False)
    faces = np.asarray(model.faces, dtype=np.int64)
    part = model.lbs_weights.detach().cpu().numpy().argmax(axis=1)
    return _Body(model, faces, part, Path(path))


def _forward(body: _Body, params: dict[str, np.ndarray]):
    """smplx forward of params (T, ...) → (vertices (T, V, 3), joints55 (T, 55, 3)) float64."""
    import torch

    T = params["transl"].shape[0]
    kwargs = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in params.items()}
    kwargs["betas"] = kwargs["betas"].expand(T, -1)
    with torch.no_grad():
        out = body.model(**kwargs, return_verts=True)
    return out.vertices.numpy(), out.joints[:, :55].numpy()


def _mocap_from_body(vertices: np.ndarray, joints55: np.ndarray) -> np.ndarray:
    """(T, 32, 3) Human3.6M joints from the posed body, metres, world."""
    import torch

    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx

    landmarks = vertices[:, correspondence_vertex_ids()]
    return h36m32_from_smplx(torch.from_numpy(joints55), torch.from_numpy(landmarks)).numpy()


MOCAP_SKELETONS = ("smplx", "mismatched")
"""Values of ``SyntheticReleaseConfig.mocap_skeleton``."""


def mocap_offsets(seed: int, subject: str, length_mm: tuple[float, float]) -> np.ndarray:
    """(32, 3) metres: the "mismatched" skeleton's fixed offset of each h36m32 joint in its
    parent bone's frame for one subject (uniform direction, length uniform in length_mm)."""
    rng = rng_for(seed, "mocap-skeleton", subject)
    d = rng.normal(size=(32, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return d * rng.uniform(length_mm[0], length_mm[1], size=(32, 1)) / MM_PER_M


def offset_mocap(mocap: np.ndarray, rotations: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(T, 32, 3) mocap joints moved by offsets (32, 3) given in their bone frames.

    Args:
        mocap: (T, 32, 3) joints through the correspondence, metres, world.
        rotations: (T, 22, 3, 3) world rotations of SMPL-X joints 0..21 (``fitting.smplx_params.body_world_rotations``).
        offsets: (32, 3) metres, each in the frame of ``H36M32_BONE_FRAME``'s joint.
    """
    from fitting.correspondence import bone_frame_index

    return mocap + np.einsum("tjab,jb->tja", rotations[:, bone_frame_index()], offsets)


def _rest_mocap(body: _Body, betas: np.ndarray, frames: int) -> np.ndarray:
    """(32, 3) the h36m32 joints of the body in its rest pose (SMPL-X canonical frame, y up)."""
    zeros = lambda n: np.zeros((frames, n))  # noqa: E731
    rest = {"betas": betas, "global_orient": zeros(3), "body_pose": zeros(63), "transl": zeros(3),
            "left_hand_pose": zeros(45), "right_hand_pose": zeros(45), "jaw_pose": zeros(3),
            "leye_pose": zeros(3), "reye_pose": zeros(3), "expression": zeros(NUM_EXPRESSION)}
    vertices, joints55 = _forward(body, rest)
    return _mocap_from_body(vertices[:1], joints55[:1])[0]


def skeleton_offsets(rest_joints: np.ndarray, parents) -> np.ndarray:
    """(32, 3) bone offsets (joint minus parent) of a rest skeleton, same unit; root 0."""
    parents = np.asarray(parents)
    offsets = rest_joints - rest_joints[np.maximum(parents, 0)]
    offsets[parents < 0] = 0.0
    return offsets


def joint_rotations(world_rotations: np.ndarray, parents) -> np.ndarray:
    """(T, 32, 3, 3) global rotation of each h36m32 joint: the SMPL-X bone frame that carries
    its children (``H36M32_BONE_FRAME`` of a child; the same for all children of a joint)."""
    from fitting.correspondence import bone_frame_index

    frame = bone_frame_index()
    own = frame.copy()  # end sites: their own bone frame (no child)
    for child, parent in enumerate(parents):
        if parent >= 0:
            own[parent] = frame[child]
    return world_rotations[:, own]


def universal_mocap(angles: np.ndarray, offsets_mm: np.ndarray, metadata: Metadata) -> np.ndarray:
    """(T, 32, 3) metres: D3_Angles rows on the universal skeleton (D3_Positions_mono_universal
    before the camera transform)."""
    from pipeline.release.angles import forward_kinematics

    return forward_kinematics(angles, offsets_mm, metadata.joint_parents, metadata.joint_names) / MM_PER_M


def _subject_betas(seed: int, subject: str) -> np.ndarray:
    return np.clip(rng_for(seed, "betas", subject).normal(0.0, 0.8, NUM_BETAS), -2.0, 2.0)


# Clothing regions by the joint that skins a vertex most (smplx55 indices).
_SKIN_JOINTS = (12, 15, 18, 19, 20, 21, 22, 23, 24, *range(25, 55))
_SHOE_JOINTS = (7, 8, 10, 11)
_TROUSER_JOINTS = (0, 1, 2, 4, 5)
_PALETTE_SHIRT = ((60, 60, 170), (150, 90, 40), (60, 140, 60), (40, 150, 200), (130, 60, 120))
_PALETTE_TROUSERS = ((70, 50, 40), (40, 40, 40), (110, 110, 120), (90, 70, 50))
_PALETTE_SKIN = ((120, 160, 215), (90, 130, 190), (60, 95, 150), (140, 175, 225))


def _subject_albedo(part: np.ndarray, seed: int, subject: str) -> np.ndarray:
    """(V, 3) BGR colours of a subject's clothes and skin, by body part."""
    rng = rng_for(seed, "colours", subject)
    pick = lambda palette: np.array(palette[rng.integers(len(palette))], dtype=np.float64)  # noqa: E731
    shirt, trousers, skin = pick(_PALETTE_SHIRT), pick(_PALETTE_TROUSERS), pick(_PALETTE_SKIN)
    albedo = np.tile(shirt, (len(part), 1))
    albedo[np.isin(part, _TROUSER_JOINTS)] = trousers
    albedo[np.isin(part, _SHOE_JOINTS)] = (30, 30, 30)
    albedo[np.isin(part, _SKIN_JOINTS)] = skin
    return albedo


# --- per sequence -----------------------------------------------------------------------------


def _sequence_params(body: _Body, betas: np.ndarray, action: str, frames: int, seed: int,
                     subject: str, basename: str) -> dict[str, np.ndarray]:
    """The true SMPL-X params (smplx forward kwargs) of one sequence, world frame, metres."""
    from pipeline.synthetic.motion import BodyDims, make_motion

    zeros = lambda n: np.zeros((frames, n))  # noqa: E731
    rest = {"betas": betas, "global_orient": zeros(3), "body_pose": zeros(63),
            "transl": zeros(3), "left_hand_pose": zeros(45), "right_hand_pose": zeros(45),
            "jaw_pose": zeros(3), "leye_pose": zeros(3), "reye_pose": zeros(3),
            "expression": zeros(NUM_EXPRESSION)}  # T copies: smplx wants the model's batch size
    rest_vertices, rest_joints = _forward(body, rest)
    dims = BodyDims.from_rest(rest_joints[0], rest_vertices[0])
    motion = make_motion(action, frames, FPS, dims, rng_for(seed, "motion", subject, basename))
    # smplx rotates about the rest pelvis J0 and then adds transl: pelvis = J0 + transl.
    transl = motion.pelvis - rest_joints[0, 0]
    return {
        "betas": betas.copy(), "global_orient": motion.global_orient,
        "body_pose": motion.body_pose, "transl": transl,
        "left_hand_pose": zeros(45), "right_hand_pose": zeros(45), "jaw_pose": zeros(3),
        "leye_pose": zeros(3), "reye_pose": zeros(3), "expression": zeros(NUM_EXPRESSION),
    }


@contextlib.contextmanager
def _gzip_without_timestamp():
    """cdflib gzips variable records with gzip.compress, which stamps the current time into
    the header; pin it to 0 so that the same poses give byte-identical CDFs."""
    import gzip

    import cdflib.cdfwrite as cdfwrite

    original = cdfwrite.gzip_deflate
    cdfwrite.gzip_deflate = functools.partial(gzip.compress, mtime=0)
    try:
        yield
    finally:
        cdfwrite.gzip_deflate = original


def _write_cdf(path: Path, pose: np.ndarray) -> None:
    from pipeline.release.h36m import write_pose_cdf

    path.parent.mkdir(parents=True, exist_ok=True)
    with _gzip_without_timestamp():
        write_pose_cdf(path, pose)


def _write_mocap(root: Path, subject: str, basename: str, joints_world: np.ndarray,
                 cameras: list[Camera], angles: np.ndarray, universal_world: np.ndarray,
                 skeleton_names) -> None:
    """D3_Positions(_mono, _mono_universal), D2_Positions and D3_Angles(_mono) CDFs of one
    sequence (angles (T, 78) rows; universal_world (T, 32, 3) metres)."""
    from pipeline.release.angles import angles_in_camera

    T = joints_world.shape[0]
    features = root / subject / "MyPoseFeatures"
    _write_cdf(features / "D3_Positions" / f"{basename}.cdf",
               (joints_world * MM_PER_M).reshape(T, 96))
    _write_cdf(features / "D3_Angles" / f"{basename}.cdf", angles)
    for cam in cameras:
        joints_cam = cam_from_world(joints_world, cam.R, cam.t)
        _write_cdf(features / "D3_Positions_mono" / f"{basename}.{cam.id}.cdf",
                   (joints_cam * MM_PER_M).reshape(T, 96))
        _write_cdf(features / "D2_Positions" / f"{basename}.{cam.id}.cdf",
                   project_h36m(joints_cam, cam.K, cam.dist).reshape(T, 64))
        _write_cdf(features / "D3_Positions_mono_universal" / f"{basename}.{cam.id}.cdf",
                   (cam_from_world(universal_world, cam.R, cam.t) * MM_PER_M).reshape(T, 96))
        _write_cdf(features / "D3_Angles_mono" / f"{basename}.{cam.id}.cdf",
                   angles_in_camera(angles, cam.R, cam.t * MM_PER_M, skeleton_names))


# --- videos -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VideoJob:
    path: Path
    vertices: np.ndarray  # (T, V, 3) float32 world metres
    faces: np.ndarray
    albedo: np.ndarray
    camera: Camera
    backdrop_bgr: tuple[int, int, int]
    frames: int
    corrupt: bool
    joints_world: np.ndarray | None = None  # (T, 32, 3) written mocap, metres: the official boxes
    mask_paths: dict | None = None  # {kind: path} of the MySegmentsMat files to write
    mask_defects: bool = False
    seed: int = 0


def _render_video(job: _VideoJob) -> tuple[str, float]:
    """Render and write one video (atomic); returns (path, seconds)."""
    import time

    import cv2

    from pipeline.synthetic.render import background, render_mesh_and_mask

    start = time.perf_counter()
    job.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.path.with_name(f".{job.path.stem}.tmp.mp4")  # cv2 picks the muxer by extension
    cam = job.camera
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), FPS,
                             (cam.width, cam.height))
    if not writer.isOpened():
        raise DataError(f"{job.path}: OpenCV cannot open an {VIDEO_FOURCC} video writer")
    backdrop = background(cam, job.backdrop_bgr)
    with contextlib.ExitStack() as stack:
        stack.callback(writer.release)
        masks = _mask_writers(job, stack)
        boxes = bb_rectangles(job.joints_world, cam) if "ground_truth_bb" in masks else None
        rng = rng_for(job.seed, "background-subtraction", str(job.path.name))
        defects = SilhouetteDefects() if job.mask_defects else None
        for i in range(job.frames):
            image, silhouette = render_mesh_and_mask(job.vertices[i], job.faces, job.albedo, cam, backdrop)
            writer.write(image)
            if "ground_truth_bs" in masks:
                masks["ground_truth_bs"].append(background_subtraction(silhouette, defects, rng))
            if boxes is not None:
                masks["ground_truth_bb"].append(rectangle_mask(boxes[i], cam.width, cam.height))
    if job.corrupt:
        data = tmp.read_bytes()
        tmp.write_bytes(data[: len(data) // 4])
    os.replace(tmp, job.path)
    return str(job.path), time.perf_counter() - start


def _mask_writers(job: _VideoJob, stack: contextlib.ExitStack) -> dict:
    from pipeline.release.masks import MaskWriter

    return {kind: stack.enter_context(MaskWriter(path, job.camera.width, job.camera.height))
            for kind, path in (job.mask_paths or {}).items()}


def _backdrop_color(seed: int, camera_id: str) -> tuple[int, int, int]:
    rng = rng_for(seed, "backdrop", camera_id)
    base = rng.integers(150, 200)
    return tuple(int(base + d) for d in rng.integers(-12, 13, size=3))


def _run_jobs(jobs: list[_VideoJob], workers: int) -> list[tuple[str, float]]:
    workers = workers or os.cpu_count() or 1
    workers = min(workers, len(jobs))
    if workers <= 1:
        return [_render_video(job) for job in jobs]
    # spawn: the parent holds torch's thread pools, which do not survive a fork reliably.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_render_video, jobs))


# --- release ----------------------------------------------------------------------------------


def release_cameras(metadata: Metadata, subject: str, scale: float) -> list[Camera]:
    """The subject's four cameras at ``scale`` (real calibration, scaled intrinsics)."""
    return [metadata.camera(subject, c).scaled(scale) for c in range(len(metadata.camera_ids))]


def _check_config(config: SyntheticReleaseConfig, metadata: Metadata) -> None:
    if config.frames < 1:
        raise DataError(f"synthetic release: frames must be >= 1, got {config.frames}")
    if not config.scale > 0:
        raise DataError(f"synthetic release: scale must be positive, got {config.scale}")
    if config.marker_noise_mm < 0:
        raise DataError("synthetic release: marker noise must be >= 0 mm")
    if config.mocap_skeleton not in MOCAP_SKELETONS:
        raise DataError(f"synthetic release: mocap skeleton {config.mocap_skeleton!r} is not one of "
                        f"{', '.join(MOCAP_SKELETONS)}")
    lo, hi = config.mocap_offset_mm
    if not 0 <= lo <= hi:
        raise DataError(f"synthetic release: mocap offsets need 0 <= min <= max mm, got {lo}, {hi}")
    for subject in config.subjects:
        metadata.subject_index(subject)
        for cam in release_cameras(metadata, subject, config.scale):
            if cam.width % 2 or cam.height % 2:
                raise DataError(
                    f"synthetic release: scale {config.scale} makes camera {cam.id} "
                    f"{cam.width}x{cam.height}; mp4 needs even sizes (try 1, 0.8 or 0.2)")
    for key in config.sequences:
        if key not in metadata.mapping:
            raise DataError(f"synthetic release: sequence {key} is not in the mapping table")
    unknown = [k for k in config.masks if k not in MASK_KINDS]
    if unknown:
        raise DataError(f"synthetic release: mask kind {unknown[0]!r} is not one of {', '.join(MASK_KINDS)}")
    for quirk in config.video_quirks:
        if quirk.drop_last >= config.frames:
            raise DataError(f"synthetic release: {quirk} drops every frame")


def _release_metadata(base: Metadata, config: SyntheticReleaseConfig) -> Metadata:
    """The real metadata with scaled intrinsics/resolutions and this release's frame counts."""
    cams = {(s, c): base.camera(subject, c).scaled(config.scale)
            for s, subject in enumerate(base.subjects) for c in range(len(base.camera_ids))}
    # Only the intrinsics change with the scale: keep the real extrinsic numbers verbatim
    # (re-encoding rotations as angles would pick other, equivalent angle triples).
    w0 = np.array(base.w0, dtype=np.float64)
    w0[W0_INTRINSICS_OFFSET:] = w0_from_cameras(cams, base.w0)[W0_INTRINSICS_OFFSET:]
    frames: dict[str, dict[SequenceKey, tuple[int, ...]]] = {}
    for subject in config.subjects:
        rows = {}
        for key in config.sequences:
            counts = [config.frames - _dropped(config, subject, key, cam) for cam in base.camera_ids]
            rows[key] = (*counts, MOCAP_RATE_FACTOR * config.frames)
        frames[subject] = rows
    resolution = {s: tuple((cams[(i, c)].height, cams[(i, c)].width)
                           for c in range(len(base.camera_ids)))
                  for i, s in enumerate(base.subjects)}
    return replace(base, w0=w0, resolution_hw=resolution, frames=frames,
                   actor_names=tuple(f"Synthetic{s[1:]}" for s in base.subjects))


def _dropped(config: SyntheticReleaseConfig, subject: str, key: SequenceKey, camera: str) -> int:
    return sum(q.drop_last for q in config.video_quirks
               if (q.subject, tuple(q.sequence), q.camera) == (subject, tuple(key), camera))


def _corrupt(config: SyntheticReleaseConfig, subject: str, key: SequenceKey, camera: str) -> bool:
    return any(q.corrupt for q in config.video_quirks
               if (q.subject, tuple(q.sequence), q.camera) == (subject, tuple(key), camera))


def write_synthetic_release(out: Path, config: SyntheticReleaseConfig | None = None) -> Path:
    """Write a synthetic Human3.6M release into ``out`` (created if needed); returns ``out``.

    Deterministic: the same config gives byte-identical CDFs, npz files and metadata.xml.
    Every file is written under a temporary name and renamed into place.
    """
    config = config or SyntheticReleaseConfig()
    out = Path(out)
    base = default_metadata()
    _check_config(config, base)
    metadata = _release_metadata(base, config)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="h36m-nvf-model-") as tmp_model:
        work_dir = Path(config.model_cache) if config.model_cache else Path(tmp_model)
        if work_dir.resolve() == out.resolve():
            raise DataError(f"{out}: the model cache must not be the release folder")
        body = _load_body(work_dir, config.model_seed, config.frames)
        # the universal skeleton (skel_angles): the model's mean shape, shared by all subjects
        universal = skeleton_offsets(_rest_mocap(body, np.zeros(NUM_BETAS), config.frames),
                                     metadata.joint_parents) * MM_PER_M
        metadata = replace(metadata, skel_angles_offsets_mm=tuple(map(tuple, universal.round(6))))
        jobs, measurements = _write_subjects(out, config, metadata, body)
        metadata = replace(metadata, subject_measurements=measurements)
        model_record = {"generator": "fitting.synthetic_model.write_synthetic_model",
                        "seed": config.model_seed, "file": body.model_path.name,
                        "sha256": sha256_file(body.model_path), "num_betas": NUM_BETAS,
                        "num_expression_coeffs": NUM_EXPRESSION, "flat_hand_mean": False}
    _run_jobs(jobs, config.workers)
    write_metadata(out / "metadata.xml", metadata)
    (out / "groundtruth").mkdir(exist_ok=True)
    release_config = {k: v for k, v in asdict(config).items() if k not in ("model_cache", "workers")}
    atomic_write_bytes(out / "groundtruth" / "model.json", json.dumps(
        {"model": model_record, "config": release_config, "fps": FPS}, indent=2, default=list).encode())
    return out


def _write_subjects(out: Path, config: SyntheticReleaseConfig, metadata: Metadata,
                    body: _Body) -> tuple[list[_VideoJob], dict[str, tuple[float, ...]]]:
    """Ground truth and mocap of every sequence; returns the video jobs still to render and
    each subject's ``subject_measurements`` row (rest-pose joints 0..28, mm)."""
    from pipeline.release.angles import angles_from_rotations

    jobs: list[_VideoJob] = []
    measurements: dict[str, tuple[float, ...]] = {}
    universal = np.array(metadata.skel_angles_offsets_mm)
    parents = metadata.joint_parents
    for subject in config.subjects:
        betas = _subject_betas(config.seed, subject)
        rest = _rest_mocap(body, betas, config.frames)
        measurements[subject] = tuple((rest[:29] * MM_PER_M).round(4).reshape(-1).tolist())
        albedo = _subject_albedo(body.part, config.seed, subject)
        cameras = [metadata.camera(subject, c) for c in range(len(metadata.camera_ids))]
        for key in config.sequences:
            basename = metadata.basename(subject, *key)
            action = canonical_action(metadata.action_names[key[0]])
            params = _sequence_params(body, betas, action, config.frames, config.seed,
                                      subject, basename)
            vertices, joints55 = _forward(body, params)
            through_correspondence = _mocap_from_body(vertices, joints55)
            offsets = np.zeros((32, 3))
            if config.mocap_skeleton == "mismatched":
                offsets = mocap_offsets(config.seed, subject, config.mocap_offset_mm)
            world_rotations = body_world_rotations(params["global_orient"], params["body_pose"])
            mocap = offset_mocap(through_correspondence, world_rotations, offsets)
            noise = rng_for(config.seed, "marker-noise", subject, basename).normal(
                0.0, config.marker_noise_mm / MM_PER_M, mocap.shape)
            written = mocap + noise
            angles = angles_from_rotations(written[:, 0] * MM_PER_M, joint_rotations(world_rotations, parents),
                                           parents, metadata.joint_names)
            _write_mocap(out, subject, basename, written, cameras, angles,
                         universal_mocap(angles, universal, metadata), metadata.joint_names)
            gt_dir = out / "groundtruth" / subject
            gt_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_npz(gt_dir / f"{basename}.npz", dict(**params, joints_h36m32=mocap,
                          joints_h36m32_correspondence=through_correspondence, mocap_offsets_m=offsets,
                          action_id=np.int64(key[0]), subaction=np.int64(key[1])))
            for cam in cameras:
                jobs.append(_VideoJob(
                    path=out / subject / "Videos" / f"{basename}.{cam.id}.mp4",
                    vertices=vertices.astype(np.float32), faces=body.faces, albedo=albedo,
                    camera=cam, backdrop_bgr=_backdrop_color(config.seed, cam.id),
                    frames=config.frames - _dropped(config, subject, key, cam.id),
                    corrupt=_corrupt(config, subject, key, cam.id), joints_world=written,
                    mask_paths={k: mask_path(out, subject, basename, cam.id, k) for k in config.masks},
                    mask_defects=config.mask_defects, seed=config.seed))
    return jobs, measurements


def write_groundtruth_fits(release: Path, work_dir: Path, mpjpe_mm: float = 0.0) -> int:
    """WORK/fit/<S>/<seq>.npz from a synthetic release's true SMPL-X parameters: a perfect fit
    in the fit stage's format (every mocap frame, recorded error ``mpjpe_mm``, the release
    model's sha256), so that sample, validate, audit and h3wb run on exactly known bodies
    without fitting. Returns the number of frames written."""
    from fitting.joint_sets import H36M17
    from pipeline.artifacts import SMPLX_PARAM_KEYS, FitSequence, write_fit_sequence

    work = WorkDir(Path(work_dir))
    model_json = Path(release) / "groundtruth" / "model.json"
    sha = json.loads(model_json.read_text())["model"]["sha256"] if model_json.is_file() else ""
    frames = 0
    for gt in sorted((Path(release) / "groundtruth").glob("S*/*.npz")):
        with np.load(gt) as z:
            params = {k: z[k] for k in SMPLX_PARAM_KEYS}
            betas = z["betas"]
        t = params["global_orient"].shape[0]
        path = work.fit_sequence(gt.parent.name, sequence_folder_name(gt.stem))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_fit_sequence(path, FitSequence(
            betas=betas.reshape(-1), params=params, frame_index=np.arange(t), mpjpe_mm=np.full(t, mpjpe_mm),
            joint_err_mm=np.full((t, len(H36M17)), mpjpe_mm), converged=np.ones(t, bool), body_model_sha256=sha))
        frames += t
    return frames


__all__ = ["SyntheticReleaseConfig", "VideoQuirk", "write_synthetic_release", "write_groundtruth_fits",
           "parse_sequence_key", "release_cameras", "FPS"]
