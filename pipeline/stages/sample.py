"""Sample stage: frustum query points with exact SDF and NVF votes into HDF5 shards.

Per (sequence, camera, frame) of a split: a square crop around the fitted body, undistorted
exactly into a pinhole crop of ``crop`` pixels; N query points in camera space
(sampling.frustum); their exact SDF to the fitted SMPL-X mesh (sampling.sdf); votes towards
the target joints (sampling.votes). One unit is one shard of ``samples_per_shard``
consecutive samples of a split part in sorted (subject, sequence, camera, frame) order, so
shard contents do not depend on scheduling; ``index.json`` is rebuilt after the units ran.

Output: ``WORK/shards/<split>-<part>/shard-NNNNN.h5`` + ``index.json`` (part = train | test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import (
    FitSequence,
    check_fit_model,
    fitted_sequences,
    read_fit_sequence,
    read_joints_world,
    read_sequence_info,
    resolve_model,
)
from pipeline.errors import DataError, SelectionError
from pipeline.release.splits import SPLITS, get_split
from pipeline.selection import Selection
from pipeline.stages.base import BODY_MODEL_OPTION, Stage, StageConfig, StageOption, Unit
from pipeline.store import WorkDir, output_error

VOTE_JOINT_SETS = ("h36m17", "smplx55", "cocowb133")
"""Joint sets the votes may point to (h36m17 from the mocap, the others from the fit)."""
CROP_MARGIN = 1.2
"""Crop side = this × the larger side of the body's pinhole bounding box."""
CROP_CENTERS = ("body", "bbox")
"""Values of ``SampleConfig.crop_center``."""


@dataclass(frozen=True)
class SampleConfig(StageConfig):
    """Options of the sample stage (defaults are the documented sampler of DESIGN.md).

    Reads WORK only. The selection's stride None means each split part's own stride.
    """

    split: str = "protocol1"
    """Named split (pipeline.release.splits): protocol1 or h3wb."""
    train_stride: int | None = None
    """Override of the split's training frame stride."""
    test_stride: int | None = None
    """Override of the split's test frame stride."""
    points: int = 4096
    """Query points per sample."""
    joints: str = "h36m17"
    """Vote target joint set: h36m17 (mocap), smplx55 or cocowb133 (from the fit)."""
    radius: float = 0.3
    """Vote radius r, metres."""
    crop: int = 256
    """Side of the undistorted square crop, pixels."""
    samples_per_shard: int = 64
    """Samples per shard file (the last one of a part may hold fewer)."""
    body_model: str = "synthetic"
    """SMPL-X file or folder, or "synthetic" (the model in WORK/bodymodel)."""
    sdf_backend: str = "auto"
    """sampling.sdf backend: auto, cpu, cuda, torch, or mesh-to-sdf (comparison only)."""
    seed: int = 0
    """Global seed; each sample's draws are keyed by (seed, sample key)."""
    jpeg_quality: int = 95
    """JPEG quality of the stored crops."""
    crop_center: str = "body"
    """Centre of the crop: "body" (the fitted body's pinhole box) or "bbox" (the release's
    official ground_truth_bb box where the frame has one, else the body's); the side always
    follows the body."""

    def __post_init__(self) -> None:
        """Bad values are a usage error now, not a ValueError deep in a unit."""
        from sampling.sdf import available_backends

        backends = available_backends()
        checks = [(self.split in SPLITS, "--split", self.split, ", ".join(SPLITS)),
                  (self.joints in VOTE_JOINT_SETS, "--joints", self.joints, ", ".join(VOTE_JOINT_SETS)),
                  (self.sdf_backend in backends, "--sdf-backend", self.sdf_backend, ", ".join(backends)),
                  (self.crop_center in CROP_CENTERS, "--crop-center", self.crop_center, ", ".join(CROP_CENTERS))]
        for ok, flag, value, known in checks:
            if not ok:
                raise SelectionError(f"{flag}: unknown value {value!r}; use {known}")
        for flag, value, low in (("--points", self.points, 1), ("--crop", self.crop, 8),
                                 ("--samples-per-shard", self.samples_per_shard, 1),
                                 ("--train-stride", self.train_stride or 1, 1),
                                 ("--test-stride", self.test_stride or 1, 1)):
            if value < low:
                raise SelectionError(f"{flag} must be at least {low}, got {value}")
        if not self.radius > 0:
            raise SelectionError(f"--radius must be positive (metres), got {self.radius}")
        if not 0 <= self.jpeg_quality <= 100:
            raise SelectionError(f"--jpeg-quality must be within 0..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class SampleSpec:
    subject: str
    sequence: str
    camera: str
    frame: int

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.sequence}/{self.camera}/{self.frame:06d}"


