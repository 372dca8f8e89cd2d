"""Library entry point behind ``h36m-nvf <stage>`` and ``h36m-nvf run``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fitting.bodymodel import SYNTHETIC_SPEC
from pipeline.artifacts import resolve_model
from pipeline.errors import DataError, SelectionError
from pipeline.selection import Held, Selection, check_selection
from pipeline.store import Params, WorkDir, clean_temp_files, read_params, write_params

SELECTION_SOURCE = {"fit": "extract"}
"""What a chain's first stage selects from: the release when it reads it, WORK/extract for
fit, else WORK/fit (sample, h3wb)."""


def release_holdings(root: Path | str, selection: Selection | None = None, count_frames: bool = False) -> list[Held]:
    """The sequences of a release (subject folders present), for checking a selection."""
    from pipeline.release.h36m import read_release

    release = read_release(root, selection, count_frames=count_frames)
    return [Held(q.subject, q.name, q.action, tuple(c.id for c in q.cameras), q.num_frames)
            for q in release.sequences]


def work_holdings(work: WorkDir, level: str) -> list[Held]:
    """The sequences WORK/extract (``level`` "extract") or WORK/fit ("fit") holds."""
    from pipeline.artifacts import extracted_sequences, fitted_sequences, read_sequence_info

    root = work.extract_dir() if level == "extract" else work.fit_dir()
    subjects = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    listed = extracted_sequences if level == "extract" else fitted_sequences
    held = []
    for subject in subjects:
        for seq in listed(work, subject):
            try:
                info = read_sequence_info(work.sequence_json(subject, seq))
            except DataError:  # a fit without its extract: the stage names the file
                continue
            held.append(Held(subject, seq, info.action or seq, info.camera_ids, info.num_frames))
    return held


def checked_release_selection(root: Path | str, selection: Selection) -> Selection:
    """``selection`` checked against a release (``check_selection``); frame counts are read
    only when a frame range is given."""
    checked = check_selection(selection, release_holdings(root), f"the release {root}")
    if checked.frames != (0, None):
        check_selection(checked, release_holdings(root, checked, count_frames=True), f"the release {root}")
    return checked


def checked_selection(first_stage, selection: Selection, work: WorkDir, h36m: Path | None) -> Selection:
    """The selection checked against what the chain's first stage reads (see SELECTION_SOURCE)."""
    if first_stage.needs_release:
        return checked_release_selection(h36m, selection)
    level = SELECTION_SOURCE.get(first_stage.name, "fit")
    return check_selection(selection, work_holdings(work, level), f"{work.root / level}")


def _coerce(stage, key: str, value, where: Path):
    """A value read from the params file as the option's type (SelectionError naming the file)."""
    kinds = {o.field: o.type for o in stage.options}
    kind = int if key == "stride" else kinds.get(key)
    if value is None or kind is None or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool or (kind in (int, float) and isinstance(value, bool)):
            raise ValueError("not a " + kind.__name__)
        return kind(value)
    except (TypeError, ValueError) as e:
        raise SelectionError(f"{where}: {stage.name}.{key}: {value!r} is not a valid value ({e})") from None


def stage_values(stage, given: Mapping[str, Any], saved: Params, origin: str, where: Path):
    """(field → value, field → who set it, field → value reused from ``saved``) for one stage.

    Each option field and ``stride``: the value given here, else the last run's (``saved``),
    else the default. A ``stride`` given here also replaces saved values of the stage's
    ``stride_fields`` (sample's --train-stride / --test-stride refine --stride).
    """
    defaults = stage.config_defaults()
    fields = sorted(stage.option_fields() | {"stride"})
    last = dict(saved.stages.get(stage.name, {}))
    if "stride" in given:
        for f in stage.stride_fields:
            last.pop(f, None)
    notes = saved.set_by.get(stage.name, {})
    values, set_by, reused = {}, {}, {}
    for key in fields:
        default = stage.default_stride if key == "stride" else defaults.get(key)
        if key in given:
            values[key] = given[key]
            set_by[key] = origin.replace("{flag}", "--" + key.replace("_", "-"))
        elif key in last:
            values[key] = _coerce(stage, key, last[key], where)
            if key in notes:
                set_by[key] = notes[key]
            if values[key] != default:
                reused[key] = values[key]
        else:
            values[key] = default
    return values, set_by, reused


def check_chain_strides(configs) -> None:
    """Before a chain that extracts and samples runs: SelectionError when a sample part's
    stride asks for frames the extract stride does not keep (the sample stage checks the
    images themselves; this says it before hours of extraction)."""
    by_name = {stage.name: config for stage, config in configs}
    if "extract" not in by_name or "sample" not in by_name:
        return
    from pipeline.stages.sample import every_nth, part_strides

    kept = by_name["extract"].selection.stride or 1
    also = by_name["extract"].also_every
    for part, (stride, source) in part_strides(by_name["sample"]).items():
        if stride % kept and not (also and stride % also == 0):
            raise SelectionError(
                f"sample: the {part} part takes {every_nth(stride)} ({source}), but extract keeps "
                f"{every_nth(kept)} (--stride {kept}{f', --also-every {also}' if also else ''}): only multiples of {math.lcm(stride, kept)} could be "
                f"sampled; extract with a --stride that divides {stride} (e.g. `h36m-nvf extract --stride 1`, "
                f"then `run --from fit`), or pass --{part}-stride with a multiple of {kept}")


