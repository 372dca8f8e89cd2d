"""``h36m-nvf status --out WORK``: one line per stage, done / stale / failed / missing / not run.

Each stage that ran is planned again with the config of its last run (``run.json``) and
every unit compared with its done-record, exactly as a rerun would (``runner.unit_statuses``);
units listed in ``WORK/<stage>/failures.json`` count as failed. Nothing is written and no
lock is taken (a status during a run is allowed; the header says that a run holds WORK).

Exit codes (``StatusReport.exit_code``), for scripts:

* 0: every stage has run and all its units are up to date;
* 1: some units failed in their stage's last run;
* 3: nothing failed, but some units are stale or missing, or a stage has not run
  (``h36m-nvf run`` would do work);
* 2: usage error (WORK does not exist), from click.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import DataError, SelectionError
from pipeline.selection import Selection
from pipeline.store import WorkDir, read_json

EXIT_DONE, EXIT_FAILED, EXIT_TODO = 0, 1, 3
REASONS_SHOWN = 3
"""Units whose reason a stage line shows (the rest are counted)."""
REASON_CHARS = 160
"""A reason longer than this is cut (the full one is in the done-record / failures.json)."""


@dataclass
class StageStatus:
    """The state of one stage in WORK."""

    stage: str
    state: str
    """"done", "stale", "failed", "missing" (units never ran) or "not run" (the stage never ran)."""
    counts: dict[str, int] = field(default_factory=dict)
    """"up to date", "stale", "missing", "failed" → number of units."""
    reasons: list[str] = field(default_factory=list)
    """"<unit>: <why>" of the first few units that are not up to date."""
    finished_at: str = ""
    """When the stage's last run finished (run.json)."""


@dataclass
class StatusReport:
    work: Path
    stages: list[StageStatus]
    holder: str = ""
    """"" or "a run holds WORK (pid N)"."""

    @property
    def exit_code(self) -> int:
        states = {s.state for s in self.stages}
        if "failed" in states:
            return EXIT_FAILED
        return EXIT_DONE if states <= {"done"} else EXIT_TODO

    def format(self) -> str:
        lines = [f"{self.work}" + (f"  ({self.holder})" if self.holder else "")]
        width = max(len(s.stage) for s in self.stages)
        for s in self.stages:
            counts = ", ".join(f"{n} {what}" for what, n in s.counts.items() if n)
            when = f"  [last run {s.finished_at}]" if s.finished_at else ""
            lines.append(f"  {s.stage:<{width}}  {s.state:<8}  {counts or '-'}{when}")
            lines += [f"  {'':<{width}}    {r}" for r in s.reasons]
        return "\n".join(lines)


def _shorten(text: str) -> str:
    """At most REASON_CHARS, cut in the middle: a reason names the unit first and what is
    wrong last (after a long file path), and both must stay readable."""
    if len(text) <= REASON_CHARS:
        return text
    head = (REASON_CHARS - 1) // 2
    return text[:head] + "…" + text[len(text) - (REASON_CHARS - 1 - head):]


def run_holder(work: WorkDir) -> str:
    """"a run holds WORK (pid N)" when the lock is taken now, else ""."""
    try:
        fd = os.open(work.lock_path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return ""
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return ""
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return f"a run holds WORK (pid {pid})" if pid.isdigit() else "a run holds WORK"
    finally:
        os.close(fd)


def _convert(hint, value):
    """A run.json value back into the config field's type (tuples, Paths, Selections)."""
    if value is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if hint is Selection or Selection in args:
        return Selection(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    if hint is Path or Path in args:
        return Path(value)
    if origin is tuple or (args and typing.get_origin(args[0]) is tuple):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_json(hint, value)
    return value


def config_from_json(config_type: type, data: dict):
    """The config dataclass that ``config_to_json`` wrote as ``data`` (unknown keys ignored:
    an older run.json; missing keys take the field default)."""
    hints = typing.get_type_hints(config_type)
    kwargs = {f.name: _convert(hints.get(f.name), data[f.name])
              for f in dataclasses.fields(config_type) if f.name in data}
    return config_type(**kwargs)


def stage_status(stage, entry: dict | None, work: WorkDir) -> StageStatus:
    """Plan ``stage`` with its last run's config (``entry`` of run.json) and classify the units."""
    from pipeline.orchestration.runner import unit_statuses

    if entry is None:
        return StageStatus(stage.name, "not run")
    finished_at = str(entry.get("finished_at", ""))
    try:
        config = config_from_json(stage.config_type, entry.get("config", {}))
        units = stage.plan(config, work)
        statuses = unit_statuses(stage, units, work)
    except (DataError, SelectionError, OSError, ValueError, TypeError) as e:
        return StageStatus(stage.name, "stale", {}, [_shorten(f"cannot plan with the last run's options: {e}")],
                           finished_at)
    try:
        failures = {f["unit"]: f.get("reason", "") for f in read_json(work.failures_json(stage.name))}
    except (FileNotFoundError, DataError, TypeError, KeyError):
        failures = {}
    counts = {"up to date": 0, "stale": 0, "missing": 0, "failed": 0}
    reasons = []
    for unit, status, _hash, _inputs in statuses:
        if status == "up to date":
            counts["up to date"] += 1
            continue
        if unit.key in failures:
            kind, why = "failed", failures[unit.key]
        elif status == "missing":
            kind, why = "missing", "never finished"
        else:
            kind, why = "stale", status.removeprefix("stale (").removesuffix(")")
        counts[kind] += 1
        if len(reasons) < REASONS_SHOWN:
            reasons.append(_shorten(f"{kind} {unit.key}: {why}"))
    hidden = sum(counts.values()) - counts["up to date"] - len(reasons)
    if hidden > 0:
        reasons.append(f"… and {hidden} more")
    state = next((k for k in ("failed", "stale", "missing") if counts[k]), "done")
    return StageStatus(stage.name, state, counts, reasons, finished_at)


def work_status(work: WorkDir) -> StatusReport:
    """The status of every registered stage in WORK (DataError when WORK is no directory)."""
    from pipeline.stages import get_stage, stage_names

    if not work.root.is_dir():
        raise DataError(f"{work.root}: no such work directory (--out)")
    try:
        run = read_json(work.run_json)
    except FileNotFoundError:
        run = {}
    entries = run.get("stages", {}) if isinstance(run, dict) else {}
    stages = [stage_status(get_stage(n), entries.get(n), work) for n in stage_names()]
    return StatusReport(work.root, stages, run_holder(work))