# --- plan -------------------------------------------------------------------------------------


def split_samples(work: WorkDir, config: SampleConfig) -> dict[str, list[SampleSpec]]:
    """Sample specs per split part, sorted; only fitted frames that have an extracted image.

    Frame stride of a part: ``--train-stride``/``--test-stride``, else ``--stride``, else the
    split's own.
    """
    split = get_split(config.split)
    sel = config.selection
    parts = {}
    for part, subjects, stride in split.parts(config.train_stride or sel.stride,
                                              config.test_stride or sel.stride):
        specs = []
        for subject in subjects:
            if not sel.wants_subject(subject):
                continue
            for seq in fitted_sequences(work, subject):
                info = read_sequence_info(work.sequence_json(subject, seq))
                if not sel.wants_sequence(info.action or seq, seq):
                    continue
                fitted = set(read_fit_sequence(work.fit_sequence(subject, seq)).frame_index.tolist())
                frames = [f for f in Selection(frames=sel.frames, stride=stride).frame_indices(max(fitted) + 1)
                          if f in fitted]
                for camera in info.camera_ids:
                    if sel.wants_camera(camera):
                        specs += [SampleSpec(subject, seq, camera, f) for f in frames
                                  if work.image(subject, seq, camera, f).exists()]
        # the views of one frame side by side: one posed body serves all of them
        parts[part] = sorted(specs, key=lambda s: (s.subject, s.sequence, s.frame, s.camera))
    return parts


def part_dir(work: WorkDir, config: SampleConfig, part: str) -> Path:
    return work.shards_dir(f"{config.split}-{part}")


def _params(config: SampleConfig) -> dict:
    from sampling.frustum import SamplerConfig

    return {"sampler": SamplerConfig(points=config.points).to_json(), "joints": config.joints,
            "radius": config.radius, "crop": config.crop, "seed": config.seed,
            "sdf_backend": config.sdf_backend, "jpeg_quality": config.jpeg_quality,
            "samples_per_shard": config.samples_per_shard,
            **({"crop_center": config.crop_center} if config.crop_center != "body" else {})}


def plan(config: SampleConfig, work: WorkDir) -> list[Unit]:
    from sampling.shards import shard_name

    model = resolve_model(config.body_model, work)
    parts = split_samples(work, config)
    used = sorted({(s.subject, s.sequence) for specs in parts.values() for s in specs})
    check_fit_model(model, (read_fit_sequence(work.fit_sequence(*k)) for k in used))
    model_path = model.path
    units = []
    for part, specs in parts.items():
        out_dir = part_dir(work, config, part)
        n = config.samples_per_shard
        for number, start in enumerate(range(0, len(specs), n)):
            chunk = tuple(specs[start:start + n])
            inputs = {"body_model": model_path}
            for s in chunk:
                inputs[f"fit:{s.subject}/{s.sequence}"] = work.fit_sequence(s.subject, s.sequence)
                inputs[f"mocap:{s.subject}/{s.sequence}"] = work.joints_world(s.subject, s.sequence)
                inputs[f"cameras:{s.subject}/{s.sequence}"] = work.sequence_json(s.subject, s.sequence)
                inputs[f"image:{s.key}"] = work.image(s.subject, s.sequence, s.camera, s.frame)
            units.append(Unit(
                key=f"{config.split}-{part}/{shard_name(number)[:-3]}",
                outputs=(out_dir / shard_name(number),),
                inputs=inputs,
                params={**_params(config), "samples": [s.key for s in chunk]},
                payload={"specs": chunk, "work": work.root, "model": model_path},
                resources={"GPU": 1} if config.sdf_backend == "cuda" else None,
            ))
    return units


