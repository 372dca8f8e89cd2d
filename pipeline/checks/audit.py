"""Fit-quality audit: per-frame numbers → summary.json, plots and overlays in one HTML page.

Researchers read it to decide whether to trust the pseudo-ground truth: MPJPE statistics per
subject and sequence, histograms, per-joint errors, error over time, and the worst frames
drawn onto the extracted images. The page is static (opens from disk, no server).

Why one module of ~700 lines: it holds the report's data model (config, per-sequence records,
summaries, the per-frame table) and the page that shows it, which change together; the plots
(``audit_plots``), the overlays (``overlays``) and the plausibility geometry
(``plausibility``) live in their own modules.

Matching the mocap joints is not enough: the body must be a plausible human. The audit also
reports, per frame and aggregated (definitions in :mod:`pipeline.checks.plausibility`):
rotation-vector norms, joint-limit violations, twist per limb, |β| per subject,
self-intersection depth, the skeleton-mismatch detector and, where the release's
``groundtruth/`` is found, the per-vertex error (PVE) against the true mesh by body region.

**Converged** means: the fitter's LM stopped on its tolerance for the frame (the fit file's
``converged`` flag, shown as ``lm_tolerance_share``) **and** the frame's MPJPE is not an
outlier of its sequence (at most ``max(outlier_floor_mm, outlier_factor x median)``, the
fitter's own "stuck" test).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.units import MM_PER_M
from fitting.joint_sets import H36M17
from fitting.smplx_params import body_world_rotations
from pipeline.checks.audit_plots import (
    plot_histograms,
    plot_mismatch,
    plot_over_time,
    plot_per_joint,
    plot_plausibility,
    plot_silhouette,
)
from pipeline.checks.overlays import _worst_frames, _worst_with_images, render_fit_overlay
from pipeline.errors import DataError
from pipeline.store import WorkDir, atomic_write_bytes, atomic_write_json


@dataclass(frozen=True)
class AuditConfig:
    """What the audit draws."""

    body_model: str = "synthetic"
    """Body model used by the fit ("synthetic" = WORK/bodymodel/SMPLX_NEUTRAL.npz, or a path)."""
    worst: int = 20
    """How many of the worst frames to list and draw."""
    camera: str | None = None
    """Camera for the overlays (default: the first camera with an extracted image)."""
    groundtruth: Path | None = None
    """A synthetic release (or its ``groundtruth/`` folder) whose true meshes the fit is
    compared with; None: found from the extracted sequences' sources when it exists."""
    plausibility: bool = True
    """Compute the plausibility figures (needs the body model; False: MPJPE only)."""
    outlier_floor_mm: float = 3.0
    """A frame's MPJPE is an outlier above max(this, outlier_factor x its sequence's median)."""
    outlier_factor: float = 2.0
    """See outlier_floor_mm (the fitter's "stuck" test: retry_mm = 3, 2 x median)."""
    limit_tolerance_deg: float = 1.0
    """A frame is beyond the joint limits when a joint exceeds its limit by more than this."""
    intersection_tolerance_mm: float = 5.0
    """A frame self-intersects when its deepest intruding vertex is deeper than this (with a
    ground truth also counted against the true mesh's depth: LBS bodies intersect themselves)."""
    intersection_stride: int = 1
    """Self-intersection depth on every n-th fitted frame of a sequence (the costliest figure)."""
    mismatch_min_mm: float = 5.0
    """Skeleton mismatch: a joint whose mean bone-frame residual is at least this long ..."""
    mismatch_ratio: float = 0.75
    """... and at least this multiple of its spread over frames (a constant offset: on the
    demo release with 10 mm marker noise and no mismatch, the fit's own bias at a hand tip
    reached 0.68 x its spread; the true body against 1-4 cm offsets + 5 mm noise sits at
    1-5 x, and 0.5 flagged the hand tip)."""
    silhouette: bool = True
    """Compare the fitted mesh's silhouette with the release's ground_truth_bs masks (where
    extract found them; pipeline.checks.silhouette)."""
    silhouette_stride: int = 5
    """Silhouette IoU on every n-th fitted frame (each costs a mask read and a rasterisation per
    camera at the video's resolution; 5 keeps the demo's audit within seconds)."""


@dataclass(frozen=True)
class SequenceFit:
    """Per-frame fit metrics of one (subject, sequence), read from ``WORK/fit/<S>/<seq>.npz``."""

    subject: str
    sequence: str
    frame_index: np.ndarray  # (T,) int
    mpjpe_mm: np.ndarray  # (T,)
    joint_err_mm: np.ndarray  # (T, 17)
    converged: np.ndarray  # (T,) bool: lm_converged and not outlier (module docstring)
    lm_converged: np.ndarray | None = None  # (T,) bool: the fitter's LM stopped on its tolerance
    outlier: np.ndarray | None = None  # (T,) bool: MPJPE above the sequence's outlier limit


def outlier_frames(mpjpe_mm: np.ndarray, floor_mm: float = 3.0, factor: float = 2.0) -> np.ndarray:
    """(T,) bool: frames whose MPJPE (T,) exceeds max(floor_mm, factor x the median)."""
    if mpjpe_mm.size == 0:
        return np.zeros(0, bool)
    return mpjpe_mm > max(floor_mm, factor * float(np.median(mpjpe_mm)))


