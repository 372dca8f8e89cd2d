"""``h36m-nvf spot-check``: every stage on a small subset, thresholds, a one-screen verdict.

For CI systems that guard a dataset: a few frames of one sequence per subject go through
extract → fit → sample → h3wb in a temporary work dir; then the shards are validated and
thresholds applied. Exit 0 only when every check holds; ``--junit`` writes the checks as
JUnit XML for CI dashboards.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from pipeline.selection import Selection


@dataclass(frozen=True)
class SpotCheckConfig:
    """What the spot check runs and what it demands."""

    frames: int = 10
    """Mocap frames per chosen sequence (from --frames' start, every frame)."""
    max_fit_p95_mm: float = 20.0
    """Fail when the 95th percentile of the fit's MPJPE exceeds this (mm) — unless the audit
    detects a skeleton mismatch: then the mocap sits off the body by design and the MPJPE is
    reported only (``max_fit_spread_mm`` guards the fit)."""
    max_fit_spread_mm: float = 20.0
    """Fail when a subject's fit residual spread exceeds this (mm): the RMS over its joints of
    the bone-frame residuals' spread around their per-joint mean (the audit's mismatch
    statistics), what the fit leaves unexplained once a constant joint-definition offset is
    taken out (noise and fitting errors; a mismatch alone leaves it near zero)."""
    max_pve_mm: float = 30.0
    """Where the release has a ``groundtruth/`` (synthetic data): fail when the mean
    per-vertex error against the true mesh exceeds this (mm)."""
    max_implausible_frames: int = 0
    """Fail when more fitted frames than this have a rotation vector longer than pi or a joint
    beyond its anatomical limit (by more than the audit's tolerance, 1 degree)."""
    max_beta_norm: float = 3.0
    """Fail when a subject's |beta| (Euclidean norm of its betas) exceeds this."""
    min_silhouette_iou: float = 0.7
    """Fail when the mean IoU of the fitted mesh's silhouette with the release's
    ground_truth_bs masks is below this (where the release has them; measured: a true mesh
    moved by 10 mm gives 0.9, a fit under a 2.5 cm mocap mismatch 0.78)."""
    fail_on_mismatch: bool = False
    """A detected skeleton mismatch fails the check (default: a warning only)."""
    validate_samples: int = 2
    """Shard samples whose contents the validator recomputes, per split folder."""
    body_model: str = "synthetic"
    """SMPL-X file or folder, or "synthetic"."""
    shape_frames: int = 16
    """Frames each subject's shape is fitted to (the fit stage's 96 take most of a spot
    check's time; the fit error threshold still guards the result)."""
    workers: int | None = None
    """dask workers (default: one per core)."""
    scheduler: str | None = None
    """An existing dask scheduler instead of a LocalCluster."""


@dataclass(frozen=True)
class Check:
    """One line of the spot-check verdict (and one JUnit test case)."""

    name: str
    """What was checked, e.g. "fit p95"."""
    ok: bool
    """Whether it held."""
    detail: str
    """The measured figure against its threshold, or why it could not run."""
    seconds: float = 0.0
    """Wall time the check took."""
    warning: bool = False
    """An ok check that reports something to look at (shown as WARN, never fails the run)."""


def choose_subset(h36m: Path, selection: Selection, frames: int) -> Selection:
    """One sequence per selected subject (the first usable one), ``frames`` frames each."""
    from pipeline.errors import DataError
    from pipeline.release.h36m import read_release

    release = read_release(h36m, selection, count_frames=False)
    first: dict[str, str] = {}
    for seq in release.sequences:
        if not seq.problems and seq.subject not in first:
            first[seq.subject] = seq.name
    if not first:
        raise DataError(f"{h36m}: no usable sequence for the selection")
    start = selection.frames[0]
    return replace(selection, subjects=tuple(first), actions=tuple(sorted(set(first.values()))),
                   frames=(start, start + frames), stride=1)


def h3wb_split_options(subjects: tuple[str, ...]) -> dict[str, str]:
    """H3WB train/test options for the checked subjects: the H3WB test subjects (S8) among them
    test, the others train."""
    from pipeline.stages.h3wb import H3WBConfig, parse_subjects

    test = parse_subjects(H3WBConfig.test)
    return {"train": ",".join(s for s in subjects if s not in test),
            "test": ",".join(s for s in subjects if s in test)}


def spot_check(h36m: Path, selection: Selection, config: SpotCheckConfig = SpotCheckConfig(),
               work: Path | None = None, echo=print) -> list[Check]:
    """Run the subset through every stage and return the checks (all must be ok)."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="h36m-nvf-spot-") as tmp:
            return spot_check(h36m, selection, config, Path(tmp), echo)
    from fitting.bodymodel import resolve_body_model
    from pipeline.checks.audit import AuditConfig, audit_summary
    from pipeline.checks.validate import ValidateConfig, validate_shards
    from pipeline.orchestration.api import run_stages
    from pipeline.store import WorkDir

    subset = choose_subset(Path(h36m), selection, config.frames)
    echo(f"spot-check: {', '.join(f'{s}' for s in subset.subjects)} / {', '.join(subset.actions)}, "
         f"frames {subset.frames[0]}:{subset.frames[1]}")
    checks = []
    t0 = time.perf_counter()
    reports = run_stages(["extract", "fit", "sample", "h3wb"], work, h36m=h36m, selection=subset, stride=1,
                         options={"body_model": config.body_model, "train_stride": 2, "test_stride": 2,
                                  "shape_frames": config.shape_frames,
                                  **h3wb_split_options(subset.subjects)},
                         scheduler=config.scheduler, workers=config.workers, progress=False)
    for r in reports:
        reasons = "; ".join(f"{o.key}: {o.reason}" for o in r.failed)
        checks.append(Check(f"stage {r.stage}", not r.failed,
                            reasons or f"{len(r.outcomes)} units ok", r.seconds))
    if len(reports) < 4:
        return checks + [Check("pipeline", False, "stopped after a failing stage", time.perf_counter() - t0)]

    t1 = time.perf_counter()
    summary, _, _ = audit_summary(WorkDir(work), AuditConfig(body_model=config.body_model),
                                  resolve_body_model(config.body_model, Path(work)))
    checks += fit_accuracy_checks(summary, config)
    checks += plausibility_checks(summary["plausibility"], config, time.perf_counter() - t1)
    checks.append(silhouette_check(summary.get("silhouette"), config))
    t1 = time.perf_counter()
    checked, problems = validate_shards(Path(work) / "shards",
                                        ValidateConfig(samples=config.validate_samples, body_model=config.body_model))
    checks.append(Check("validate shards", not problems and checked > 0,
                        "; ".join(problems) or f"{checked} samples recomputed", time.perf_counter() - t1))
    manifest = json.loads((Path(work) / "h3wb" / "manifest.json").read_text())
    counts = {split: c.get("samples", 0) for split, c in manifest["counts"].items()}
    poses_ok = all(n % 4 == 0 for n in counts.values())
    checks.append(Check("h3wb files", bool(counts) and all(n > 0 for n in counts.values()) and poses_ok,
                        f"samples per split {counts} (each pose in 4 cameras)"))
    return checks


def silhouette_check(silhouette: dict | None, config: SpotCheckConfig) -> Check:
    """The silhouette IoU threshold on the audit's ``silhouette`` summary (a pass that says
    why when the release has no ground_truth_bs masks)."""
    if not silhouette or not silhouette.get("checked"):
        reason = (silhouette or {}).get("reason", "the audit did not compare silhouettes")
        return Check("silhouette IoU", True, f"not checked: {reason}", warning=True)
    worst = silhouette["worst"][0] if silhouette["worst"] else None
    return Check("silhouette IoU", silhouette["mean"] >= config.min_silhouette_iou,
                 f"mean {silhouette['mean']:.3f} over {silhouette['frames']} (frame, camera) pairs, min "
                 f"{silhouette['min']:.3f}" + (f" ({worst['subject']} {worst['sequence']} cam {worst['camera']} "
                                                 f"frame {worst['frame']})" if worst else "")
                 + f" (limit {config.min_silhouette_iou})")


def fit_residual_spread_mm(mismatch: dict) -> dict[str, float]:
    """subject -> RMS over its joints of the bone-frame residual spread (mm), from the audit's
    ``plausibility.mismatch`` summary."""
    return {s: math.sqrt(sum(j["spread_mm"] ** 2 for j in v["per_joint"].values()) / max(len(v["per_joint"]), 1))
            for s, v in mismatch["subjects"].items()}


def fit_accuracy_checks(summary: dict, config: SpotCheckConfig) -> list[Check]:
    """The fit's accuracy, mismatch-aware: MPJPE p95 to the mocap (a threshold only without a
    detected skeleton mismatch), the residual spread per subject, PVE against the true mesh
    where the release has one."""
    fit, p = summary["overall"], summary["plausibility"]
    mpjpe = f"{fit['p95_mm']:.2f} mm over {fit['frames']} frames"
    if p["mismatch"]["detected"]:
        checks = [Check("fit p95 MPJPE", True, mpjpe + " (no threshold: the audit detects a skeleton mismatch, "
                        "which puts the mocap off any SMPL-X body; see the residual spread)", warning=True)]
    else:
        checks = [Check("fit p95 MPJPE", fit["p95_mm"] <= config.max_fit_p95_mm,
                        f"{mpjpe} (limit {config.max_fit_p95_mm} mm)")]
    spread = fit_residual_spread_mm(p["mismatch"])
    if spread:
        checks.append(Check("fit residual spread", max(spread.values()) <= config.max_fit_spread_mm,
                            ", ".join(f"{s} {v:.1f} mm" for s, v in spread.items())
                            + f" (RMS bone-frame spread; limit {config.max_fit_spread_mm} mm)"))
    if "pve" in p:
        v = p["pve"]
        checks.append(Check("fit PVE vs truth", v["mean_mm"] <= config.max_pve_mm,
                            f"mean {v['mean_mm']:.1f} mm, p95 {v['p95_mm']:.1f} mm (limit {config.max_pve_mm} mm mean)"))
    return checks


def plausibility_checks(p: dict, config: SpotCheckConfig, seconds: float = 0.0) -> list[Check]:
    """Checks on the audit's plausibility summary (``summary.json``'s ``plausibility``)."""
    rot, lim = p["rotvec"], p["joint_limits"]
    bad = max(rot["frames_over_pi"], lim["frames_beyond"])
    joints = ", ".join(f"{n} {v['max_deg']:.0f}°" for n, v in sorted(
        lim["per_joint"].items(), key=lambda kv: -kv[1]["max_deg"])[:4])
    checks = [Check("fit plausibility",
                    rot["frames_over_pi"] <= config.max_implausible_frames
                    and lim["frames_beyond"] <= config.max_implausible_frames,
                    f"{rot['frames_over_pi']} frames with a rotation vector > 180°, {lim['frames_beyond']} beyond "
                    f"the joint limits{' (' + joints + ')' if joints else ''} of {p['frames']} "
                    f"(limit {config.max_implausible_frames}); "
                    f"self-intersection max {p['self_intersection']['depth_mm']['max'] or 0:.1f} mm"
                    + (f"; {bad} implausible" if bad else ""), seconds)]
    worst = max(p["betas"].items(), key=lambda kv: kv[1]["norm"])
    checks.append(Check("fit shape |β|", all(b["norm"] <= config.max_beta_norm for b in p["betas"].values()),
                        ", ".join(f"{s} {b['norm']:.2f}" for s, b in p["betas"].items())
                        + f" (largest {worst[0]}; limit {config.max_beta_norm})"))
    mm = p["mismatch"]
    if mm["detected"]:
        checks.append(Check("skeleton mismatch", not config.fail_on_mismatch, mm["hint"],
                            warning=not config.fail_on_mismatch))
    else:
        checks.append(Check("skeleton mismatch", True, "no joint at a constant offset in its bone frame"))
    return checks


def format_verdict(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'FAIL' if not c.ok else 'WARN' if c.warning else 'PASS'}  {c.name:<{width}}  {c.detail}"
             + (f"  [{c.seconds:.1f} s]" if c.seconds else "") for c in checks]
    ok = all(c.ok for c in checks)
    lines.append(f"spot-check: {'PASSED' if ok else 'FAILED'} ({sum(c.ok for c in checks)}/{len(checks)} checks)")
    return "\n".join(lines)


def junit_xml(checks: list[Check]) -> str:
    failures = sum(not c.ok for c in checks)
    cases = []
    for c in checks:
        body = "" if c.ok else f"<failure message={quoteattr(c.detail[:200])}>{escape(c.detail)}</failure>"
        if c.ok and c.warning:
            body = f"<system-out>WARNING: {escape(c.detail)}</system-out>"
        cases.append(f'  <testcase classname="h36m-nvf.spot-check" name={quoteattr(c.name)} '
                     f'time="{c.seconds:.3f}">{body}</testcase>')
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="h36m-nvf spot-check" '
            f'tests="{len(checks)}" failures="{failures}" errors="0">\n' + "\n".join(cases) + "\n</testsuite>\n")