def updated_params(saved: Params, values: Mapping, set_by: Mapping, h36m: Path | None) -> Params:
    """``saved`` with the sections of the stages that ran replaced; the others kept."""
    from pipeline.stages.base import config_to_json

    stages = {**saved.stages, **{k: config_to_json(dict(v)) for k, v in values.items()}}
    notes = {**saved.set_by, **{k: dict(v) for k, v in set_by.items()}}
    return Params(h36m=str(h36m.absolute()) if h36m is not None else saved.h36m, stages=stages,
                  set_by={k: v for k, v in notes.items() if v})


def run_stages(
    names: Sequence[str],
    out: Path | str,
    *,
    h36m: Path | str | None = None,
    selection: Selection | None = None,
    stride: int | None = None,
    options: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    dry_run: bool = False,
    keep_going: bool = False,
    progress: bool = True,
    wait: bool = False,
    echo=None,
    reuse_params: bool = False,
    origin: str | None = None,
):
    """Run the named stages in order on one dask client; return their ``StageReport`` list.

    ``stride`` None gives each stage its own default stride. ``options`` holds stage options
    by config field name (None values = the stage's default). Takes the work dir's lock
    (WorkDirBusy, or waits with ``wait``) and removes temp files of killed runs, except with
    ``dry_run``, which writes nothing and starts no cluster. Each stage is planned just before
    it runs, so it sees what the previous one wrote. ``echo(text)`` receives each stage's
    summary as soon as it is known.

    Every run (not a dry run) records each stage's effective options in ``WORK/params.yaml``
    (``pipeline.store.Params``); ``origin`` names who set the options given here (e.g.
    "--crop on `h36m-nvf sample`"; "{flag}" is replaced by the option's flag). With
    ``reuse_params`` (the stage commands), an option not given here takes the last run's value
    from that file instead of the stage default, and so does ``h36m``.
    """
    from pipeline.orchestration.runner import LazyClient, run_stage
    from pipeline.stages import get_stage

    stages = [get_stage(n) for n in names]
    work = WorkDir(Path(out))
    selection = selection or Selection()
    saved = read_params(work)
    if h36m is None and reuse_params and saved.h36m and any(s.needs_release for s in stages):
        h36m = saved.h36m
    h36m = Path(h36m) if h36m is not None else None
    for stage in stages:
        if stage.needs_release and h36m is None:
            raise DataError(f"stage {stage.name} reads the release: pass --h36m ROOT")
        if stage.needs_release and not h36m.is_dir():
            raise DataError(f"{h36m}: release folder not found (--h36m)")

    selection = checked_selection(stages[0], selection, work, h36m)

    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - frozenset().union(*(s.option_fields() for s in stages)))
    if unknown:
        raise SelectionError(f"{', '.join('--' + k.replace('_', '-') for k in unknown)}: not an option of "
                             f"{', '.join(s.name for s in stages)}")
    if stride is not None:
        given["stride"] = stride

    values, set_by, configs = {}, {}, []
    for stage in stages:
        values[stage.name], set_by[stage.name], reused = stage_values(
            stage, given, saved if reuse_params else Params(), origin or "run_stages", work.params_file)
        if reused and echo:
            echo(f"{stage.name}: as last time ({work.params_file}): "
                 + ", ".join(f"{k} {v}" for k, v in sorted(reused.items())))
        own = dict(values[stage.name])
        sel = dataclasses.replace(selection, stride=own.pop("stride"))
        configs.append((stage, stage.make_config(h36m=h36m, selection=sel, options=own)))
    check_chain_strides(configs)
    body_model = next((values[s.name]["body_model"] for s in stages if "body_model" in values[s.name]), None)

    reports = []
    if dry_run:
        for stage, config in configs:
            reports.append(run_stage(stage, config, work, None, force=force, dry_run=True))
            if echo:
                echo(reports[-1].format())
        return reports

    work.root.mkdir(parents=True, exist_ok=True)
    with work.lock(wait=wait):
        clean_temp_files(work.root)
        write_params(work, updated_params(saved, values, set_by, h36m if any(s.needs_release for s in stages)
                                          else None))
        if body_model is not None:
            # resolved once for the whole chain (the synthetic model is written here, once, and
            # validated); configs keep the user's spec ("synthetic" or the path given), so unit
            # params and manifests do not depend on where WORK lies. The stages check each fit's
            # recorded sha256 against this file.
            resolve_model(body_model or SYNTHETIC_SPEC, work)
        with LazyClient(scheduler, workers) as client:  # started only if a unit must run
            for stage, config in configs:
                report = run_stage(stage, config, work, client, force=force,
                                   keep_going=keep_going, progress=progress)
                reports.append(report)
                if echo:
                    echo(report.format())
                    lines = stage.summary(config, work) if stage.summary is not None else []
                    if lines:
                        echo("\n".join(lines))
                if report.failed and not keep_going:
                    break  # later stages would only fail on the missing outputs
    return reports
