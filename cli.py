"""The ``h36m-nvf`` command line: parse options, build a config, call the library.

Nothing here computes anything. Library errors that are the user's to fix (a bad file, a
bad selection, a busy work dir) become one-line messages; ``-v`` shows tracebacks.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from pipeline.orchestration.commands import (
    body_model_option,
    build_selection_from,
    quiet_dask_logs,
    quiet_native_libraries,
    register_stage_commands,
    selection_options,
    user_errors,
)


def _version() -> str:
    try:
        return version("h36m-nvf")
    except PackageNotFoundError:
        return "0+unknown"


@click.group(context_settings={"auto_envvar_prefix": "H36M_NVF", "help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="h36m-nvf")
@click.option("-v", "--verbose", count=True, help="More logging; -v also shows tracebacks.")
def main(verbose: int) -> None:
    """Human3.6M → SMPL-X pseudo-ground truth → NVF training shards."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        quiet_native_libraries()


# --- body model (fitting/synthetic_model.py) ---

@main.group("body-model")
def body_model() -> None:
    """Make or check SMPL-X body-model files."""


@body_model.command("synthetic")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the higher shape/expression directions (geometry is fixed).")
@user_errors
def body_model_synthetic(out_dir: Path, seed: int) -> None:
    """Write the synthetic model OUT_DIR/smplx/SMPLX_NEUTRAL.npz; print path and sha256.

    The official download layout: ``smplx.create(OUT_DIR, model_type="smplx", ...)`` loads it.
    """
    from common.hashing import sha256_file
    from fitting.synthetic_model import write_synthetic_model

    path = write_synthetic_model(out_dir / "smplx", seed=seed)
    click.echo(f"{path}  sha256={sha256_file(path)}")


@body_model.command("check")
@click.argument("model", type=click.Path(path_type=Path))
@user_errors
def body_model_check(model: Path) -> None:
    """Validate an SMPL-X model file (or a folder holding one); print its path and sha256."""
    from common.hashing import sha256_file
    from fitting.bodymodel import resolve_body_model

    path = resolve_body_model(model, None)
    click.echo(f"{path}  sha256={sha256_file(path)}")


# --- synthetic release and inspection (pipeline/synthetic.py, pipeline/h36m.py) ---


@main.command()
@click.argument("root", type=click.Path(path_type=Path))
@selection_options
@click.option("--no-count", is_flag=True, help="Skip video/CDF headers (layout only, faster).")
@user_errors
def inspect(root: Path, no_count: bool, **kwargs) -> None:
    """Table of a release's sequences: frame counts per camera, mocap, usable, quirks, problems."""
    from pipeline.orchestration.api import checked_release_selection
    from pipeline.release.h36m import format_release_table, read_release

    selection = checked_release_selection(root, build_selection_from(kwargs))
    release = read_release(root, selection, count_frames=not no_count)
    click.echo(format_release_table(release))


MISMATCHED_MARKER_NOISE_MM = 5.0
"""demo-data's marker noise with --mocap-skeleton mismatched unless --marker-noise-mm is given."""


@main.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--subjects", default="S1,S8,S9", show_default=True, help="Comma-separated subjects.")
@click.option("--sequences", default="Walking-1,Eating-1", show_default=True,
              help="Comma-separated ACTION-SUBACTION (e.g. Walking-1, WalkDog-2 or 14-1).")
@click.option("--frames", type=click.IntRange(min=1), default=100, show_default=True,
              help="Frames per sequence (50 fps).")
@click.option("--scale", type=float, default=None,
              help="Image scale against the real 1000-px cameras (default 1: the real resolution; "
                   "smaller for tests, e.g. 0.2).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw.")
@click.option("--marker-noise-mm", type=click.FloatRange(min=0), default=None,
              help="Gaussian noise added to the written mocap (mm, per coordinate; default 0, "
                   "or 5 with --mocap-skeleton mismatched).")
@click.option("--mocap-skeleton", type=click.Choice(["smplx", "mismatched"]), default="smplx", show_default=True,
              help="smplx: mocap joints through the fitter's correspondence (a perfect fit reproduces "
                   "them); mismatched: joints defined differently, as a real mocap system's are (fixed "
                   "per-subject offsets in the bone frames).")
