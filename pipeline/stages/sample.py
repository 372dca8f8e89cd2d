"""Sample stage: frustum query points with exact SDF and NVF votes into HDF5 shards.

Per (sequence, camera, frame) of a split: a square crop around the fitted body, undistorted
exactly into a pinhole crop of ``crop`` pixels; N query points in camera space
(sampling.frustum); their exact SDF to the fitted SMPL-X mesh (sampling.sdf); votes towards
the target joints (sampling.votes). Shards are keyed by what they hold, never by the
selection (see "plan" below): one camera of one sequence, a block of ``samples_per_shard``
frames on the part's stride grid; a unit writes one block's shards (one per camera).
``index.json`` of each part is updated before the units run (dropping the shards they will
rewrite) and after (listing what is there with the recorded checksums, the part's stride,
frame and sample counts).

Output: ``WORK/shards/<split>-<part>/shard-<S>-<seq>-<camera>-NNNNN.h5`` + ``index.json``
(part = train | test).
"""

from __future__ import annotations

import functools
import math
import os
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
#
# Shard assignment does not depend on the selection: a part's samples of one sequence are its
# fitted frames with images on the part's stride grid (anchored at frame 0), cut into blocks of
# ``samples_per_shard`` frames; block b of camera c is ``shard-<S>-<seq>-<c>-<b>.h5``. One unit
# is one block of one sequence, writing one shard per camera (a frame is posed once for all its
# views). The selection only picks which units run: --subjects/--actions/--cameras choose
# sequences and cameras, --frames the blocks that hold any of its frames. So a subset run
# rewrites exactly the shards of its selection and leaves every other file as it was.


@dataclass(frozen=True)
class Block:
    """One unit's frames: block ``number`` of a (subject, sequence) in a split part."""

    part: str
    subject: str
    sequence: str
    number: int
    stride: int
    frames: tuple[int, ...]
    """Mocap frames of the block, ascending."""
    cameras: tuple[tuple[str, tuple[int, ...]], ...]
    """(camera, its frames of the block that have an image), selected cameras only."""

    def specs(self) -> list[SampleSpec]:
        """The samples, frame by frame with the views of one frame side by side."""
        have = {c: set(fs) for c, fs in self.cameras}
        return [SampleSpec(self.subject, self.sequence, c, f) for f in self.frames
                for c, _ in self.cameras if f in have[c]]


def part_strides(config: SampleConfig) -> dict[str, tuple[int, str]]:
    """Part → (frame stride, where it comes from) for messages and --help."""
    split = get_split(config.split)
    sel_stride = config.selection.stride
    out = {}
    for part, own, override in (("train", split.train_stride, config.train_stride),
                                ("test", split.test_stride, config.test_stride)):
        if override:
            out[part] = (override, f"--{part}-stride {override}")
        elif sel_stride:
            out[part] = (sel_stride, f"--stride {sel_stride}")
        else:
            out[part] = (own, f"{config.split}'s {part} stride {own}")
    return out


def image_frames(work: WorkDir, subject: str) -> dict[tuple[str, str], set[int]]:
    """(sequence, camera) → 0-based frames with an extracted image (one directory listing)."""
    folder = work.images_dir(subject)
    out: dict[tuple[str, str], set[int]] = {}
    if not folder.is_dir():
        return out
    prefix = subject + "_"
    for name in os.listdir(folder):  # S1_Walking_1.54138969_000001.jpg
        if not (name.startswith(prefix) and name.endswith(".jpg")):
            continue
        stem, _, number = name[len(prefix):-4].rpartition("_")
        sequence, _, camera = stem.rpartition(".")
        if number.isdigit() and sequence:
            out.setdefault((sequence, camera), set()).add(int(number) - 1)
    return out


def every_nth(n: int) -> str:
    """"every frame", "every 2nd frame", "every 64th frame"."""
    if n == 1:
        return "every frame"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"every {n}{suffix} frame"