# --- one unit ---------------------------------------------------------------------------------


def posed_body(model_path: Path, fit: FitSequence, row: int, use_face_contour: bool):
    """(vertices (V,3), joints (J',3) smplx output) of one fitted frame, world frame, metres, float64."""
    import torch

    from fitting.bodymodel import cached_body_model_f64

    model = cached_body_model_f64(str(model_path), use_face_contour)
    kw = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in fit.smplx_kwargs(row).items()}
    with torch.no_grad():
        out = model(**kw)
    return out.vertices[0].numpy(), out.joints[0].numpy()


def rest_pelvis(model_path: Path, betas: np.ndarray) -> np.ndarray:
    """(3,) pelvis J0(betas) at zero pose and translation (metres): depends on the shape only."""
    import torch

    from fitting.bodymodel import cached_body_model_f64

    model = cached_body_model_f64(str(model_path), False)
    with torch.no_grad():
        out = model(betas=torch.as_tensor(betas, dtype=torch.float64).reshape(1, -1))
    return out.joints[0, 0].numpy()


def target_joints(joint_set: str, mocap32: np.ndarray, smplx_joints: np.ndarray) -> np.ndarray:
    """(J, 3) world-frame targets of the named joint set for one frame."""
    from fitting.joint_sets import H36M17_FROM_H36M32, cocowb133_from_smplx144

    if joint_set == "h36m17":
        return mocap32[H36M17_FROM_H36M32]
    if joint_set == "smplx55":
        return smplx_joints[:55]
    if joint_set == "cocowb133":
        return smplx_joints[cocowb133_from_smplx144()]
    raise ValueError(f"unknown vote joint set {joint_set!r}: use h36m17, smplx55 or cocowb133")


def crop_around(vertices_cam: np.ndarray, K: np.ndarray, crop_px: int, center_uv=None) -> np.ndarray:
    """(3, 3) intrinsics of a square pinhole crop around the projected body (vertices (V, 3) camera
    frame), centred on the body's box or on ``center_uv`` (2,) pinhole pixels when given."""
    from pipeline.release.cameras import crop_intrinsics, project_pinhole

    uv = project_pinhole(vertices_cam, K)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    side = CROP_MARGIN * float(max(hi - lo))
    return crop_intrinsics((lo + hi) / 2 if center_uv is None else center_uv, side, crop_px, K)


def official_box_center(info, camera, frame: int) -> np.ndarray | None:
    """(2,) pinhole pixels of the centre of the release's ground_truth_bb box of a frame (the
    box is in the distorted video image: its centre is undistorted exactly), or None."""
    from pipeline.release.cameras import undistort_pixels_h36m

    mask = info.mask("ground_truth_bb", camera.id)
    if mask is None or frame >= mask.frames:
        return None
    box = mask.box(frame)
    if box is None:
        return None
    center = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float64)
    return undistort_pixels_h36m(center, camera.K, camera.dist)


def _shares_cpu_tree(backend: str) -> bool:
    """The "cpu" SDF (also what "auto" picks for these numpy points): one tree per frame."""
    return backend in ("cpu", "auto")