@click.option("--mocap-offset-mm", type=(float, float), default=(10.0, 40.0), show_default=True,
              help="Length range (min max, mm) of the mismatched skeleton's per-joint offsets.")
@click.option("--model-seed", type=int, default=0, show_default=True,
              help="Seed of the synthetic body model.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Rendering processes (0: one per CPU core).")
@click.option("--model-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Work dir whose bodymodel/ keeps the generated body model (e.g. the "
                   "pipeline's --out); default: a temporary folder.")
@click.option("--masks", default="ground_truth_bb,ground_truth_bs", show_default=True,
              help="MySegmentsMat folders to write, comma-separated (empty: none).")
@click.option("--mask-defects", is_flag=True,
              help="ground_truth_bs with real background subtraction's defects (holes, a shadow, "
                   "speckle, a missed limb now and then) instead of the exact silhouette.")
@click.option("--force", is_flag=True, help="Overwrite the release (or other files) already in OUT.")
@user_errors
def demo_data(out: Path, subjects: str, sequences: str, scale: float | None, marker_noise_mm: float | None,
              masks: str, force: bool, **kwargs) -> None:
    """Write a synthetic Human3.6M release with known ground truth into OUT (refuses a folder
    that is not empty unless --force)."""
    if not force and out.is_dir() and any(out.iterdir()):
        what = "a release (metadata.xml)" if (out / "metadata.xml").exists() else "files"
        raise click.UsageError(f"{out}: already holds {what}; pass --force to overwrite, or choose an empty folder")
    if marker_noise_mm is None:
        marker_noise_mm = MISMATCHED_MARKER_NOISE_MM if kwargs["mocap_skeleton"] == "mismatched" else 0.0
    from pipeline.synthetic.release import (
        SyntheticReleaseConfig,
        parse_sequence_key,
        write_synthetic_release,
    )

    config = SyntheticReleaseConfig(
        subjects=tuple(s.strip() for s in subjects.split(",") if s.strip()),
        sequences=tuple(parse_sequence_key(s) for s in sequences.split(",") if s.strip()),
        **({} if scale is None else {"scale": scale}),
        marker_noise_mm=marker_noise_mm,
        masks=tuple(m.strip() for m in masks.split(",") if m.strip()),
        **kwargs,
    )
    write_synthetic_release(out, config)
    click.echo(f"synthetic release written to {out}")

# --- stages and orchestration (pipeline/runner.py, pipeline/stages/extract.py) ---


register_stage_commands(main)



@main.command()
@click.option("--out", "work", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Work directory.")
@user_errors
def status(work: Path) -> None:
    """One line per stage: done / stale / failed / missing / not run, with counts and the first
    reasons. Exit 0: all up to date; 1: units failed; 3: stale or missing units, or a stage
    not run (a rerun would do work); 2: usage error."""
    from pipeline.orchestration.status import work_status
    from pipeline.store import WorkDir

    report = work_status(WorkDir(work))
    click.echo(report.format())
    raise SystemExit(report.exit_code)

# --- fitting and audit (pipeline/stages/fit.py, pipeline/audit.py) ---

# --- sampling and validation (pipeline/stages/sample.py, sampling/) ---


@main.command()
@click.argument("shards", type=click.Path(path_type=Path))
@click.option("--samples", type=click.IntRange(min=0), default=4, show_default=True,
              help="Random samples per split whose contents are recomputed.")
@click.option("--points", type=click.IntRange(min=1), default=256, show_default=True,
              help="Points per checked sample whose SDF is recomputed in float64.")
@body_model_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-skipped", is_flag=True,
              help="A check that cannot run (no source frame for the crop check) does not fail (still listed).")