def check_stride_served(part: str, stride: int, source: str, where: str, available: list[int]) -> None:
    """SelectionError when the part's stride grid asks for frames between the available ones.

    ``available``: sorted fitted frames with an image. Frames outside their span are simply
    not there (a --frames extract); a grid frame inside it without an image means the extract
    (or fit) stride cannot serve this stride, e.g. test stride 64 over every 5th frame leaves
    only the multiples of 320.
    """
    if not available:
        return
    lo, hi = available[0], available[-1]
    have = set(available)
    missing = [f for f in range(-(-lo // stride) * stride, hi + 1, stride) if f not in have]
    if not missing:
        return
    served = functools.reduce(math.gcd, (b - a for a, b in zip(available, available[1:])), 0) or stride
    if stride % served:
        lcm = stride * served // math.gcd(stride, served)
        raise SelectionError(
            f"sample: the {part} part takes {every_nth(stride)} ({source}), but {where} has fitted frames "
            f"with images only at {every_nth(served)} (extract --stride {served}): only multiples of {lcm} "
            f"could be sampled; pass --{part}-stride (or --stride) with a multiple of {served}, or extract "
            f"with a --stride that divides {stride}")
    grid = range(-(-lo // stride) * stride, hi + 1, stride)
    if 2 * len(missing) >= len(grid):  # most of the grid: a stride that extract's grids do not hold
        raise SelectionError(
            f"sample: the {part} part takes {every_nth(stride)} ({source}), but {where} has images for only "
            f"{len(grid) - len(missing)} of its {len(grid)} frames (first missing: {missing[0]}); extract keeps "
            f"the multiples of its --stride and --also-every: pass --{part}-stride (or --stride) with a "
            f"multiple of one of them")
    raise DataError(f"{where}: frame {missing[0]} has no fitted frame with an extracted image inside the "
                    f"range {lo}..{hi} (deleted images? rerun extract and fit for it)")


def split_blocks(work: WorkDir, config: SampleConfig) -> list[Block]:
    """Every block of the selected subjects, sequences and cameras of each part, sorted.

    The blocks' frames depend on the part stride and on what WORK holds, never on the
    selection; --frames keeps the blocks that hold any frame of its range.
    """
    split = get_split(config.split)
    sel = config.selection
    strides = part_strides(config)
    start, stop = sel.frames
    blocks = []
    for part, subjects in (("train", split.train), ("test", split.test)):
        stride, source = strides[part]
        for subject in subjects:
            if not sel.wants_subject(subject):
                continue
            images = image_frames(work, subject)
            for seq in fitted_sequences(work, subject):
                info = read_sequence_info(work.sequence_json(subject, seq))
                if not sel.wants_sequence(info.action or seq, seq):
                    continue
                fitted = set(read_fit_sequence(work.fit_sequence(subject, seq)).frame_index.tolist())
                per_camera = {}
                for camera in info.camera_ids:
                    available = sorted(fitted & images.get((seq, camera), set()))
                    check_stride_served(part, stride, source, f"{subject}/{seq}/{camera}", available)
                    per_camera[camera] = {f for f in available if f % stride == 0}
                grid = sorted(set().union(*per_camera.values()))
                n = config.samples_per_shard
                for number, first in enumerate(range(0, len(grid), n)):
                    frames = tuple(grid[first:first + n])
                    if frames[-1] < start or (stop is not None and frames[0] >= stop):
                        continue
                    cameras = tuple((c, tuple(f for f in frames if f in fs)) for c, fs in per_camera.items()
                                    if sel.wants_camera(c) and fs.intersection(frames))
                    if cameras:
                        blocks.append(Block(part, subject, seq, number, stride, frames, cameras))
    return blocks


def split_samples(work: WorkDir, config: SampleConfig) -> dict[str, list[SampleSpec]]:
    """Sample specs per split part in shard order (the selected blocks' samples)."""
    parts: dict[str, list[SampleSpec]] = {"train": [], "test": []}
    for block in split_blocks(work, config):
        parts[block.part] += block.specs()
    return parts


def part_dir(work: WorkDir, config: SampleConfig, part: str) -> Path:
    return work.shards_dir(f"{config.split}-{part}")


def block_shard(work: WorkDir, config: SampleConfig, block: Block, camera: str) -> Path:
    from sampling.shards import shard_name

    return part_dir(work, config, block.part) / shard_name(block.number, (block.subject, block.sequence, camera))


def _params(config: SampleConfig) -> dict:
    from sampling.frustum import SamplerConfig

    return {"sampler": SamplerConfig(points=config.points).to_json(), "joints": config.joints,
            "radius": config.radius, "crop": config.crop, "seed": config.seed,
            "sdf_backend": config.sdf_backend, "jpeg_quality": config.jpeg_quality,
            "samples_per_shard": config.samples_per_shard,
            **({"crop_center": config.crop_center} if config.crop_center != "body" else {})}


def check_part_consistent(config: SampleConfig, work: WorkDir) -> None:
    """SelectionError when a run on a selection would write shards with other settings (crop,
    points, joints, stride …) than the shards of its parts that it leaves alone: one split
    must not mix them. A run over everything rewrites every shard, so it may change them."""
    import json

    from pipeline.store import describe_changes
    from sampling.shards import INDEX_NAME

    actions: dict = {}
    for part in ("train", "test"):
        path = part_dir(work, config, part) / INDEX_NAME
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        kept = [e["name"] for e in index.get("shards", [])
                if (g := _shard_group(e["name"])) is not None and not _selected_group(config, work, g, actions)]
        if not kept:
            continue
        old = {**(index.get("config") or {}), "stride": index.get("stride")}
        new = {**shard_config(config).to_json(), "stride": part_strides(config)[part][0]}
        changes = describe_changes(old, new)
        if changes and index.get("stride") is not None:
            raise SelectionError(
                f"sample: {path} lists {len(kept)} shard(s) outside this selection (e.g. {kept[0]}) made with "
                f"other settings ({changes}); one split must not mix them: rerun without a selection to "
                "rewrite every shard, or use the same options (a plain rerun takes them from WORK/params.yaml)")


def plan(config: SampleConfig, work: WorkDir) -> list[Unit]:
    model = resolve_model(config.body_model, work)
    check_part_consistent(config, work)
    blocks = split_blocks(work, config)
    used = sorted({(b.subject, b.sequence) for b in blocks})
    check_fit_model(model, (read_fit_sequence(work.fit_sequence(*k)) for k in used))
    units = []
    for block in blocks:
        s, q = block.subject, block.sequence
        inputs = {"body_model": model.path, "fit": work.fit_sequence(s, q),
                  "mocap": work.joints_world(s, q), "cameras": work.sequence_json(s, q)}
        specs = block.specs()
        inputs.update({f"image:{x.key}": work.image(s, q, x.camera, x.frame) for x in specs})
        shards = {c: block_shard(work, config, block, c) for c, _ in block.cameras}
        units.append(Unit(
            key=f"{config.split}-{block.part}/{s}/{q}/{block.number:05d}",
            outputs=tuple(shards.values()),
            inputs=inputs,
            params={**_params(config), "stride": block.stride, "frames": list(block.frames),
                    "cameras": [c for c, _ in block.cameras]},
            payload={"specs": tuple(specs), "shards": shards, "work": work.root, "model": model.path},
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
    """Write the block's shard of each camera; returns their index entries by shard name."""
    from pipeline.stages.progress import unit_progress
    from sampling.shards import write_shard

    work = WorkDir(unit.payload["work"])
    cache: dict = {}
    by_camera: dict[str, list] = {c: [] for c in unit.payload["shards"]}
    specs = unit.payload["specs"]
    for done, spec in enumerate(specs, start=1):
        by_camera[spec.camera].append(make_sample(spec, work, unit.payload["model"], config, cache))
        unit_progress(done, len(specs), "samples")
    entries = {}
    for camera, path in unit.payload["shards"].items():
        path.parent.mkdir(parents=True, exist_ok=True)
        info = write_shard(path, by_camera[camera], shard_config(config))
        entries[path.name] = {"name": path.name, "samples": info.samples, "sha256": info.sha256,
                              "bytes": info.bytes, "sequence": f"{by_camera[camera][0].subject}/"
                              f"{by_camera[camera][0].sequence}", "camera": camera,
                              "frames": len(by_camera[camera])}
    return {"samples": sum(e["samples"] for e in entries.values()),
            "bytes": sum(e["bytes"] for e in entries.values()), "shards": entries}


def _shard_group(name: str) -> tuple[str, str, str] | None:
    """(subject, sequence, camera) of a keyed shard name, None for an unkeyed one."""
    parts = name[len("shard-"):-len(".h5")].split("-")
    if len(parts) < 4:
        return None
    return parts[0], "-".join(parts[1:-2]), parts[-2]


def _selected_group(config: SampleConfig, work: WorkDir, group, actions: dict) -> bool:
    """True when the selection covers every frame of the shard's (subject, sequence, camera).
    ``actions``: the caller's cache of each (subject, sequence)'s action (one sequence.json
    read per sequence, not per shard)."""
    sel = config.selection
    subject, sequence, camera = group
    if sel.frames != (0, None) or not sel.wants_subject(subject) or not sel.wants_camera(camera):
        return False
    if (subject, sequence) not in actions:
        try:
            actions[subject, sequence] = read_sequence_info(work.sequence_json(subject, sequence)).action
        except DataError:
            actions[subject, sequence] = sequence.rsplit("_", 1)[0]
    return sel.wants_sequence(actions[subject, sequence] or sequence, sequence)


def _planned_entries(work: WorkDir, units: list[Unit]) -> dict[str, dict]:
    """Index entries of the shards the units wrote, from their done-records (no re-hashing)."""
    from pipeline.store import read_done_record

    entries = {}
    for unit in units:
        record = read_done_record(work, STAGE.name, unit.key) or {}
        recorded = record.get("outputs", {})
        for name, entry in (record.get("info") or {}).get("shards", {}).items():
            out = next((p for p in unit.outputs if p.name == name), None)
            if out is not None and recorded.get(work.relative(out), {}).get("sha256") == entry.get("sha256"):
                entries[name] = entry
    return entries


def _index_extra(config: SampleConfig, part: str, entries: list[dict]) -> dict:
    """The part's stride and counts: samples, and frames (per sequence, its largest camera count)."""
    per_sequence: dict[str, dict[str, int]] = {}
    for e in entries:
        if "sequence" in e:
            cams = per_sequence.setdefault(e["sequence"], {})
            cams[e["camera"]] = cams.get(e["camera"], 0) + int(e.get("frames", e["samples"]))
    return {"stride": part_strides(config)[part][0], "part": part,
            "frames": sum(max(c.values()) for c in per_sequence.values()),
            "sequences": len(per_sequence)}


def prepare(config: SampleConfig, work: WorkDir, units: list[Unit]) -> None:
    """Before the units run: drop the shards they rewrite from each part's index, so that
    ``index.json`` never lists a shard whose bytes differ from its entry."""
    from sampling.shards import INDEX_NAME, read_index_entries

    for part in ("train", "test"):
        folder = part_dir(work, config, part)
        rewritten = {p.name for u in units for p in u.outputs if p.parent == folder}
        old = read_index_entries(folder)
        if rewritten & set(old) and (folder / INDEX_NAME).is_file():
            _write_part_index(config, work, part, old, exclude=rewritten)


def _write_part_index(config: SampleConfig, work: WorkDir, part: str, known: dict, exclude=()) -> None:
    from sampling.shards import write_index

    folder = part_dir(work, config, part)
    try:
        write_index(folder, shard_config(config), known=known, exclude=exclude,
                    extra=lambda entries: _index_extra(config, part, entries))
    except OSError as e:  # disk full, read-only folder: one line naming the file
        raise output_error(folder / "index.json", e) from e


def finalize(config: SampleConfig, work: WorkDir, units: list[Unit]) -> None:
    """After the units ran (also when some failed): each part's index.json lists the shards
    present, the ones of this run's units with their recorded checksums, except those whose
    unit failed (their old file is not current; the next run redoes them).

    Shards that a previous run left in a group this selection covers wholly (no --frames) and
    that are no longer planned (fewer frames now, a sequence gone) are removed; shards of
    groups outside the selection are left as they are, and so are their index entries.
    Unkeyed ``shard-NNNNN.h5`` files of stage version 1 (which mixed sequences) are removed.
    """
    from sampling.shards import SHARD_PATTERN, read_index_entries

    planned = {p for u in units for p in u.outputs}
    actions: dict = {}
    written = _planned_entries(work, units)
    for part in ("train", "test"):
        folder = part_dir(work, config, part)
        if not folder.is_dir():
            continue
        old = read_index_entries(folder)
        doomed = []
        for p in folder.iterdir():
            if SHARD_PATTERN.match(p.name) and p not in planned:
                group = _shard_group(p.name)
                if group is None or _selected_group(config, work, group, actions):
                    doomed.append(p)
        # a planned shard without a done-record (its unit failed) is not current: left out, rerun next time
        unfinished = {p.name for p in planned if p.parent == folder and p.name not in written}
        if any(SHARD_PATTERN.match(p.name) for p in folder.iterdir()) or old:
            # the index first, then the files: it never lists a missing shard
            _write_part_index(config, work, part, {**old, **written},
                              exclude={p.name for p in doomed} | unfinished)
        for p in doomed:
            p.unlink()


def summary(config: SampleConfig, work: WorkDir) -> list[str]:
    """One line per split part: sequences, frames and samples its index lists, stride, size."""
    import json

    from sampling.shards import INDEX_NAME

    lines = []
    split = get_split(config.split)
    for part, subjects in (("train", split.train), ("test", split.test)):
        path = part_dir(work, config, part) / INDEX_NAME
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError):
            lines.append(f"  {path.parent.name}: no samples (none of its subjects {', '.join(subjects)} "
                         "is fitted and selected)")
            continue
        size = sum(int(s.get("bytes", 0)) for s in index.get("shards", []))
        lines.append(f"  {path.parent.name}: {index.get('sequences', '?')} sequences, {index.get('frames', '?')} "
                     f"frames, {index['samples']} samples in {len(index['shards'])} shards "
                     f"({size / 2**20:.1f} MiB), {every_nth(index.get('stride', 1))}")
    return lines


STAGE = Stage(
    name="sample",
    version="2",  # 2: shards keyed by sequence, camera and frame block
    help="Sample query points with exact SDF and NVF votes into HDF5 shards.",
    config_type=SampleConfig,
    plan=plan,
    run_unit=run_unit,
    prepare=prepare,
    finalize=finalize,
    summary=summary,
    default_stride=None,
    stride_fields=("train_stride", "test_stride"),
    stride_help=("Frame strides of the splits' parts: "
                 + "; ".join(f"{s.name}: train {every_nth(s.train_stride)}, test {every_nth(s.test_stride)}"
                             for s in SPLITS.values())
                 + ". --stride sets both parts, --train-stride / --test-stride one. Every frame a "
                 "stride asks for must have an extracted image: extract keeps the multiples of its --stride and of "
                 "--also-every (default 5 and 64, so protocol1 is served); any other stride is an error. Shards are keyed by sequence, camera and frame block: a run on a "
                 "selection rewrites only its own shards."),
    options=(
        StageOption("split", str, "Named split: protocol1 or h3wb."),
        StageOption("train_stride", int, "Frame stride of the training part [default: the split's, "
                    + ", ".join(f"{s.name} {s.train_stride}" for s in SPLITS.values()) + "]."),
        StageOption("test_stride", int, "Frame stride of the test part [default: the split's, "
                    + ", ".join(f"{s.name} {s.test_stride}" for s in SPLITS.values()) + "]."),
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