def world_sdf_tree(previous, seq_key: tuple[str, str], vertices: np.ndarray, faces: np.ndarray):
    """(seq_key, sampling.sdf.CpuSdf) of one posed frame, world frame, shared by its views.

    Within a sequence the previous frame's tree is refitted (same faces, a nearby pose; about
    20 x cheaper than a build, same results); a new sequence builds afresh, so the topology
    never drifts far from the poses it serves.
    """
    from sampling.sdf import CpuSdf

    if previous is not None and previous[0] == seq_key:
        return seq_key, previous[1].refit(vertices)
    return seq_key, CpuSdf.build(vertices, faces)


def make_sample(spec: SampleSpec, work: WorkDir, model_path: Path, config: SampleConfig, cache: dict):
    """One ShardSample: crop, query points, SDF, votes, joints and camera-frame params."""
    import cv2

    from common.rng import rng_for
    from fitting.bodymodel import cached_body_model_f64
    from fitting.smplx_params import smplx_params_to_camera
    from pipeline.release.cameras import undistort_image
    from sampling.frustum import SamplerConfig, sample_query_points
    from sampling.sdf import signed_distance
    from sampling.shards import ShardSample
    from sampling.votes import nvf_votes

    seq_key = (spec.subject, spec.sequence)
    if seq_key not in cache:
        fit = read_fit_sequence(work.fit_sequence(*seq_key))
        cache[seq_key] = (fit, read_sequence_info(work.sequence_json(*seq_key)),
                          read_joints_world(work.joints_world(*seq_key)), rest_pelvis(model_path, fit.betas))
    fit, info, mocap, pelvis_rest = cache[seq_key]
    camera = info.camera(spec.camera)
    row = fit.row_of(spec.frame)
    faces = np.asarray(cached_body_model_f64(str(model_path), config.joints == "cocowb133").faces, dtype=np.int64)
    frame_key = (seq_key, row)  # the cameras of one frame are neighbours in a shard: pose once
    if cache.get("frame_key") != frame_key:
        cache["frame_key"] = frame_key
        cache["posed"] = posed_body(model_path, fit, row, config.joints == "cocowb133")
        if _shares_cpu_tree(config.sdf_backend):
            cache["tree"] = world_sdf_tree(cache.get("tree"), seq_key, cache["posed"][0], faces)
    verts, smplx_joints = cache["posed"]
    R, t = camera.R, camera.t
    verts_cam = verts @ R.T + t
    joints_cam = target_joints(config.joints, mocap[spec.frame], smplx_joints) @ R.T + t
    root_cam = mocap[spec.frame][0] @ R.T + t

    image_path = work.image(spec.subject, spec.sequence, spec.camera, spec.frame)
    image = cv2.imread(str(image_path))
    if image is None:
        raise DataError(f"{image_path}: missing or unreadable extracted image")
    if image.shape[:2] != (camera.height, camera.width):
        raise DataError(f"{image_path}: image is {image.shape[1]}x{image.shape[0]}, camera says "
                        f"{camera.width}x{camera.height}")
    center = official_box_center(info, camera, spec.frame) if config.crop_center == "bbox" else None
    K_crop = crop_around(verts_cam, camera.K, config.crop, center)
    crop = undistort_image(image, camera, K_crop, (config.crop, config.crop))

    sampler = SamplerConfig(points=config.points)
    if _shares_cpu_tree(config.sdf_backend):
        tree = cache["tree"][1]

        def sdf_of(points_cam):  # the frame's world-frame tree: X_world = R^T (X_cam - t)
            return tree.signed_distance((np.asarray(points_cam, np.float64) - t) @ R)
    else:
        def sdf_of(points_cam):
            return signed_distance(points_cam, verts_cam, faces, backend=config.sdf_backend)
    points, sdf = sample_query_points(
        verts_cam, faces, root_cam, K_crop, config.crop, sampler, rng_for(config.seed, spec.key), sdf_of)
    votes = nvf_votes(points.astype(np.float64), joints_cam, config.radius)
    params = smplx_params_to_camera({k: v[0] for k, v in fit.smplx_kwargs(row).items()}, R, t, pelvis_rest)
    return ShardSample(
        key=spec.key, subject=spec.subject, sequence=spec.sequence, camera=spec.camera, frame=spec.frame,
        image=crop, K=K_crop, cam_from_world_R=R, cam_from_world_t=t, root=root_cam, points=points,
        sdf=sdf, votes=votes.astype(np.float16), joints=joints_cam.astype(np.float32),
        smplx={k: np.asarray(v, dtype=np.float32) for k, v in params.items()},
        fit_mpjpe_mm=float(fit.mpjpe_mm[row]),
    )