def read_fits(work: WorkDir, outlier_floor_mm: float = 3.0, outlier_factor: float = 2.0) -> list[SequenceFit]:
    """Every fitted sequence in the work dir, sorted by (subject, sequence)."""
    from pipeline.artifacts import fitted_sequences, fitted_subjects, read_fit_sequence

    fits = []
    for subject in fitted_subjects(work):
        for sequence in fitted_sequences(work, subject):
            fit = read_fit_sequence(work.fit_sequence(subject, sequence))
            out = outlier_frames(fit.mpjpe_mm, outlier_floor_mm, outlier_factor)
            fits.append(SequenceFit(subject, sequence, fit.frame_index, fit.mpjpe_mm, fit.joint_err_mm,
                                    fit.converged & ~out, fit.converged, out))
    if not fits:
        raise DataError(f"{work.root / 'fit'}: no fitted sequences; run `h36m-nvf fit` first")
    return fits


def read_groundtruth_params(path: Path) -> dict[str, np.ndarray]:
    """smplx kwargs (float64, all release frames; betas (NB,)) of a synthetic release's
    ``groundtruth/<S>/<basename>.npz``; DataError naming the file when unreadable."""
    from pipeline.artifacts import SMPLX_PARAM_KEYS

    keys = ("betas", *SMPLX_PARAM_KEYS)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k], dtype=np.float64) for k in keys}
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: not a readable ground-truth file ({e})") from None


def error_stats(mpjpe_mm: np.ndarray, converged: np.ndarray, lm_converged: np.ndarray | None = None,
                outlier: np.ndarray | None = None) -> dict:
    """Mean, median, p95, max MPJPE (mm) and the converged share over some frames (with the
    two parts of "converged" when given: LM tolerance reached, MPJPE outlier)."""
    stats = {
        "frames": int(mpjpe_mm.size),
        "mean_mm": float(np.mean(mpjpe_mm)),
        "median_mm": float(np.median(mpjpe_mm)),
        "p95_mm": float(np.percentile(mpjpe_mm, 95)),
        "max_mm": float(np.max(mpjpe_mm)),
        "converged_share": float(np.mean(converged)),
    }
    if lm_converged is not None and outlier is not None:
        stats["lm_tolerance_share"] = float(np.mean(lm_converged))
        stats["outlier_frames"] = int(np.count_nonzero(outlier))
    return stats


def _stats_of(fits: list[SequenceFit]) -> dict:
    cat = lambda name: np.concatenate([getattr(f, name) for f in fits])  # noqa: E731
    parts = all(f.lm_converged is not None and f.outlier is not None for f in fits)
    return error_stats(cat("mpjpe_mm"), cat("converged"), cat("lm_converged") if parts else None,
                       cat("outlier") if parts else None)


def summarize(fits: list[SequenceFit], worst: int = 20) -> dict:
    """The machine-readable summary: overall, per subject, per sequence, per joint, worst frames."""
    subjects = sorted({f.subject for f in fits})
    by_subject = {s: _stats_of([f for f in fits if f.subject == s]) for s in subjects}
    per_joint = np.concatenate([f.joint_err_mm for f in fits]).mean(axis=0)
    frames = [(float(e), f.subject, f.sequence, int(i)) for f in fits for e, i in zip(f.mpjpe_mm, f.frame_index)]
    frames.sort(key=lambda x: (-x[0], x[1], x[2], x[3]))
    return {
        "overall": _stats_of(fits),
        "subjects": by_subject,
        "sequences": [{"subject": f.subject, "sequence": f.sequence, **_stats_of([f])} for f in fits],
        "per_joint_mm": {name: float(v) for name, v in zip(H36M17.names, per_joint)},
        "worst": [{"subject": s, "sequence": q, "frame": i, "mpjpe_mm": e} for e, s, q, i in frames[:worst]],
    }


# --- plausibility ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SequencePlausibility:
    """Per-frame plausibility figures of one fitted sequence (see pipeline.checks.plausibility)."""

    subject: str
    sequence: str
    frame_index: np.ndarray
    """(T,) mocap frames."""
    betas: np.ndarray
    """(NB,) the subject's shape."""
    rotvec_deg: np.ndarray
    """(T, 22) rotation-vector norms of global_orient and the 21 body joints, degrees."""
    limit_deg: np.ndarray
    """(T, 21) degrees beyond the anatomical limit per body joint."""
    twist_deg: np.ndarray
    """(T, 8) twist per limb (plausibility.LIMB_JOINTS order), degrees."""
    intersection_mm: np.ndarray
    """(T,) deepest self-intersection, mm (NaN on frames skipped by the stride)."""
    intersecting_vertices: np.ndarray
    """(T,) intruding vertices (-1 on skipped frames)."""
    residual_m: np.ndarray
    """(T, 32, 3) mocap minus fitted h36m32 joints in the parent-bone frames, metres."""
    twist_error_deg: np.ndarray | None = None
    """(T, 8) fitted minus true twist per limb, degrees (with a ground truth)."""
    pve_mm: np.ndarray | None = None
    """(T,) mean per-vertex error against the true mesh, mm (with a ground truth)."""
    pve_region_mm: np.ndarray | None = None
    """(T, len(REGIONS)) mean PVE per body region, mm."""
    pve_vertex_mm: np.ndarray | None = None
    """(T, V) float32 per-vertex error, mm (for percentiles over all vertices)."""
    true_intersection_mm: np.ndarray | None = None
    """(T,) the true mesh's deepest self-intersection, mm (NaN where skipped): LBS bodies
    intersect themselves too (armpits, bent knees), so the fit's figure reads against it."""


def find_groundtruth(work: WorkDir, fits: list[SequenceFit], given: Path | None) -> Path | None:
    """The ``groundtruth/`` folder of a synthetic release: ``given`` (the release or the folder
    itself; DataError when it has none), else the one next to the extracted sequences'
    metadata.xml, else None."""
    if given is not None:
        folder = Path(given) if Path(given).name == "groundtruth" else Path(given) / "groundtruth"
        if not folder.is_dir():
            raise DataError(f"{given}: no groundtruth/ folder (only synthetic releases have one)")
        return folder
    from pipeline.artifacts import read_sequence_info

    for f in fits:
        try:
            source = read_sequence_info(work.sequence_json(f.subject, f.sequence)).raw["sources"]["metadata"]["path"]
        except (DataError, KeyError, TypeError):
            continue
        folder = Path(source).parent / "groundtruth"
        if folder.is_dir():
            return folder
    return None


