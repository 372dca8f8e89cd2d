"""Library entry point behind ``h36m-nvf <stage>`` and ``h36m-nvf run``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fitting.bodymodel import SYNTHETIC_SPEC
from pipeline.artifacts import resolve_model
from pipeline.errors import DataError, SelectionError
from pipeline.selection import Held, Selection, check_selection
from pipeline.store import WorkDir, clean_temp_files

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
):
    """Run the named stages in order on one dask client; return their ``StageReport`` list.

    ``stride`` None gives each stage its own default stride. ``options`` holds stage options
    by config field name (None values = the stage's default). Takes the work dir's lock
    (WorkDirBusy, or waits with ``wait``) and removes temp files of killed runs, except with
    ``dry_run``, which writes nothing and starts no cluster. Each stage is planned just before
    it runs, so it sees what the previous one wrote. ``echo(text)`` receives each stage's
    summary as soon as it is known.
    """
    from pipeline.orchestration.runner import LazyClient, run_stage
    from pipeline.stages import get_stage

    stages = [get_stage(n) for n in names]
    work = WorkDir(Path(out))
    selection = selection or Selection()
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

    def configs():
        for stage in stages:
            sel = dataclasses.replace(selection, stride=stride or stage.default_stride)
            own = {k: v for k, v in given.items() if k in stage.option_fields()}
            yield stage, stage.make_config(h36m=h36m, selection=sel, options=own)

    reports = []
    if dry_run:
        for stage, config in configs():
            reports.append(run_stage(stage, config, work, None, force=force, dry_run=True))
            if echo:
                echo(reports[-1].format())
        return reports

    work.root.mkdir(parents=True, exist_ok=True)
    with work.lock(wait=wait):
        clean_temp_files(work.root)
        if any("body_model" in s.option_fields() for s in stages):
            # resolved once for the whole chain (the synthetic model is written here, once, and
            # validated); configs keep the user's spec ("synthetic" or the path given), so unit
            # params and manifests do not depend on where WORK lies. The stages check each fit's
            # recorded sha256 against this file.
            resolve_model(given.get("body_model", SYNTHETIC_SPEC), work)
        with LazyClient(scheduler, workers) as client:  # started only if a unit must run
            for stage, config in configs():
                report = run_stage(stage, config, work, client, force=force,
                                   keep_going=keep_going, progress=progress)
                reports.append(report)
                if echo:
                    echo(report.format())
                if report.failed and not keep_going:
                    break  # later stages would only fail on the missing outputs
    return reports