@user_errors
def validate(shards: Path, samples: int, points: int, body_model: str, seed: int, allow_skipped: bool) -> None:
    """Check shards (WORK/shards or one split folder) independently of the writer; a check that
    cannot run is listed as NOT RUN and fails unless --allow-skipped."""
    from pipeline.checks.validate import ValidateConfig, validate_report

    config = ValidateConfig(samples=samples, points=points, body_model=body_model, seed=seed,
                            allow_skipped=allow_skipped)
    report = validate_report(shards, config)
    for p in report.problems:
        click.echo(p, err=True)
    for line in report.not_run:
        click.echo(f"NOT RUN: {line}", err=True)
    if report.problems or (report.not_run and not allow_skipped):
        if report.not_run and not allow_skipped:
            click.echo(f"{len(report.not_run)} checks not run (pass --allow-skipped to accept)", err=True)
        raise SystemExit(1)
    skipped = f"; {len(report.not_run)} checks not run (allowed)" if report.not_run else ""
    click.echo(f"OK: {shards}: checksums and schema of every shard, contents of {report.checked} samples{skipped}")


@main.command()
@click.option("--out", "work", required=True, type=click.Path(path_type=Path), help="Work directory.")
@body_model_option
@click.option("--worst", type=click.IntRange(min=0), default=20, show_default=True,
              help="How many worst frames to list and draw.")
