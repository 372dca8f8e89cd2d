"""The stage protocol: what every stage (extract, fit, sample, h3wb) provides to the runner.

A stage is a ``Stage`` record of plain module-level functions (picklable by reference, so
dask workers import them)::

    plan(config, work: WorkDir) -> list[Unit]      # on the client; cheap; reads WORK / release
    run_unit(unit, config) -> dict                 # on a worker; pure; writes unit.outputs

``run_unit`` writes every path in ``unit.outputs`` atomically (``pipeline.store.atomic_path``
/ ``atomic_write_*``: a temporary name in the same folder, then ``os.replace``) and returns a
small JSON-able dict of output info (counts, metrics). It raises on bad input — preferably
``DataError`` with a one-line message naming the file; the runner records the failure and goes
on. Stages depend on each other only through files in WORK: a later stage's ``plan`` reads
what an earlier stage wrote and lists those files in ``Unit.inputs`` so that a change
upstream makes its units stale.

The runner (``pipeline.orchestration.runner.run_stage``) skips units whose done-record matches (stage
version, ``Unit.params`` hash, input fingerprints, output sizes), submits the rest with
``Unit.resources`` (``{"GPU": 1}`` for GPU units), writes the done-records, shows progress
and collects failures.

Adding a stage (e.g. fit) is one small step:

1. In ``pipeline/stages/fit.py`` define a frozen config dataclass whose fields are named like
   the command-line options (``h36m``, ``selection`` and the stage's own, each with a
   docstring), ``plan`` and ``run_unit``, and::

       STAGE = Stage(
           name="fit", version="1", help="Fit SMPL-X to the mocap joints.",
           config_type=FitConfig, plan=plan, run_unit=run_unit, default_stride=1,
           options=(StageOption("iterations", int, "Optimiser iterations per frame."),
                    StageOption("body_model", str, "SMPL-X file or folder, or 'synthetic'.")),
       )

   Keep the module's top-level imports light (numpy, dataclasses): import torch, cv2 etc.
   inside the functions so ``h36m-nvf --help`` stays fast.
2. Add one line ``"fit": "pipeline.stages.fit"`` to ``STAGE_MODULES`` in
   ``pipeline/stages/__init__.py`` (its position there is the order ``h36m-nvf run`` chains).

cli.py then offers ``h36m-nvf fit`` with the common options (selection, --scheduler,
--workers, --force, --dry-run, --keep-going, --no-progress, --wait) plus ``--iterations`` and
``--body-model``, and ``h36m-nvf run`` passes them on; nothing else to edit. Option defaults
come from the config dataclass's field defaults. Bump ``version`` when the outputs of the same
options change (it is part of every unit's config hash).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import SelectionError
from pipeline.selection import Selection


@dataclass(frozen=True)
class StageConfig:
    """The fields every stage config has; the runner sets them, not a stage option.

    A stage's config subclasses this (frozen, a docstring per field) and adds its options.
    """

    h36m: Path | None = None
    """Release root (read only by stages with ``needs_release``)."""
    selection: Selection = field(default_factory=Selection)
    """Subjects, actions, cameras, frame range and stride the stage works on."""


@dataclass(frozen=True)
class Unit:
    """The smallest piece of work with its own outputs (and done-record)."""

    key: str
    """Unique within the stage, "/"-separated, e.g. "S1/Walking_1/54138969"; names the done-record."""
    outputs: tuple[Path, ...]
    """Every file the unit writes (absolute paths inside WORK)."""
    inputs: Mapping[str, Path] = field(default_factory=dict)
    """Input files by role ("video", "mocap", "metadata", …); their fingerprints decide staleness."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """JSON-able options that affect the outputs; hashed (with the stage version) into the config hash."""
    payload: Any = None
    """Anything picklable that ``run_unit`` needs (e.g. the Sequence record and camera id)."""
    resources: Mapping[str, float] | None = None
    """dask resources the unit needs on its worker, e.g. {"GPU": 1}; None = any worker."""
    after: tuple[str, ...] = ()
    """Keys of earlier units of the same plan that must succeed before this one runs (their
    outputs may be among its inputs); when one of them reruns, this one reruns too."""


@dataclass(frozen=True)
class StageOption:
    """One stage-specific command-line option, as data (cli.py turns it into a click option)."""

    field: str
    """Config field it sets; the flag is ``--`` + field with "_" → "-"."""
    type: type
    """int, float, str, bool (a --flag/--no-flag pair) or pathlib.Path."""
    help: str
    """One line of help text."""

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


BODY_MODEL_OPTION = StageOption("body_model", str, "SMPL-X file or folder, or 'synthetic'.")
"""``--body-model``, shared by the stages that pose the body (fit, sample, h3wb)."""


@dataclass(frozen=True)
class Stage:
    """A named stage: config type, plan, unit function and its command-line options."""

    name: str
    """Command name and WORK sub-folder of its records, e.g. "extract"."""
    version: str
    """Part of every unit's config hash: bump it when the same options give different outputs."""
    help: str
    """One line for ``h36m-nvf --help``."""
    config_type: type
    """Frozen dataclass; fields named like the options (plus ``h36m``, ``selection``)."""
    plan: Callable[[Any, Any], list[Unit]]
    """plan(config, work: WorkDir) -> list[Unit]."""
    run_unit: Callable[[Unit, Any], dict]
    """run_unit(unit, config) -> dict; runs on a worker, writes unit.outputs atomically."""
    options: tuple[StageOption, ...] = ()
    """The stage's own command-line options."""
    default_stride: int | None = 1
    """--stride when the user gives none (None: the stage picks per part, see stride_help)."""
    stride_fields: tuple[str, ...] = ()
    """Options that refine --stride (sample's train_stride, test_stride): a --stride given on
    the command line replaces their values from the params file."""
    stride_help: str = ""
    """What --stride means for this stage when it is not a plain default (shown in --help)."""
    needs_release: bool = False
    """True when the stage reads the release (``--h36m ROOT`` required)."""
    prepare: Callable[[Any, Any, list[Unit]], None] | None = None
    """prepare(config, work, units_to_run) on the client just before those units run (not
    with --dry-run, not when all are up to date), e.g. to drop them from a shard index."""
    finalize: Callable[[Any, Any, list[Unit]], None] | None = None
    """finalize(config, work, units) on the client after the units ran (also when all were
    up to date or some failed), for outputs that summarise all units, e.g. a shard index."""

    warm_up: Callable[[Any, Unit], None] | None = None
    """warm_up(config, unit) once on each worker that can run the units, with the first unit
    to run (e.g. to load a model the units share into a per-process cache), queued after the
    units others wait for and before the rest: a worker that is idle while a lone first unit
    runs is ready when its turn comes."""

    summary: Callable[[Any, Any], list[str]] | None = None
    """summary(config, work) -> lines printed after the stage's summary (e.g. frames and
    samples per split part), from what WORK holds after the run."""

    def config_defaults(self) -> dict[str, Any]:
        """Field name → default of the config dataclass (fields without a default omitted)."""
        out = {}
        for f in dataclasses.fields(self.config_type):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    def option_fields(self) -> frozenset[str]:
        """Config fields an option may set (every field but ``h36m`` and ``selection``)."""
        return frozenset(f.name for f in dataclasses.fields(self.config_type)) - {
            f.name for f in dataclasses.fields(StageConfig)}

    def make_config(self, *, h36m: Path | None, selection: Selection, options: Mapping[str, Any]):
        """Build the config from the common values and the options (None = field default).

        An option the config does not have is a SelectionError (a typo must not vanish);
        ``run_stages`` gives each stage only the options it has.
        """
        unknown = sorted(k for k, v in options.items() if v is not None and k not in self.option_fields())
        if unknown:
            raise SelectionError(f"{self.name}: unknown option(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(self.option_fields()))}")
        kwargs = {k: v for k, v in options.items() if v is not None}
        return self.config_type(h36m=h36m, selection=selection, **kwargs)


def config_to_json(config) -> dict:
    """A config dataclass as JSON-able data (Paths as strings, Selection via to_json)."""

    def convert(v):
        if isinstance(v, Selection):
            return v.to_json()
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {str(k): convert(x) for k, x in v.items()}
        return v

    return convert(config)
