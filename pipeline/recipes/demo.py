"""``h36m-nvf demo``: the whole pipeline on the embedded synthetic default, in one call.

Writes the synthetic release and body model into WORK, runs extract → fit → sample → h3wb on
a real dask LocalCluster, renders the audit, validates the shards, trains the NVF model
briefly and evaluates it. Every step is skipped when its outputs are up to date, so a second
run finishes in seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipeline.errors import DataError
from pipeline.store import WorkDir
from pipeline.synthetic.release import SyntheticReleaseConfig

DEMO_MARKER_NOISE_MM = 5.0
"""Marker noise of the demo's mocap (mm per coordinate), beside its mismatched skeleton."""


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs."""

    release: SyntheticReleaseConfig = field(default_factory=lambda: SyntheticReleaseConfig(
        mocap_skeleton="mismatched", marker_noise_mm=DEMO_MARKER_NOISE_MM))
    """The synthetic release (default: S1, S8, S9 with two sequences each, the mocap through a
    mismatched skeleton with marker noise, as real mocap is: the demo's fit numbers then mean
    what they would on real data)."""
    split: str = "protocol1"
    """Shard split to sample and train on."""
    train_stride: int = 10
    """Training frame stride (protocol 1 uses 5; 10 keeps the demo's CPU time short)."""
    test_stride: int = 20
    """Test frame stride: protocol 1's every-64th frame leaves too little of 100-frame demo sequences."""
    points: int = 2048
    """Query points per sample (the pipeline default is 4096)."""
    crop: int = 128
    """Crop side in pixels (the pipeline default is 256)."""
    epochs: int = 3
    """NVF training epochs (the tiny CPU preset)."""
    workers: int | None = None
    """dask workers (default: one per core)."""
    scheduler: str | None = None
    """An existing dask scheduler instead of a LocalCluster."""
    progress: bool = True
    """Show progress bars."""


def written_selection(config: SyntheticReleaseConfig):
    """The subjects and sequences the synthetic release holds: metadata.xml lists every
    sequence of Human3.6M, and those the demo chose not to write are no release problem."""
    from pipeline.release.metadata import default_metadata
    from pipeline.selection import Selection

    metadata = default_metadata()
    names = sorted({metadata.basename(s, a, sub) for s in config.subjects for a, sub in config.sequences})
    return Selection(subjects=tuple(config.subjects), actions=tuple(names))


def ensure_release(work: WorkDir, config: SyntheticReleaseConfig, echo) -> Path:
    """WORK/release, written unless a release with the same config is already there."""
    from pipeline.synthetic.release import write_synthetic_release

    release = work.root / "release"
    record = release / "groundtruth" / "model.json"
    wanted = {k: v for k, v in asdict(config).items() if k not in ("model_cache", "workers")}
    if record.is_file() and (release / "metadata.xml").is_file():
        if json.loads(json.dumps(wanted, default=list)) == json.loads(record.read_text()).get("config"):
            echo(f"release: up to date ({release})")
            return release
    echo(f"release: writing the synthetic Human3.6M release into {release} …")
    write_synthetic_release(release, replace(config, model_cache=str(work.root)))
    return release


def ensure_audit(work: WorkDir, echo) -> Path:
    """WORK/audit/index.html, re-rendered only when a fit file is newer than it."""
    from fitting.bodymodel import resolve_body_model
    from pipeline.artifacts import fitted_sequences, fitted_subjects
    from pipeline.checks.audit import AuditConfig, write_audit

    index = work.audit_index
    fits = [work.fit_sequence(s, q) for s in fitted_subjects(work) for q in fitted_sequences(work, s)]
    if index.is_file() and all(f.stat().st_mtime_ns <= index.stat().st_mtime_ns for f in fits):
        echo(f"audit: up to date ({index})")
        return index
    echo("audit: rendering …")
    # self-intersection depth is the audit's costliest figure: every 10th frame keeps the demo short
    return write_audit(work, AuditConfig(intersection_stride=10), resolve_body_model("synthetic", work.root))


def _newer_than(path: Path, sources: list[Path]) -> bool:
    """True when ``path`` exists and no existing source was modified after it."""
    return path.is_file() and all(not p.exists() or p.stat().st_mtime_ns <= path.stat().st_mtime_ns
                                  for p in sources)


def ensure_validated(work: WorkDir, echo) -> int:
    """Validate WORK/shards unless a record says these very indexes were validated."""
    from pipeline.checks.validate import validate_shards
    from pipeline.store import atomic_write_json

    record = work.root / "shards" / "validated.json"
    indexes = sorted((work.root / "shards").glob("*/index.json"))
    digest = {p.parent.name: p.read_text() for p in indexes}
    if record.is_file():
        previous = json.loads(record.read_text())
        if previous.get("indexes") == digest:
            echo(f"validate: up to date ({record})")
            return int(previous["checked"])
    checked, problems = validate_shards(work.root / "shards")
    if problems:
        raise DataError("demo: shard validation failed:\n" + "\n".join(problems))
    atomic_write_json(record, {"checked": checked, "indexes": digest})
    return checked


def ensure_training(work: WorkDir, train_dir: Path, config: DemoConfig, echo) -> Path:
    """WORK/nvf: trained for ``config.epochs`` (resumed if a shorter or killed run is there)."""
    from nvf.config import apply_overrides, preset_config
    from nvf.train import CHECKPOINT, train

    run = work.root / "nvf"
    ckpt = run / CHECKPOINT
    cfg = apply_overrides(preset_config("tiny"), {"epochs": config.epochs, "device": "cpu"}, "demo")
    if ckpt.is_file():
        from nvf.train import load_checkpoint

        saved = load_checkpoint(ckpt)
        if "train_stats" not in saved:  # from before the baselines: train afresh
            ckpt.unlink()
        elif int(saved["epoch"]) >= config.epochs:
            echo(f"train: up to date ({run})")
            return run
    echo(f"train: {config.epochs} epochs of the tiny NVF model on {train_dir.name} …")
    train(train_dir, run, cfg, resume=ckpt.is_file(), progress=config.progress)
    return run


def run_demo(work_dir: Path, config: DemoConfig = DemoConfig(), echo=print) -> dict:
    """Run everything; returns the summary printed at the end."""
    from nvf.evaluate import evaluation_path
    from nvf.train import evaluate
    from pipeline.checks.audit import read_fits, summarize
    from pipeline.orchestration.api import run_stages
    work = WorkDir(Path(work_dir))
    work.root.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    start = clock = time.perf_counter()

    def lap(step: str | None) -> None:
        """Time since the last lap goes to ``step`` (None: dropped, already counted)."""
        nonlocal clock
        now = time.perf_counter()
        if step:
            seconds[step] = now - clock
        clock = now

    release = ensure_release(work, config.release, echo)
    lap("release")
    from pipeline.release.h36m import format_release_table, read_release

    echo(format_release_table(read_release(release, written_selection(config.release))))
    reports = run_stages(
        ["extract", "fit", "sample", "h3wb"], work.root, h36m=release,
        options={"body_model": "synthetic", "split": config.split, "train_stride": config.train_stride,
                 "test_stride": config.test_stride, "points": config.points, "crop": config.crop},
        scheduler=config.scheduler, workers=config.workers, progress=config.progress, echo=echo,
        origin="`h36m-nvf demo`")
    seconds.update({r.stage: r.seconds for r in reports})
    lap(None)
    failed = [f"{r.stage}: {o.key}: {o.reason}" for r in reports for o in r.failed]
    if failed or len(reports) < 4:
        raise DataError("demo: stages failed:\n" + "\n".join(failed))

    audit = ensure_audit(work, echo)
    lap("audit")
    checked = ensure_validated(work, echo)
    lap("validate")
    train_dir = work.shards_dir(f"{config.split}-train")
    test_dir = work.shards_dir(f"{config.split}-test")
    run = ensure_training(work, train_dir, config, echo)
    lap("train")
    report = evaluation_path(run, test_dir)
    if _newer_than(report, [run / "checkpoint.pt", test_dir / "index.json"]) and \
            "baselines" in json.loads(report.read_text()):
        echo(f"evaluate: up to date ({report})")
        metrics = json.loads(report.read_text())
    else:
        metrics = evaluate(run, test_dir, device="cpu", progress=config.progress)
    lap("evaluate")

    fit = summarize(read_fits(work))["overall"]
    shards = {d.name: json.loads((d / "index.json").read_text()) for d in sorted((work.root / "shards").iterdir())
              if (d / "index.json").is_file()}
    h3wb = json.loads((work.h3wb_dir / "manifest.json").read_text())
    audit_summary = json.loads((audit.parent / "summary.json").read_text())
    return {
        "work": str(work.root),
        "release": str(release),
        "audit": str(audit),
        "surface": surface_figures(audit_summary),
        "fit_mpjpe_mm": {k: fit[k] for k in ("frames", "mean_mm", "p95_mm", "max_mm")},
        "shards": {name: {"shards": len(i["shards"]), "samples": i["samples"]} for name, i in shards.items()},
        "validated_samples": checked,
        "h3wb": {split: c.get("samples") for split, c in h3wb.get("counts", {}).items()},
        "h3wb_dir": str(work.h3wb_dir),
        "nvf_run": str(run),
        "nvf_test": {**{k: metrics[k] for k in ("mpjpe_mm", "pa_mpjpe_mm", "baselines", "verdict")},
                     "epochs": config.epochs},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "total_seconds": round(time.perf_counter() - start, 1),
    }


def surface_figures(audit_summary: dict) -> dict:
    """What the audit says of the fitted surface: PVE against the true mesh, silhouette IoU
    against ground_truth_bs, and whether a skeleton mismatch was detected (None: not checked)."""
    p = audit_summary.get("plausibility", {})
    pve, sil = p.get("pve"), audit_summary.get("silhouette") or {}
    return {"pve_mean_mm": pve["mean_mm"] if pve else None, "pve_p95_mm": pve["p95_mm"] if pve else None,
            "silhouette_iou_mean": sil.get("mean") if sil.get("checked") else None,
            "silhouette_pairs": sil.get("frames") if sil.get("checked") else 0,
            "mismatch_detected": p.get("mismatch", {}).get("detected")}


def surface_line(surface: dict) -> str:
    pve = ("not measured (no groundtruth/)" if surface["pve_mean_mm"] is None else
           f"PVE vs the true mesh mean {surface['pve_mean_mm']:.1f} mm, p95 {surface['pve_p95_mm']:.1f} mm")
    sil = ("silhouette not checked (no ground_truth_bs masks)" if surface["silhouette_iou_mean"] is None else
           f"silhouette IoU mean {surface['silhouette_iou_mean']:.3f} over {surface['silhouette_pairs']} "
           "(frame, camera) pairs")
    mismatch = {True: "skeleton mismatch detected (the demo's mocap is made through another joint definition)",
                False: "no skeleton mismatch detected", None: "mismatch not checked"}[surface["mismatch_detected"]]
    return f"{pve}; {sil}; {mismatch}"


def nvf_summary(test: dict) -> str:
    """The NVF line: the model's test numbers beside the baselines, and the verdict in words."""
    b = test["baselines"]
    return (f"test MPJPE {test['mpjpe_mm']:.1f} mm, PA-MPJPE {test['pa_mpjpe_mm']:.1f} mm; baselines on the same "
            f"samples: mean pose of the training split {b['mean_pose']['mpjpe_mm']:.1f} / "
            f"{b['mean_pose']['pa_mpjpe_mm']:.1f} mm, zero (all joints at the root) {b['zero']['mpjpe_mm']:.1f} / "
            f"{b['zero']['pa_mpjpe_mm']:.1f} mm, oracle (decoder on the ground truth) {b['oracle']['mpjpe_mm']:.1f} mm"
            f" — {test['verdict']} (a {test.get('epochs', 'short')}-epoch demo run; `make bench` has the learning "
            "benchmark)")


def format_summary(summary: dict) -> str:
    fit = summary["fit_mpjpe_mm"]
    lines = [
        "",
        "h36m-nvf demo: done",
        f"  work dir      {summary['work']}",
        f"  release       {summary['release']}",
        f"  fit           {fit['frames']} frames, MPJPE to the mocap mean {fit['mean_mm']:.2f} mm, p95 {fit['p95_mm']:.2f} mm, "
        f"max {fit['max_mm']:.2f} mm",
        f"  surface       {surface_line(summary['surface'])}",
        f"  audit         {summary['audit']}",
    ]
    for name, s in summary["shards"].items():
        lines.append(f"  shards        {name}: {s['shards']} shard(s), {s['samples']} samples")
    lines.append(f"  validated     {summary['validated_samples']} samples recomputed, all checksums OK")
    samples = ", ".join(f"{split} {n} samples" for split, n in summary["h3wb"].items())
    lines.append(f"  h3wb          {summary['h3wb_dir']}: {samples} (8 JSON files + manifest)")
    lines.append(f"  nvf           {summary['nvf_run']}: {nvf_summary(summary['nvf_test'])}")
    steps = summary.get("seconds", {})
    if steps:
        lines.append("  time          " + ", ".join(f"{k} {v:.0f} s" for k, v in steps.items())
                     + f"; total {summary.get('total_seconds', sum(steps.values())):.0f} s")
    return "\n".join(lines)