@click.option("--camera", default=None, help="Camera for the overlays (default: first with an image).")
@click.option("--groundtruth", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Synthetic release (or its groundtruth/) to measure PVE against (default: the extracted one's).")
@click.option("--intersection-stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Self-intersection depth on every N-th fitted frame.")
@click.option("--silhouette-stride", type=click.IntRange(min=1), default=5, show_default=True,
              help="Silhouette IoU against ground_truth_bs masks on every N-th fitted frame.")
@click.option("--wait", is_flag=True, help="Wait for a run holding WORK to finish instead of refusing.")
@user_errors
def audit(work: Path, body_model: str, worst: int, camera: str | None, groundtruth: Path | None,
          intersection_stride: int, silhouette_stride: int, wait: bool) -> None:
    """Write the fit-quality report WORK/audit/index.html (+ summary.json, plots, overlays).

    Takes the read side of WORK's lock: never reads fits that a run is rewriting."""
    import json

    from fitting.bodymodel import resolve_body_model
    from pipeline.checks.audit import AuditConfig, audit_headline, write_audit
    from pipeline.store import WorkDir

    wd = WorkDir(work)
    if not wd.root.is_dir():
        raise click.UsageError(f"--out {work}: no such work directory")
    config = AuditConfig(body_model, worst, camera, groundtruth=groundtruth, intersection_stride=intersection_stride,
                         silhouette_stride=silhouette_stride)
    with wd.lock(wait=wait, shared=True):
        index = write_audit(wd, config, resolve_body_model(body_model, wd.root))
    for line in audit_headline(json.loads((index.parent / "summary.json").read_text())):
        click.echo(line)
    click.echo(index)


@main.command("show-fit")
@click.argument("subject")
@click.argument("sequence")
@click.option("--frame", type=click.IntRange(min=0), required=True, help="0-based mocap frame.")
@click.option("--camera", required=True, help="Camera id, e.g. 54138969.")
@click.option("--out", "work", required=True, type=click.Path(path_type=Path), help="Work directory.")
@click.option("-o", "output", required=True, type=click.Path(path_type=Path),
              help="Image to write; the format follows the suffix (.png, .jpg, .jpeg).")
@body_model_option
@user_errors
def show_fit(subject: str, sequence: str, frame: int, camera: str, work: Path, output: Path, body_model: str) -> None:
    """Draw one fitted frame (mesh, fitted joints green, mocap joints red) onto its extracted image."""
    from fitting.bodymodel import resolve_body_model
    from pipeline.checks.show_fit import show_fit as draw
    from pipeline.store import WorkDir

    wd = WorkDir(work)
    if not wd.root.is_dir():
        raise click.UsageError(f"--out {work}: no such work directory")
    click.echo(draw(wd, resolve_body_model(body_model, wd.root), subject, sequence.replace(" ", "_"),
                    frame, camera, output))
    click.echo(output)

# --- H3WB (pipeline/stages/h3wb.py) ---


@main.command("h3wb-eval")
@click.option("--pred", required=True, type=click.Path(dir_okay=False),
              help="Predictions in H3WB JSON (keypoints_3d per id).")
@click.option("--gt", required=True, type=click.Path(dir_okay=False),
              help="Ground truth, e.g. WORK/h3wb/2Dto3D_test_3d.json.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write the metrics to this JSON file.")
@click.option("--pred-units", type=click.Choice(["auto", "mm", "m"]), default="auto", show_default=True,
              help="Unit of the predictions; auto: millimetres, and predictions that look like metres "
                   "are an error (pass m to convert them).")
@user_errors
def h3wb_eval_command(pred, gt, json_out, pred_units):
    """H3WB MPJPE (mm): whole body, body, face (nose-aligned), hands (root-aligned)."""
    from pathlib import Path

    from pipeline.h3wb.metrics import evaluate_files, format_metrics_table
    from pipeline.store import atomic_write_json

    result = evaluate_files(Path(pred), Path(gt), pred_units=pred_units)
    click.echo(format_metrics_table(result))
    if json_out is not None:
        atomic_write_json(json_out, result)


# --- NVF trainer (nvf/) ---


def _device_name(ctx, param, value):
    """click callback: an unknown --device is a usage error (CUDA missing stays a run error)."""
    from common.device import DeviceError, check_device_name

    if value is None:
        return None
    try:
        return check_device_name(value)
    except DeviceError as e:
        raise click.BadParameter(str(e)) from None


@main.command()
@click.option("--shards", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Training split folder, e.g. WORK/shards/train.")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (config.json, checkpoint.pt, metrics.csv, loss_curve.png).")
@click.option("--preset", type=click.Choice(["tiny", "full"]), default=None,
              help="Model size preset (default tiny; on --resume the stored config).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file overriding TrainConfig fields (nvf/config.py).")
@click.option("--epochs", type=click.IntRange(min=1), help="Total epochs (on --resume: train up to this).")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate.")
@click.option("--points", type=click.IntRange(min=1), help="Stored points drawn per sample and step.")
@click.option("--workers", type=click.IntRange(min=0), help="DataLoader worker processes.")
@click.option("--seed", type=int)
@click.option("--device", callback=_device_name, help="cpu, cuda, cuda:N or auto.")
@click.option("--resume", is_flag=True, help="Continue RUN from its checkpoint.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@user_errors
def train(shards, run_dir, preset, config_file, epochs, batch_size, lr, points, workers, seed, device,
          resume, progress) -> None:
    """Train the NVF network on a shard split."""
    from nvf.config import apply_overrides, load_config, preset_config
    from nvf.train import CONFIG, load_run_config
    from nvf.train import train as run_training

    if resume and (run_dir / CONFIG).is_file():
        if preset:
            raise click.UsageError("--preset cannot change the network of a resumed run")
        config = load_run_config(run_dir)
    else:
        config = preset_config(preset or "tiny")
    if config_file is not None:
        config = load_config(config_file, base=config)
    options = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "points": points,
               "num_workers": workers, "seed": seed, "device": device}
    config = apply_overrides(config, {k: v for k, v in options.items() if v is not None}, "options")
    result = run_training(shards, run_dir, config, resume=resume, progress=progress)
    last = result["last"]
    click.echo(f"{run_dir}: {result['epochs']} epochs, {result['steps']} steps, loss {last['loss']:.4f}, "
               f"{last['samples_per_s']:.1f} samples/s")


@main.command()
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder written by `train`.")
@click.option("--shards", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Split folder to evaluate on, e.g. WORK/shards/test.")
@click.option("--query", type=click.Choice(["stored", "grid"]), default="stored", show_default=True,
              help="Query points: the shard's stored points or a grid in the crop frustum.")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--device", callback=_device_name, help="cpu, cuda, cuda:N or auto (default auto).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--force", is_flag=True,
              help="Evaluate on shards whose schema, crop, points or sampler differ from the training shards'.")
@user_errors
def evaluate(run_dir, shards, query, batch_size, device, progress, force) -> None:
    """MPJPE and PA-MPJPE (mm, root-relative) per action and joint, beside the zero, mean-pose and
    oracle baselines and the decoder's diagnostics; writes RUN/eval_<split>_<shards hash>.json.
    Refuses shards unlike the training shards unless --force."""
    from nvf.evaluate import evaluate as run_evaluation
    from nvf.evaluate import evaluation_path, format_baselines
    from nvf.metrics import format_table

    report = run_evaluation(run_dir, shards, device=device, batch_size=batch_size, query=query,
                            progress=progress, force=force)
    click.echo(format_table(report))
    click.echo(format_baselines(report))
    if "sdf_l1_near_mm" in report:
        click.echo(f"SDF L1 near the surface: {report['sdf_l1_near_mm']:.1f} mm")
    if report["shards_check"] != "passed":
        click.echo(f"shards check {report['shards_check']}", err=True)
    click.echo(f"written {evaluation_path(run_dir, shards, query)}")


# --- demo and spot-check ---


@main.command()
@click.option("--out", "work", default="work", show_default=True, type=click.Path(path_type=Path),
              help="Work directory (the synthetic release goes to WORK/release).")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True, help="NVF training epochs.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="dask workers (default: one per core).")
@click.option("--scheduler", default=None, help="Attach to an existing dask scheduler (tcp://HOST:PORT).")
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs).")
@user_errors
def demo(work: Path, epochs: int, workers: int | None, scheduler: str | None, no_progress: bool) -> None:
    """Run the whole pipeline on the embedded synthetic release and print a summary."""
    from pipeline.recipes.demo import DemoConfig, format_summary, run_demo

    config = DemoConfig(epochs=epochs, workers=workers, scheduler=scheduler, progress=not no_progress)
    quiet_dask_logs()
    try:
        summary = run_demo(work, config, echo=click.echo)
    except KeyboardInterrupt as e:
        from pipeline.orchestration.commands import INTERRUPTED_EXIT, interrupted_line

        click.echo(interrupted_line(e).replace("the same command", "the demo"), err=True)
        raise SystemExit(INTERRUPTED_EXIT) from None
    click.echo(format_summary(summary))


@main.command("spot-check")
@click.option("--h36m", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Release root (holds metadata.xml).")
@selection_options
@click.option("--frames-per-sequence", type=click.IntRange(min=2), default=10, show_default=True,
              help="Frames of the one sequence per subject that is checked.")
@click.option("--max-fit-p95-mm", type=float, default=20.0, show_default=True, help="Fit error threshold (p95, mm).")
@click.option("--max-implausible-frames", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fitted frames allowed with a rotation vector > 180° or a joint beyond its limits.")
@click.option("--max-beta-norm", type=float, default=3.0, show_default=True, help="Largest |β| per subject.")
@click.option("--fail-on-mismatch", is_flag=True, help="A detected skeleton mismatch fails (default: warning).")
@click.option("--min-silhouette-iou", type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help="Lowest mean IoU of the fitted silhouette with ground_truth_bs masks (where present).")
@body_model_option
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write the checks as JUnit XML.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="dask workers.")
@click.option("--scheduler", default=None, help="Attach to an existing dask scheduler.")
@user_errors
def spot_check(h36m: Path, frames_per_sequence: int, max_fit_p95_mm: float, max_implausible_frames: int,
               max_beta_norm: float, fail_on_mismatch: bool, min_silhouette_iou: float, body_model: str,
               junit: Path | None, workers: int | None, scheduler: str | None, **selection) -> None:
    """Every stage on a small subset in a temporary work dir; exit 0 only if all checks hold."""
    from pipeline.recipes.spotcheck import SpotCheckConfig, format_verdict, junit_xml, spot_check
    from pipeline.store import atomic_write_bytes

    config = SpotCheckConfig(frames=frames_per_sequence, max_fit_p95_mm=max_fit_p95_mm,
                             max_implausible_frames=max_implausible_frames, max_beta_norm=max_beta_norm,
                             fail_on_mismatch=fail_on_mismatch, min_silhouette_iou=min_silhouette_iou,
                             body_model=body_model, workers=workers, scheduler=scheduler)
    quiet_dask_logs()
    from pipeline.orchestration.api import checked_release_selection

    checks = spot_check(h36m, checked_release_selection(h36m, build_selection_from(selection)), config,
                        echo=click.echo)
    click.echo(format_verdict(checks))
    if junit:
        atomic_write_bytes(junit, junit_xml(checks).encode())
    if not all(c.ok for c in checks):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