def _groundtruth_params(folder: Path, work: WorkDir, fit: SequenceFit, sha: str) -> dict | None:
    """True smplx kwargs of a fitted sequence (all release frames), or None when the
    ground truth lacks it or was made with another body model than the fit's."""
    from pipeline.artifacts import read_sequence_info

    basename = read_sequence_info(work.sequence_json(fit.subject, fit.sequence)).basename
    path = folder / fit.subject / f"{basename}.npz"
    if not path.is_file():
        return None
    try:
        model = json.loads((folder / "model.json").read_text())["model"]["sha256"]
    except (OSError, KeyError, ValueError):
        model = None
    if sha and model and sha != model:
        return None
    return read_groundtruth_params(path)


def assess_sequence(work: WorkDir, fit: SequenceFit, model, config: AuditConfig,
                    groundtruth: Path | None = None) -> SequencePlausibility:
    """The plausibility figures of one fitted sequence against its mocap (and the truth).

    ``fit`` may be a subset of the file's frames (:func:`fit_subset`); the figures are of its frames.
    """
    from pipeline.artifacts import read_fit_sequence
    from pipeline.checks import plausibility as P

    stored = read_fit_sequence(work.fit_sequence(fit.subject, fit.sequence))
    rows = [stored.row_of(int(i)) for i in fit.frame_index]
    params, sha = stored.smplx_kwargs(rows), stored.body_model_sha256
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    params["betas"] = np.asarray(stored.betas, dtype=np.float64)
    verts, joints55 = P.posed_bodies(model, params)
    rest_verts, _ = P.rest_body(model, params["betas"])
    axes = P.model_bone_axes(P.rest_body(model, np.zeros_like(params["betas"]))[1])  # the limits' frame: the mean shape's, as the fitter's
    faces = np.asarray(model.faces, dtype=np.int64)
    go, bp = params["global_orient"], params["body_pose"]

    depth = np.full(len(verts), np.nan)
    count = np.full(len(verts), -1, dtype=np.int64)
    creases = P.intruding_vertices(rest_verts, faces)
    for t in range(0, len(verts), max(1, config.intersection_stride)):
        d = P.self_intersection_depth(verts[t], faces, rest_verts, creases)
        depth[t], count[t] = d.max() * MM_PER_M, np.count_nonzero(d > 0)

    from pipeline.artifacts import read_joints_world

    mocap = read_joints_world(work.joints_world(fit.subject, fit.sequence))[fit.frame_index]
    residual = P.bone_frame_residuals(mocap, P.fitted_h36m32(joints55, verts), body_world_rotations(go, bp))

    extra = {}
    truth = _groundtruth_params(groundtruth, work, fit, sha) if groundtruth is not None else None
    if truth is not None and len(truth["transl"]) > int(fit.frame_index.max()):
        true_verts, _ = P.posed_bodies(model, truth, fit.frame_index)
        pve = P.per_vertex_error(verts, true_verts) * MM_PER_M
        regions = P.vertex_regions(model.lbs_weights.detach().cpu().numpy())
        true_twist = P.limb_twists_deg(truth["body_pose"][fit.frame_index], axes)
        true_rest, _ = P.rest_body(model, truth["betas"])
        true_creases = P.intruding_vertices(true_rest, faces)
        true_depth = np.full(len(verts), np.nan)
        for t in np.flatnonzero(np.isfinite(depth)):
            true_depth[t] = P.self_intersection_depth(true_verts[t], faces, true_rest, true_creases).max() * MM_PER_M
        extra = {"pve_mm": pve.mean(-1), "pve_region_mm": P.region_means(pve, regions),
                 "pve_vertex_mm": pve.astype(np.float32), "true_intersection_mm": true_depth,
                 "twist_error_deg": P.wrap_deg(P.limb_twists_deg(bp, axes) - true_twist)}
    return SequencePlausibility(
        fit.subject, fit.sequence, fit.frame_index, params["betas"],
        rotvec_deg=np.degrees(P.rotvec_norms(go, bp)), limit_deg=P.limit_violations_deg(bp, axes),
        twist_deg=P.limb_twists_deg(bp, axes), intersection_mm=depth, intersecting_vertices=count,
        residual_m=residual, **extra)


def fit_subset(fit: SequenceFit, frames: list[int]) -> SequenceFit:
    """The same sequence restricted to some of its fitted frames (DataError if one was not fitted)."""
    rows = []
    for frame in frames:
        hit = np.flatnonzero(fit.frame_index == frame)
        if hit.size == 0:
            raise DataError(f"{fit.subject} {fit.sequence}: frame {frame} was not fitted")
        rows.append(int(hit[0]))
    pick = lambda a: None if a is None else a[rows]  # noqa: E731
    return SequenceFit(fit.subject, fit.sequence, fit.frame_index[rows], fit.mpjpe_mm[rows], fit.joint_err_mm[rows],
                       fit.converged[rows], pick(fit.lm_converged), pick(fit.outlier))


