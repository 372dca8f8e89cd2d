"""``h36m-nvf validate``: an independent check of shards against their definitions.

It shares no code with the writer's computations. For every shard: schema, shapes and the
sha256 in index.json. For K random samples: rebuild the mesh from the stored camera-frame
SMPL-X params with smplx, recompute the SDF of a subset of points in float64 by brute force
(exact point-triangle distances and a full solid-angle winding number sum, where the writer
uses a BVH and a fast winding-number tree), recompute the votes from the stored joints and
points with the formula written out here, check that the stored joints agree with the joints
regressed from the mesh to within the recorded fit error, reproject the joints into the crop
with K, and compare the crop's pixels with an undistortion of the source frame done here.

A check that cannot run (the crop check of a split copied away from its WORK, whose source
frames and sequence.json are not beside it) is never passed in silence: it is listed as not
run, and counts as a problem unless ``allow_skipped`` (``--allow-skipped``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.store import WorkDir

SDF_TOLERANCE_M = 1e-5
"""Largest accepted |stored - recomputed| SDF (float32 storage of ~1 m values: ~1e-7)."""
VOTE_TOLERANCE = 2e-3
"""float16 storage of values in [-1, 1] rounds to < 5e-4; a little slack for h near cut-off."""
JOINT_SLACK_MM = 1.0
"""Stored joints vs joints regressed from the stored mesh: allowed excess over the fit error."""
CROP_MAX_MEAN_ABS = 6.0
"""Mean |crop - recomputed crop| in grey levels that JPEG at quality ≥ 90 stays below."""


@dataclass(frozen=True)
class ValidateConfig:
    """What ``validate`` checks."""

    samples: int = 4
    """Random samples per split folder whose contents are recomputed."""
    points: int = 256
    """Points per checked sample whose SDF is recomputed."""
    body_model: str = "synthetic"
    """SMPL-X file or folder, or "synthetic" (WORK/bodymodel of the shards' work dir)."""
    seed: int = 0
    """Which samples and points get checked."""
    allow_skipped: bool = False
    """A check that cannot run (no source frame for the crop check) is reported as not run
    but is no problem; by default it is one."""


@dataclass
class ValidateReport:
    """What ``validate_report`` found."""

    checked: int
    """Samples whose contents were recomputed."""
    problems: list[str]
    """One line per problem found."""
    not_run: list[str]
    """One line per check that could not run, naming what it lacked."""


def split_folders(path: Path) -> list[Path]:
    """``path`` itself when it holds an index.json, else its sub-folders that do."""
    if (path / "index.json").is_file():
        return [path]
    folders = sorted(p for p in path.iterdir() if (p / "index.json").is_file()) if path.is_dir() else []
    return folders or [path]  # an empty or foreign folder: read_index names the problem


def work_dir_of(split_dir: Path) -> WorkDir:
    """WORK of ``WORK/shards/<split>``."""
    return WorkDir(split_dir.resolve().parent.parent)


# --- independent references -------------------------------------------------------------------


CHUNK_POINTS = 8
"""Points per brute-force block: (points x faces x 3 x 3) float64 temporaries stay a few MB."""


def _norm(x: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis (np.linalg.norm is several times slower on (P, F, 3))."""
    return np.sqrt(np.einsum("...i,...i->...", x, x))


def closest_distance_f64(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """(P,) exact distance from points (P, 3) to the union of triangles (F, 3, 3), float64 brute force.

    Projects onto each triangle's plane and, when the projection falls outside, takes the
    nearest of the three edge segments (a different formulation from Ericson's regions).
    """
    best = np.full(len(points), np.inf)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    n = np.cross(b - a, c - a)
    nn = np.einsum("fi,fi->f", n, n)
    ok = nn > 1e-30
    for start in range(0, len(points), CHUNK_POINTS):
        p = points[start:start + CHUNK_POINTS, None, :]  # (p, 1, 3)
        d_plane = np.einsum("pfi,fi->pf", p - a, n) / np.where(ok, nn, 1)
        q = p - d_plane[..., None] * n  # projection on the plane
        # barycentric sign test: inside when q is on the inner side of all three edges
        inside = ok & (np.einsum("pfi,fi->pf", np.cross(b - a, q - a), n) >= 0) \
            & (np.einsum("pfi,fi->pf", np.cross(c - b, q - b), n) >= 0) \
            & (np.einsum("pfi,fi->pf", np.cross(a - c, q - c), n) >= 0)
        d = np.where(inside, _norm(p - q), np.inf)
        for e0, e1 in ((a, b), (b, c), (c, a)):
            e = e1 - e0
            s = np.clip(np.einsum("pfi,fi->pf", p - e0, e) / np.maximum(np.einsum("fi,fi->f", e, e), 1e-300), 0, 1)
            d = np.minimum(d, _norm(p - (e0 + s[..., None] * e)))
        best[start:start + CHUNK_POINTS] = d.min(axis=1)
    return best


def winding_number_f64(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """(P,) generalized winding number, exact solid-angle sum (Van Oosterom–Strackee), float64."""
    out = np.zeros(len(points))
    for start in range(0, len(points), CHUNK_POINTS):
        p = points[start:start + CHUNK_POINTS, None, None, :]
        r = tri[None] - p  # (p, F, 3, 3)
        ln = _norm(r)
        det = np.einsum("pfi,pfi->pf", r[:, :, 0], np.cross(r[:, :, 1], r[:, :, 2]))
        dots = (ln[..., 0] * ln[..., 1] * ln[..., 2]
                + np.einsum("pfi,pfi->pf", r[:, :, 0], r[:, :, 1]) * ln[..., 2]
                + np.einsum("pfi,pfi->pf", r[:, :, 1], r[:, :, 2]) * ln[..., 0]
                + np.einsum("pfi,pfi->pf", r[:, :, 2], r[:, :, 0]) * ln[..., 1])
        out[start:start + CHUNK_POINTS] = (2 * np.arctan2(det, dots)).sum(axis=1) / (4 * np.pi)
    return out


def votes_reference(points: np.ndarray, joints: np.ndarray, radius: float) -> np.ndarray:
    """(N, J, 4) ``[h, u]`` written out from the definition (reference README, NVF)."""
    diff = joints[None, :, :] - points[:, None, :]
    dist = np.linalg.norm(diff, axis=-1)
    h = np.maximum(0.0, 1.0 - dist / radius)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where((h > 0)[..., None] & (dist > 0)[..., None], diff / dist[..., None], 0.0)
    h = np.where(dist > 0, h, 1.0)
    return np.concatenate([h[..., None], u], axis=-1)


def undistort_crop_reference(image: np.ndarray, camera: dict, K_crop: np.ndarray, size: int) -> np.ndarray:
    """The crop recomputed from the source frame with the documented H36M lens formula."""
    import cv2

    fx, fy, cx, cy = camera["K"][0][0], camera["K"][1][1], camera["K"][0][2], camera["K"][1][2]
    k1, k2, k3, pa, pb = camera["dist"]
    u, v = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    y = (v - K_crop[1, 2]) / K_crop[1, 1]
    x = (u - K_crop[0, 2] - K_crop[0, 1] * y) / K_crop[0, 0]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    tan = pa * y + pb * x
    xd = x * (radial + tan) + pb * r2
    yd = y * (radial + tan) + pa * r2
    return cv2.remap(image, (fx * xd + cx).astype(np.float32), (fy * yd + cy).astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# --- checks -----------------------------------------------------------------------------------


def check_sample(sample: dict, radius: float, joint_set: str, model, work: WorkDir, config: ValidateConfig,
                 rng: np.random.Generator, where: str, not_run: list[str] | None = None) -> list[str]:
    """One-line problems of one sample (``where`` names shard and index); checks that cannot
    run are appended to ``not_run``."""
    import cv2
    import torch

    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx
    from fitting.joint_sets import H36M17_FROM_H36M32

    problems = []
    kw = {k: torch.as_tensor(v[None], dtype=torch.float64) for k, v in sample["smplx"].items()}
    with torch.no_grad():
        out = model(**kw)
    verts = out.vertices[0].numpy()
    faces = np.asarray(model.faces, dtype=np.int64)
    tri = verts[faces]

    pts = sample["points"].astype(np.float64)
    pick = rng.choice(len(pts), size=min(config.points, len(pts)), replace=False)
    dist = closest_distance_f64(pts[pick], tri)
    sign = np.where(winding_number_f64(pts[pick], tri) > 0.5, -1.0, 1.0)
    err = np.abs(sign * dist - sample["sdf"][pick])
    if err.max() > SDF_TOLERANCE_M:
        problems.append(f"{where}: SDF off by {1000 * err.max():.3f} mm at point {int(pick[err.argmax()])}")

    ref_votes = votes_reference(pts, sample["joints"].astype(np.float64), radius)
    verr = np.abs(ref_votes - sample["votes"].astype(np.float64)).max()
    if verr > VOTE_TOLERANCE:
        problems.append(f"{where}: votes differ from the joints and points by {verr:.4f}")

    if joint_set == "h36m17":
        regressed = h36m32_from_smplx(out.joints[0, :55], out.vertices[0][correspondence_vertex_ids()]).numpy()
        per_joint = 1000 * np.linalg.norm(regressed[H36M17_FROM_H36M32] - sample["joints"], axis=-1)
        if per_joint.mean() > float(sample["fit_mpjpe_mm"]) + JOINT_SLACK_MM:
            problems.append(f"{where}: joints disagree with the stored body by {per_joint.mean():.1f} mm "
                            f"(fit error {float(sample['fit_mpjpe_mm']):.1f} mm); swapped or wrong joints?")

    crop = cv2.imdecode(sample["image"], cv2.IMREAD_COLOR)
    size = crop.shape[0] if crop is not None else 0
    uvw = sample["joints"].astype(np.float64) @ sample["K"].astype(np.float64).T
    uv = uvw[:, :2] / uvw[:, 2:]
    if crop is None or not ((uv > -0.5) & (uv < size - 0.5)).all():
        problems.append(f"{where}: joints do not project into the crop with its K")
    src = work.image(sample["subject"], sample["sequence"], sample["camera"], int(sample["frame"]))
    seq_json = work.sequence_json(sample["subject"], sample["sequence"])
    lacking = next((p for p in (src, seq_json) if not p.is_file()), None)
    image = cv2.imread(str(src)) if lacking is None else None
    if lacking is None and image is None:
        problems.append(f"{where}: source frame {src} cannot be read")
    if lacking is not None and not_run is not None:
        not_run.append(f"{where}: crop check not run: {lacking} not found "
                       "(the split is not inside the WORK that wrote it?)")
    if crop is not None and image is not None and seq_json.is_file():
        camera = next(c for c in json.loads(seq_json.read_text())["cameras"] if c["id"] == sample["camera"])
        ref = undistort_crop_reference(image, camera, sample["K"].astype(np.float64), size)
        diff = np.abs(ref.astype(np.float64) - crop.astype(np.float64)).mean()
        if diff > CROP_MAX_MEAN_ABS:
            problems.append(f"{where}: crop pixels differ from the undistorted source frame {src.name} "
                            f"(mean |diff| {diff:.1f})")
    return problems


def validate_shards(path: Path, config: ValidateConfig = ValidateConfig()) -> tuple[int, list[str]]:
    """(samples checked, one-line problems) for a split folder or a folder of split folders;
    checks that could not run are problems unless ``config.allow_skipped``."""
    report = validate_report(path, config)
    return report.checked, report.problems + ([] if config.allow_skipped else report.not_run)


def validate_report(path: Path, config: ValidateConfig = ValidateConfig()) -> ValidateReport:
    """Every check of ``validate`` on a split folder or a folder of split folders."""
    import torch

    from common.rng import rng_for
    from fitting.bodymodel import load_body_model, resolve_body_model
    from sampling.errors import ShardError
    from sampling.shards import check_shard, open_shard, read_index

    problems: list[str] = []
    not_run: list[str] = []
    checked = 0
    for folder in split_folders(Path(path)):
        try:
            index = read_index(folder)
        except ShardError as e:
            problems.append(str(e))
            continue
        good = []
        for shard in index["shards"]:
            issues = check_shard(folder / shard["name"], shard["sha256"])
            problems += issues
            if not issues:
                good.append(shard)
        if not good or config.samples <= 0:
            continue
        work = work_dir_of(folder)
        model = load_body_model(resolve_body_model(config.body_model, work.root), dtype=torch.float64,
                                use_face_contour=False)
        rng = rng_for(config.seed, "validate", folder.name)
        total = sum(s["samples"] for s in good)
        for flat in sorted(rng.choice(total, size=min(config.samples, total), replace=False).tolist()):
            for shard in good:
                if flat < shard["samples"]:
                    break
                flat -= shard["samples"]
            with open_shard(folder / shard["name"]) as reader:
                sample = reader.sample(flat)
                problems += check_sample(sample, reader.radius, reader.joint_set, model, work, config, rng,
                                         f"{folder / shard['name']}[{flat}] {sample['key']}", not_run)
            checked += 1
    return ValidateReport(checked, problems, not_run)