def shard_config(config: SampleConfig):
    from sampling.frustum import SamplerConfig
    from sampling.shards import ShardConfig

    return ShardConfig(joint_set=config.joints, radius=config.radius, num_points=config.points,
                       image_size=config.crop, jpeg_quality=config.jpeg_quality,
                       sampler=SamplerConfig(points=config.points).to_json())


def run_unit(unit: Unit, config: SampleConfig) -> dict:
    from pipeline.stages.progress import unit_progress
    from sampling.shards import write_shard

    work = WorkDir(unit.payload["work"])
    cache: dict = {}
    specs = unit.payload["specs"]
    samples = []
    for spec in specs:
        samples.append(make_sample(spec, work, unit.payload["model"], config, cache))
        unit_progress(len(samples), len(specs), "samples")
    unit.outputs[0].parent.mkdir(parents=True, exist_ok=True)
    info = write_shard(unit.outputs[0], samples, shard_config(config))
    return {"samples": info.samples, "sha256": info.sha256, "bytes": info.bytes}


def finalize(config: SampleConfig, work: WorkDir, units: list[Unit]) -> None:
    """Drop shards a previous, larger run left behind, then rebuild each part's index.json."""
    from sampling.shards import SHARD_PATTERN, write_index

    planned = {p for u in units for p in u.outputs}
    for part in ("train", "test"):
        folder = part_dir(work, config, part)
        if not folder.is_dir():
            continue
        for stale in (p for p in folder.iterdir() if SHARD_PATTERN.match(p.name) and p not in planned):
            stale.unlink()
        if any(SHARD_PATTERN.match(p.name) for p in folder.iterdir()):
            try:
                write_index(folder, shard_config(config))
            except OSError as e:  # disk full, read-only folder: one line naming the file
                raise output_error(folder / "index.json", e) from e


STAGE = Stage(
    name="sample",
    version="1",
    help="Sample query points with exact SDF and NVF votes into HDF5 shards.",
    config_type=SampleConfig,
    plan=plan,
    run_unit=run_unit,
    finalize=finalize,
    default_stride=None,
    stride_help=("--stride sets both parts' frame stride; without it each split uses its own ("
                 + "; ".join(f"{s.name}: train {s.train_stride}, test {s.test_stride}" for s in SPLITS.values())
                 + "). --train-stride / --test-stride override one part."),
    options=(
        StageOption("split", str, "Named split: protocol1 or h3wb."),
        StageOption("train_stride", int, "Override the split's training frame stride."),
        StageOption("test_stride", int, "Override the split's test frame stride."),
        StageOption("points", int, "Query points per sample."),
        StageOption("joints", str, "Vote targets: h36m17 (mocap), smplx55 or cocowb133."),
        StageOption("radius", float, "Vote radius in metres."),
        StageOption("crop", int, "Crop side in pixels."),
        StageOption("crop_center", str, "Crop centre: body (fitted body) or bbox (official ground_truth_bb)."),
        StageOption("samples_per_shard", int, "Samples per shard file."),
        BODY_MODEL_OPTION,
        StageOption("sdf_backend", str, "SDF backend: auto, cpu, cuda, torch, mesh-to-sdf."),
        StageOption("seed", int, "Global random seed."),
    ),
)