def describe_frame(work: WorkDir, model_path: Path, subject: str, sequence: str, frame: int,
                   config: AuditConfig = AuditConfig()) -> str:
    """``frame_report`` of one fitted frame, computed from the work dir (show-fit's text)."""
    from fitting.bodymodel import cached_body_model_f64

    fits = [f for f in read_fits(work, config.outlier_floor_mm, config.outlier_factor)
            if (f.subject, f.sequence) == (subject, sequence)]
    if not fits:
        raise DataError(f"{work.fit_sequence(subject, sequence)}: no such fitted sequence")
    one = fit_subset(fits[0], [frame])
    groundtruth = find_groundtruth(work, fits, config.groundtruth)
    p = assess_sequence(work, one, cached_body_model_f64(str(model_path)), config, groundtruth)
    return frame_report(one, p, frame, config)


def _dist(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": None, "median": None, "p95": None, "max": None}
    return {"mean": float(x.mean()), "median": float(np.median(x)), "p95": float(np.percentile(x, 95)),
            "max": float(x.max())}


def summarize_plausibility(plaus: list[SequencePlausibility], config: AuditConfig = AuditConfig()) -> dict:
    """Aggregated plausibility figures (the ``plausibility`` entry of summary.json)."""
    from fitting.joint_limits import BODY_JOINT_NAMES
    from fitting.joint_sets import H36M32
    from pipeline.checks import plausibility as P

    cat = lambda name: np.concatenate([getattr(p, name) for p in plaus])  # noqa: E731
    frames = sum(len(p.frame_index) for p in plaus)
    rot, lim, twist, depth = cat("rotvec_deg"), cat("limit_deg"), cat("twist_deg"), cat("intersection_mm")
    beyond = lim > config.limit_tolerance_deg
    rot_names = ("global_orient", *BODY_JOINT_NAMES)
    out = {
        "frames": frames,
        "rotvec": {
            "frames_over_pi": int(np.count_nonzero((rot > 180.0).any(-1))),
            "max_deg": float(rot.max()) if rot.size else 0.0,
            "per_joint_frames_over_pi": {n: int(c) for n, c in zip(rot_names, (rot > 180.0).sum(0)) if c},
        },
        "joint_limits": {
            "tolerance_deg": config.limit_tolerance_deg,
            "frames_beyond": int(np.count_nonzero(beyond.any(-1))),
            "max_deg": float(lim.max()) if lim.size else 0.0,
            "per_joint": {n: {"frames_beyond": int(beyond[:, j].sum()), "max_deg": float(lim[:, j].max()),
                              "mean_excess_deg": float(lim[beyond[:, j], j].mean()) if beyond[:, j].any() else 0.0}
                          for j, n in enumerate(BODY_JOINT_NAMES) if beyond[:, j].any()},
        },
        "twist_deg": {limb: {"mean_abs": float(np.abs(twist[:, i]).mean()), "max_abs": float(np.abs(twist[:, i]).max())}
                      for i, limb in enumerate(P.LIMB_JOINTS)},
        "betas": {},
        "self_intersection": {
            "tolerance_mm": config.intersection_tolerance_mm,
            "frames_checked": int(np.count_nonzero(np.isfinite(depth))),
            "frames_beyond": int(np.count_nonzero(depth > config.intersection_tolerance_mm)),
            "depth_mm": _dist(depth),
            "definition": "deepest vertex inside another part of the body: winding number > 0.5 at 1 mm "
                          "outside along its normal (rest-pose creases excluded); depth = distance to the "
                          "nearest triangle outside its 5 cm rest-pose neighbourhood (searched to 5 cm)",
        },
        "mismatch": {"min_mm": config.mismatch_min_mm, "ratio": config.mismatch_ratio, "subjects": {}},
    }
    for s in sorted({p.subject for p in plaus}):
        betas = next(p.betas for p in plaus if p.subject == s)
        out["betas"][s] = {"norm": float(np.linalg.norm(betas)), "max_abs": float(np.abs(betas).max()),
                           "values": [float(b) for b in betas]}
        stats = P.mismatch_stats(np.concatenate([p.residual_m for p in plaus if p.subject == s]))
        flagged = stats.flagged(config.mismatch_min_mm / MM_PER_M, config.mismatch_ratio)
        out["mismatch"]["subjects"][s] = {
            "joints": [H36M32.names[j] for j in np.flatnonzero(flagged)],
            "per_joint": {n: {"mean_mm": [float(x) for x in stats.mean_m[j] * MM_PER_M],
                              "mean_norm_mm": float(stats.mean_norm_m[j] * MM_PER_M),
                              "spread_mm": float(stats.spread_m[j] * MM_PER_M), "flagged": bool(flagged[j])}
                          for j, n in enumerate(H36M32.names)},
        }
    carrying = sorted({j for v in out["mismatch"]["subjects"].values() for j in v["joints"]})
    out["mismatch"]["detected"] = bool(carrying)
    out["mismatch"]["joints"] = carrying
    if carrying:
        out["mismatch"]["hint"] = (
            f"the mocap joints {', '.join(carrying)} sit at a constant offset from the fitted body's joints in "
            "their bone frames: the mocap skeleton is defined differently from the SMPL-X correspondence; "
            "pass a joint regressor that matches it with `h36m-nvf fit --joint-regressor FILE`")
    if all(p.pve_mm is not None for p in plaus):
        region_names = list(P.REGIONS)
        pve_all = np.concatenate([p.pve_vertex_mm.ravel() for p in plaus]).astype(np.float64)
        regions = cat("pve_region_mm")
        twist_err = np.abs(cat("twist_error_deg"))
        out["pve"] = {
            "frames": frames,
            "mean_mm": float(pve_all.mean()), "median_mm": float(np.median(pve_all)),
            "p95_mm": float(np.percentile(pve_all, 95)), "max_mm": float(pve_all.max()),
            "frame_mean_mm": _dist(cat("pve_mm")),
            "regions_mm": {r: float(regions[:, i].mean()) for i, r in enumerate(region_names)},
            "subjects_mm": {s: float(np.concatenate([p.pve_vertex_mm.ravel() for p in plaus if p.subject == s]).mean())
                            for s in sorted({p.subject for p in plaus})},
            "twist_error_deg": {limb: float(twist_err[:, i].mean()) for i, limb in enumerate(P.LIMB_JOINTS)},
        }
        true_depth = cat("true_intersection_mm")
        out["self_intersection"]["truth_depth_mm"] = _dist(true_depth)
        out["self_intersection"]["frames_beyond_truth"] = int(np.count_nonzero(
            depth - true_depth > config.intersection_tolerance_mm))
    return out


def per_frame_table(fit: SequenceFit, p: SequencePlausibility, config: AuditConfig = AuditConfig()) -> dict:
    """Per-frame figures of one sequence for summary.json (lists, one value per fitted frame)."""
    from fitting.joint_limits import BODY_JOINT_NAMES

    worst_joint = p.limit_deg.argmax(-1)
    table = {
        "frame": [int(i) for i in fit.frame_index],
        "mpjpe_mm": [float(x) for x in fit.mpjpe_mm],
        "converged": [bool(x) for x in fit.converged],
        "max_rotvec_deg": [float(x) for x in p.rotvec_deg.max(-1)],
        "max_limit_violation_deg": [float(x) for x in p.limit_deg.max(-1)],
        "worst_limit_joint": [BODY_JOINT_NAMES[j] if p.limit_deg[t, j] > config.limit_tolerance_deg else None
                              for t, j in enumerate(worst_joint)],
        "self_intersection_mm": [None if not np.isfinite(x) else float(x) for x in p.intersection_mm],
    }
    if p.pve_mm is not None:
        table["pve_mm"] = [float(x) for x in p.pve_mm]
    return table


def frame_report(fit: SequenceFit, p: SequencePlausibility, frame: int, config: AuditConfig = AuditConfig()) -> str:
    """A few lines on one fitted frame's quality (``show-fit``'s text output)."""
    from fitting.joint_limits import BODY_JOINT_NAMES
    from pipeline.checks import plausibility as P

    rows = np.flatnonzero(fit.frame_index == frame)
    if rows.size == 0:
        raise DataError(f"{fit.subject} {fit.sequence}: frame {frame} was not fitted")
    t = int(rows[0])
    lines = [f"{fit.subject} {fit.sequence} frame {frame}: MPJPE {fit.mpjpe_mm[t]:.2f} mm, "
             f"{'converged' if fit.converged[t] else 'NOT converged'}"
             + (f" (LM tolerance {'reached' if fit.lm_converged[t] else 'not reached'}"
                f"{', MPJPE outlier' if fit.outlier[t] else ''})" if fit.lm_converged is not None else "")]
    over = [f"{n} {d:.0f}°" for n, d in zip(("global_orient", *BODY_JOINT_NAMES), p.rotvec_deg[t]) if d > 180]
    lines.append(f"  rotation vectors: max {p.rotvec_deg[t].max():.0f}°" + (f"; beyond 180°: {', '.join(over)}"
                                                                              if over else ""))
    beyond = [f"{n} +{d:.1f}°" for n, d in zip(BODY_JOINT_NAMES, p.limit_deg[t]) if d > config.limit_tolerance_deg]
    lines.append("  joint limits: " + (", ".join(beyond) if beyond else "all joints within their limits"))
    lines.append("  twist: " + ", ".join(f"{limb} {x:+.0f}°" for limb, x in zip(P.LIMB_JOINTS, p.twist_deg[t]))
                 + ("" if p.twist_error_deg is None else
                    " (error vs truth: " + ", ".join(f"{x:+.0f}°" for x in p.twist_error_deg[t]) + ")"))
    if np.isfinite(p.intersection_mm[t]):
        lines.append(f"  self-intersection: {p.intersection_mm[t]:.1f} mm deep, {p.intersecting_vertices[t]} vertices"
                     + ("" if p.true_intersection_mm is None else f" (the true mesh: {p.true_intersection_mm[t]:.1f} mm)"))
    lines.append(f"  |β| = {np.linalg.norm(p.betas):.2f} (max |β_i| {np.abs(p.betas).max():.2f})")
    if p.pve_mm is not None:
        lines.append(f"  PVE vs the true mesh: {p.pve_mm[t]:.1f} mm mean; "
                     + ", ".join(f"{r} {x:.1f}" for r, x in zip(P.REGIONS, p.pve_region_mm[t])))
    return "\n".join(lines)


# --- page -------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.2f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


STAT_COLUMNS = ["frames", "mean_mm", "median_mm", "p95_mm", "max_mm", "converged_share"]

DEFINITIONS = {
    "converged": "the fitter's last LM pass stopped at a minimum for the frame, to its tolerance: a step lowered "
                 "the energy by less than tol x (energy + 1) or, rejected, the undamped Gauss-Newton model promised "
                 "less (fitting.lm; fit file flag 'converged', lm_tolerance_share) AND the frame's MPJPE is not an outlier of its sequence "
                 "(<= max(outlier_floor_mm, outlier_factor x median))",
    "frames_over_pi": "frames in which global_orient or any body joint has a rotation vector longer than pi",
    "joint_limits": "degrees beyond the anatomical swing/twist limit (fitting.joint_limits.JOINT_LIMITS); "
                    "a frame is beyond the limits when any joint exceeds its limit by more than tolerance_deg",
    "twist": "twist about the rest bone axis of the joint that turns the limb (upper arm: shoulder, forearm: "
             "elbow, thigh: hip, shin: knee), degrees",
    "betas": "norm: Euclidean length of the subject's betas; max_abs: largest |beta_i|",
    "mismatch": "residual mocap minus fitted h36m32 joint in the world frame of its parent bone; a joint is "
                "flagged when its mean over the subject's frames is >= min_mm long and >= ratio x its spread "
                "(RMS distance of the per-frame residuals from the mean)",
    "pve": "distance per vertex between fitted and true mesh (release groundtruth/); p95 over all vertices of "
           "all frames; regions: vertices grouped by the joint with the largest skinning weight",
}
"""What the summary's plausibility figures mean (also in summary.json)."""


def assess(work: WorkDir, fits: list[SequenceFit], model_path: Path,
           config: AuditConfig = AuditConfig()) -> tuple[list[SequencePlausibility], Path | None]:
    """Plausibility figures of every fitted sequence and the ground-truth folder used (or None)."""
    from fitting.bodymodel import cached_body_model_f64

    model = cached_body_model_f64(str(model_path))
    groundtruth = find_groundtruth(work, fits, config.groundtruth)
    return [assess_sequence(work, f, model, config, groundtruth) for f in fits], groundtruth


def audit_summary(work: WorkDir, config: AuditConfig = AuditConfig(), model_path: Path | None = None):
    """(summary dict, fits, plausibility per sequence or None): what write_audit writes."""
    fits = read_fits(work, config.outlier_floor_mm, config.outlier_factor)
    summary = summarize(fits, config.worst)
    summary["definitions"] = {"converged": DEFINITIONS["converged"]}
    summary["converged_rule"] = {"outlier_floor_mm": config.outlier_floor_mm, "outlier_factor": config.outlier_factor}
    plaus = None
    if config.plausibility and model_path is not None:
        plaus, groundtruth = assess(work, fits, model_path, config)
        summary["plausibility"] = {"groundtruth": None if groundtruth is None else str(groundtruth),
                                   **summarize_plausibility(plaus, config)}
        summary["definitions"] = DEFINITIONS
        for row, f, p in zip(summary["sequences"], fits, plaus):
            row["per_frame"] = per_frame_table(f, p, config)
        limit = {(p.subject, p.sequence): p.limit_deg.max(-1) for p in plaus}
        summary["worst_limits"] = _worst_frames(fits, limit, config.worst, "limit_excess_deg")
        if all(p.pve_mm is not None for p in plaus):
            pve = {(p.subject, p.sequence): p.pve_mm for p in plaus}
            summary["worst_pve"] = _worst_frames(fits, pve, config.worst, "pve_mm")
    if config.silhouette and model_path is not None:
        from pipeline.checks.silhouette import audit_silhouettes, summarize_silhouettes

        stride = max(1, config.silhouette_stride)
        summary["silhouette"] = summarize_silhouettes(audit_silhouettes(work, fits, model_path, stride),
                                                      stride, config.worst)
    return summary, fits, plaus


def audit_headline(summary: dict) -> list[str]:
    """A few lines for the terminal: MPJPE, converged, plausibility, PVE, the mismatch warning."""
    o = summary["overall"]
    lines = [f"fit: {o['frames']} frames, MPJPE mean {o['mean_mm']:.2f} mm, p95 {o['p95_mm']:.2f} mm; "
             f"converged {100 * o['converged_share']:.1f}%"
             + (f" (LM tolerance {100 * o['lm_tolerance_share']:.1f}%, {o['outlier_frames']} MPJPE outliers)"
                if "lm_tolerance_share" in o else "")]
    p = summary.get("plausibility")
    if p:
        betas = ", ".join(f"{s} {b['norm']:.2f}" for s, b in p["betas"].items())
        lines.append(f"plausibility: {p['rotvec']['frames_over_pi']} frames with a rotation vector > 180°, "
                     f"{p['joint_limits']['frames_beyond']} beyond the joint limits "
                     f"(max {p['joint_limits']['max_deg']:.1f}°), |β| {betas}; self-intersection "
                     f"{p['self_intersection']['frames_beyond']} frames > {p['self_intersection']['tolerance_mm']:g} mm "
                     f"(max {p['self_intersection']['depth_mm']['max'] or 0:.1f} mm"
                     + (f"; true meshes {p['self_intersection']['truth_depth_mm']['max'] or 0:.1f} mm, "
                        f"{p['self_intersection']['frames_beyond_truth']} frames deeper than the truth"
                        if "truth_depth_mm" in p["self_intersection"] else "") + ")")
        if "pve" in p:
            v = p["pve"]
            lines.append(f"PVE vs the true mesh: mean {v['mean_mm']:.1f} mm, p95 {v['p95_mm']:.1f} mm; "
                         + ", ".join(f"{r} {x:.1f}" for r, x in v["regions_mm"].items()))
        if p["mismatch"]["detected"]:
            lines.append("WARNING skeleton mismatch: " + p["mismatch"]["hint"])
    sil = summary.get("silhouette")
    if sil and sil.get("checked"):
        lines.append(f"silhouette IoU vs ground_truth_bs: mean {sil['mean']:.3f}, p5 {sil['p5']:.3f}, "
                     f"min {sil['min']:.3f} over {sil['frames']} (frame, camera) pairs")
    return lines


def _overlay_block(work, model_path, fits, config, score, title, unit, done: dict) -> list[str]:
    import cv2

    parts = []
    for e, s, q, i, cam in _worst_with_images(work, fits, config.camera, config.worst, score):
        name = f"worst_{s}_{q}_{cam}_{i:06d}.jpg"
        if name not in done:
            image = render_fit_overlay(work, model_path, s, q, i, cam)
            atomic_write_bytes(work.audit_index.parent / name,
                               cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            done[name] = True
        parts.append(f"<figure><img src='{name}'><figcaption>{s} {q} cam {cam} frame {i}: "
                     f"{e:.1f} {unit}</figcaption></figure>")
    if parts:
        parts.insert(0, f"<h3>{html.escape(title)}</h3>")
    return parts


def _plausibility_html(summary: dict) -> list[str]:
    p = summary["plausibility"]
    lim, rot, si = p["joint_limits"], p["rotvec"], p["self_intersection"]
    parts = [
        "<h2>Plausibility</h2>",
        f"<p>{p['frames']} frames: <b>{rot['frames_over_pi']}</b> with a rotation vector longer than 180° "
        f"(max {rot['max_deg']:.0f}°); <b>{lim['frames_beyond']}</b> beyond the anatomical joint limits by more than "
        f"{lim['tolerance_deg']:g}° (max {lim['max_deg']:.1f}°); <b>{si['frames_beyond']}</b> of "
        f"{si['frames_checked']} checked frames self-intersect deeper than {si['tolerance_mm']:g} mm "
        f"(max {si['depth_mm']['max'] or 0:.1f} mm"
        + (f"; the true meshes: max {si['truth_depth_mm']['max'] or 0:.1f} mm, mean of the frames' deepest "
           f"{si['truth_depth_mm']['mean'] or 0:.1f} mm against the fit's {si['depth_mm']['mean'] or 0:.1f} mm; "
           f"<b>{si['frames_beyond_truth']}</b> frames deeper than their true mesh by more than "
           f"{si['tolerance_mm']:g} mm" if "truth_depth_mm" in si else "") + ").</p>",
        "<h3>Joints beyond their limits</h3>",
        _table(["joint", "frames beyond", "max (°)", "mean excess (°)"],
               [[n, v["frames_beyond"], v["max_deg"], v["mean_excess_deg"]] for n, v in lim["per_joint"].items()])
        if lim["per_joint"] else "<p>none</p>",
        "<h3>Shape per subject</h3>",
        _table(["subject", "|β|", "max |β_i|"], [[s, b["norm"], b["max_abs"]] for s, b in p["betas"].items()]),
        "<h3>Twist per limb (°)</h3>",
        _table(["limb", "mean |twist|", "max |twist|"]
               + (["mean |twist error| vs truth"] if "pve" in p else []),
               [[limb, v["mean_abs"], v["max_abs"]] + ([p["pve"]["twist_error_deg"][limb]] if "pve" in p else [])
                for limb, v in p["twist_deg"].items()]),
    ]
    if "pve" in p:
        v = p["pve"]
        parts += [
            "<h3>Per-vertex error against the true mesh</h3>",
            f"<p>Ground truth: {html.escape(str(p['groundtruth']))}. Over all vertices of all frames: mean "
            f"{v['mean_mm']:.2f} mm, median {v['median_mm']:.2f} mm, p95 {v['p95_mm']:.2f} mm, max {v['max_mm']:.1f} mm.</p>",
            _table(["region", "mean PVE (mm)"], [[r, x] for r, x in v["regions_mm"].items()]),
            _table(["subject", "mean PVE (mm)"], [[s, x] for s, x in v["subjects_mm"].items()]),
        ]
    mm = p["mismatch"]
    parts.append("<h3>Skeleton-mismatch detector</h3>")
    if mm["detected"]:
        parts.append(f"<p><b>Warning:</b> {html.escape(mm['hint'])}.</p>")
    else:
        parts.append(f"<p>No joint has a constant offset (mean bone-frame residual ≥ {mm['min_mm']:g} mm and ≥ "
                     f"{mm['ratio']:g} × its spread).</p>")
    rows = [[s, n, j["mean_norm_mm"], j["spread_mm"], "yes" if j["flagged"] else ""]
            for s, v in mm["subjects"].items() for n, j in v["per_joint"].items() if j["flagged"]]
    if rows:
        parts.append(_table(["subject", "joint", "|mean| (mm)", "spread (mm)", "flagged"], rows))
    parts.append("<img src='plausibility.png'><img src='mismatch.png'>")
    parts.append("<h3>Definitions</h3><ul>" + "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in summary["definitions"].items()) + "</ul>")
    return parts


def check_camera(work: WorkDir, camera: str | None) -> None:
    """SelectionError unless ``camera`` is None or a camera of some fitted sequence (``--camera``)."""
    from pipeline.checks.overlays import load_cameras
    from pipeline.errors import SelectionError

    if camera is None:
        return
    known = sorted({c.id for f in read_fits(work) for c in load_cameras(work, f.subject, f.sequence)})
    if camera not in known:
        raise SelectionError(f"--camera {camera}: not a camera of the fitted sequences; known: {', '.join(known)}")


def _silhouette_html(work: WorkDir, model_path: Path, sil: dict, config: AuditConfig) -> list[str]:
    """The silhouette section: statistics, per sequence and camera, the plots, the worst frames
    drawn with the mask (red) and fitted-mesh (green) outlines."""
    import cv2

    from fitting.bodymodel import cached_body_model_f64
    from pipeline.checks.silhouette import silhouette_outline_image

    if not sil.get("checked"):
        return ["<h2>Silhouette</h2>", f"<p>Not checked: {html.escape(sil['reason'])}.</p>"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    parts = [
        "<h2>Silhouette against ground_truth_bs</h2>",
        f"<p>{sil['frames']} (frame, camera) pairs: IoU mean <b>{fmt(sil['mean'])}</b>, median "
        f"{fmt(sil['median'])}, 5th percentile {fmt(sil['p5'])}, min {fmt(sil['min'])}. "
        f"{html.escape(sil['definition'])}.</p>",
        _table(["subject", "sequence", "frames", "mean IoU", "p5", "min", *("cam " + c for c in
                                                                          sil["sequences"][0]["cameras"])],
               [[r["subject"], r["sequence"], r["frames"], fmt(r["mean"]), fmt(r["p5"]), fmt(r["min"]),
                 *(fmt(v["mean"]) for v in r["cameras"].values())] for r in sil["sequences"]]),
        "<img src='silhouette.png'>",
        "<h3>Lowest IoU (red = mask outline, green = fitted mesh)</h3>",
    ]
    model = cached_body_model_f64(str(model_path))
    for w in sil["worst"][: min(config.worst, 6)]:
        name = f"silhouette_{w['subject']}_{w['sequence']}_{w['camera']}_{w['frame']:06d}.jpg"
        image = silhouette_outline_image(work, model, w["subject"], w["sequence"], w["camera"], w["frame"])
        atomic_write_bytes(work.audit_index.parent / name,
                           cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        parts.append(f"<figure><img src='{name}'><figcaption>{w['subject']} {w['sequence']} cam {w['camera']} "
                     f"frame {w['frame']}: IoU {w['iou']:.3f}</figcaption></figure>")
    return parts


def write_audit(work: WorkDir, config: AuditConfig = AuditConfig(), model_path: Path | None = None) -> Path:
    """Write ``WORK/audit/`` (index.html, summary.json, PNGs) and return the index path."""
    check_camera(work, config.camera)
    summary, fits, plaus = audit_summary(work, config, model_path)
    out = work.audit_index.parent
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", summary)
    plot_histograms(fits, out / "hist.png")
    plot_per_joint(summary, out / "per_joint.png")
    for i, f in enumerate(fits):
        plot_over_time(f, out / f"time_{f.subject}_{f.sequence}.png", None if plaus is None else plaus[i])
    if plaus is not None:
        plot_plausibility(plaus, summary["plausibility"], out / "plausibility.png")
        plot_mismatch(summary["plausibility"], out / "mismatch.png")
    if summary.get("silhouette", {}).get("checked"):
        plot_silhouette(summary["silhouette"], out / "silhouette.png")

    overlays: list[str] = []
    if model_path is not None:
        done: dict = {}
        overlays += _overlay_block(work, model_path, fits, config, None, "Worst MPJPE", "mm", done)
        if plaus is not None:
            overlays += _overlay_block(work, model_path, fits, config,
                                       {(p.subject, p.sequence): p.limit_deg.max(-1) for p in plaus},
                                       "Farthest beyond the joint limits", "° beyond", done)
            if "worst_pve" in summary:
                overlays += _overlay_block(work, model_path, fits, config,
                                           {(p.subject, p.sequence): p.pve_mm for p in plaus},
                                           "Worst PVE against the true mesh", "mm PVE", done)

    o = summary["overall"]
    conv = (f"{100 * o['converged_share']:.1f}% converged (LM stopped on its tolerance: "
            f"{100 * o['lm_tolerance_share']:.1f}%; MPJPE outliers: {o['outlier_frames']} frames)"
            if "lm_tolerance_share" in o else f"{100 * o['converged_share']:.1f}% converged")
    parts = [
        "<!doctype html><meta charset='utf-8'><title>h36m-nvf fit audit</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}"
        "figure{display:inline-block;margin:4px}img{max-width:480px}</style>",
        "<h1>Fit-quality audit</h1>",
        f"<p>{o['frames']} fitted frames: mean {o['mean_mm']:.2f} mm, median {o['median_mm']:.2f} mm, "
        f"p95 {o['p95_mm']:.2f} mm, max {o['max_mm']:.2f} mm MPJPE to the mocap joints (h36m17); "
        f"{conv}. Machine-readable: <a href='summary.json'>summary.json</a>.</p>",
        f"<p><i>Converged</i> means: {html.escape(DEFINITIONS['converged'])}.</p>",
        *(_plausibility_html(summary) if plaus is not None else []),
        *(_silhouette_html(work, model_path, summary["silhouette"], config) if "silhouette" in summary else []),
        "<h2>Per subject</h2>",
        _table(["subject", *STAT_COLUMNS], [[s, *(v[c] for c in STAT_COLUMNS)] for s, v in summary["subjects"].items()]),
        "<h2>Per sequence</h2>",
        _table(["subject", "sequence", *STAT_COLUMNS],
               [[r["subject"], r["sequence"], *(r[c] for c in STAT_COLUMNS)] for r in summary["sequences"]]),
        "<h2>Distribution</h2><img src='hist.png'><img src='per_joint.png'>",
        "<h2>Over time</h2>",
        *(f"<img src='time_{f.subject}_{f.sequence}.png'>" for f in fits),
        f"<h2>The {config.worst} worst frames</h2>",
        _table(["subject", "sequence", "frame", "MPJPE (mm)"],
               [[w["subject"], w["sequence"], w["frame"], w["mpjpe_mm"]] for w in summary["worst"]]),
    ]
    if "worst_limits" in summary:
        parts += ["<h3>Farthest beyond the joint limits</h3>",
                  _table(["subject", "sequence", "frame", "beyond limit (°)"],
                         [[w["subject"], w["sequence"], w["frame"], w["limit_excess_deg"]]
                          for w in summary["worst_limits"]])]
    if "worst_pve" in summary:
        parts += ["<h3>Worst PVE against the true mesh</h3>",
                  _table(["subject", "sequence", "frame", "PVE (mm)"],
                         [[w["subject"], w["sequence"], w["frame"], w["pve_mm"]] for w in summary["worst_pve"]])]
    if overlays:
        parts.append("<h2>Overlays (worst frames with an extracted image; green = fit, red = mocap)</h2>")
        parts += overlays
    atomic_write_bytes(work.audit_index, "\n".join(parts).encode())
    return work.audit_index
