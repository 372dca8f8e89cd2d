"""The click machinery behind ``cli.py``: stage commands generated from the Stage records,
the shared options, and one-line user errors.

``cli.py`` only declares commands; everything that turns a ``Stage`` (pipeline/stages) into a
command, and a library error into click's one-line message, lives here.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path

import click

from fitting.errors import BodyModelError
from nvf.errors import NVFError
from pipeline.errors import DataError, SelectionError, WorkDirBusy
from pipeline.stages.base import BODY_MODEL_OPTION
from sampling.errors import ShardError

USER_ERRORS = (DataError, BodyModelError, ShardError, NVFError, WorkDirBusy, FileNotFoundError)



def user_errors(fn):
    """Turn the library's user-facing errors into click's one-line errors (exit 1 / 2)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SelectionError as e:
            raise click.UsageError(str(e)) from e
        except USER_ERRORS as e:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            raise click.ClickException(str(e)) from e

    return wrapper


ENV_PREFIX = "H36M_NVF"


class EnvOption(click.Option):
    """An option also read from ``H36M_NVF_<OPTION>`` (e.g. ``H36M_NVF_SUBJECTS``), as the README
    says; the command's own ``H36M_NVF_<COMMAND>_<OPTION>`` (click's) wins over it."""

    def resolve_envvar_value(self, ctx):
        value = super().resolve_envvar_value(ctx)
        if value is None and self.allow_from_autoenv and self.name:
            value = os.environ.get(f"{ENV_PREFIX}_{self.name.upper()}") or None
        return value


def selection_options(fn):
    """The selection options every stage accepts (see pipeline.selection)."""
    options = [
        click.option("--subjects", cls=EnvOption,
                     help="Comma-separated subjects, e.g. S1,S5 (case-insensitive; default: all)."),
        click.option("--actions", cls=EnvOption, help="Comma-separated actions or sequences, e.g. Walking,Eating_2."),
        click.option("--cameras", cls=EnvOption, help="Comma-separated camera ids, e.g. 54138969."),
        click.option("--frames", cls=EnvOption, help="Mocap frame range START:STOP (stop exclusive)."),
        click.option("--stride", cls=EnvOption, type=click.IntRange(min=1), default=None,
                     help="Keep every N-th frame (stage default when omitted)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_selection_from(kwargs: dict, default_stride: int = 1):
    """Pop the selection options out of a command's kwargs into a Selection."""
    from pipeline.selection import build_selection

    stride = kwargs.pop("stride", None)
    return build_selection(
        subjects=kwargs.pop("subjects", None),
        actions=kwargs.pop("actions", None),
        cameras=kwargs.pop("cameras", None),
        frames=kwargs.pop("frames", None),
        stride=default_stride if stride is None else stride,
    )


def body_model_option(fn):
    """``--body-model`` of the commands outside the stages (validate, audit, show-fit, spot-check),
    with the stages' help text."""
    return click.option("--body-model", default="synthetic", show_default=True, help=BODY_MODEL_OPTION.help)(fn)


def _orchestration_params(needs_release: bool) -> list[click.Parameter]:
    """Options every stage command takes (before the selection and the stage's own)."""
    return [
        EnvOption(["--h36m"], type=click.Path(exists=True, file_okay=False, path_type=Path),
                  help="Human3.6M release root (holds metadata.xml)"
                  + "; default: the last run's, from WORK/params.yaml."),
        EnvOption(["--out"], type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Work directory WORK."),
        EnvOption(["--scheduler"], help="Attach to a dask scheduler, e.g. tcp://host:8786 "
                     "(default: $H36M_NVF_SCHEDULER, else a local cluster)."),
        EnvOption(["--workers"], type=click.IntRange(min=1),
                     help="Local cluster worker processes [default: one per core]."),
        EnvOption(["--force"], is_flag=True, help="Recompute units that are up to date."),
        EnvOption(["--dry-run"], is_flag=True, help="List the units and why they would run; change nothing."),
        EnvOption(["--keep-going"], is_flag=True, help="Exit 0 even when units failed (they are still reported)."),
        EnvOption(["--no-progress"], is_flag=True,
                     help="No progress bar: a progress line every --progress-every seconds (for logs; "
                          "also the behaviour when stderr is not a terminal)."),
        EnvOption(["--progress-every"], type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Seconds between progress lines without a bar  [default: 30]."),
        EnvOption(["--wait"], is_flag=True,
                     help="Wait for the run holding WORK's lock to finish instead of refusing (says so)."),
    ]


def _decorator_params(decorator) -> list[click.Parameter]:
    """The click parameters a decorator such as selection_options would add, in order."""

    def target():
        pass

    decorator(target)
    return list(reversed(target.__click_params__))


def _stage_option_params(stages) -> list[click.Parameter]:
    """click options of the stages' StageOption lists (first stage wins a shared name)."""
    params, seen = [], set()
    for stage in stages:
        defaults = stage.config_defaults()
        for opt in stage.options:
            if opt.field in seen:
                continue
            seen.add(opt.field)
            default = defaults.get(opt.field)
            help_text = opt.help + (f"  [default: {default}]" if default is not None else "")
            if opt.type is bool:
                decl = f"{opt.flag}/--no-{opt.flag[2:]}"
                params.append(EnvOption([decl, opt.field], default=None, help=help_text))
            else:
                ptype = click.Path(path_type=Path) if opt.type is Path else opt.type
                params.append(EnvOption([opt.flag, opt.field], type=ptype, default=None, help=help_text))
    return params


class StageCommand(click.Command):
    """``h36m-nvf <stage>`` or, with ``stage=None``, ``h36m-nvf run``; options built on first use.

    The stage modules (pipeline/stages, registered in STAGE_MODULES) are imported only when
    the command is used or its help shown, so ``h36m-nvf --help`` stays fast.
    """

    def __init__(self, name: str, stage: str | None) -> None:
        super().__init__(name=name, callback=self._invoke)
        self.stage_name = stage
        self._built = False

    def _stages(self):
        from pipeline.stages import get_stage, stage_names

        return [get_stage(n) for n in ([self.stage_name] if self.stage_name else stage_names())]

    def _build(self) -> None:
        if self._built:
            return
        stages = self._stages()
        params = _orchestration_params(self.stage_name is not None and stages[0].needs_release)
        if self.stage_name is None:
            from pipeline.stages import stage_names

            names = click.Choice(stage_names())
            params += [click.Option(["--from", "first"], type=names, help="First stage [default: the first]."),
                       click.Option(["--to", "last"], type=names, help="Last stage [default: the last].")]
            self.help = ("Run the stages in order (" + " → ".join(s.name for s in stages)
                         + "), each with its options; a stage only redoes what is not up to date.")
        else:
            stage = stages[0]
            self.help = f"{stage.help}\n\n" + (stage.stride_help or f"Default --stride: {stage.default_stride}.")
        self.help += ("\n\nOptions not given take the last run's values from WORK/params.yaml (the "
                      "defaults below otherwise); a flag given here overrides one and is recorded there.")
        self.params = params + _decorator_params(selection_options) + _stage_option_params(stages)
        self._built = True

    def get_params(self, ctx):
        self._build()
        return super().get_params(ctx)

    def get_short_help_str(self, limit: int = 45) -> str:
        try:
            self._build()
        except Exception:  # a broken stage module must not break `h36m-nvf --help`
            return f"Stage {self.stage_name or 'chain'} (cannot be loaded)."
        return super().get_short_help_str(limit)

    def format_help(self, ctx, formatter) -> None:
        self._build()
        super().format_help(ctx, formatter)

    def _invoke(self, **kwargs) -> None:
        from pipeline.stages import stage_range

        if self.stage_name is None:
            try:
                names = stage_range(kwargs.pop("first"), kwargs.pop("last"))
            except KeyError as e:
                raise click.UsageError(e.args[0]) from e
        else:
            names = [self.stage_name]
        run_stage_command(names, kwargs)


def quiet_native_libraries() -> None:
    """No raw OpenCV / FFmpeg warnings in this process (set before cv2 loads; a user's own
    setting wins): the code checks what they warn about and says it in one line."""
    import os

    from pipeline.orchestration.runner import QUIET_NATIVE_ENV

    for key, value in QUIET_NATIVE_ENV.items():
        os.environ.setdefault(key, value)


def quiet_dask_logs() -> None:
    """Without -v, dask's INFO lines (scheduler and nanny start/stop) would bury the summaries."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        import distributed  # noqa: F401  (sets its loggers to INFO on import)

        logging.getLogger("distributed").setLevel(logging.WARNING)


INTERRUPTED_EXIT = 130
"""Exit code after Ctrl-C (128 + SIGINT, as shells report it)."""


def interrupted_line(error: KeyboardInterrupt) -> str:
    """One line after Ctrl-C: which units of the interrupted stage finished, and how to resume."""
    report = error.settle() if hasattr(error, "settle") else None
    if report is None:
        return "interrupted; finished units are kept: rerun the same command to resume"
    kept = [o.key for o in report.outcomes if o.result == "done"]
    left = [o.key for o in report.outcomes if o.result == "interrupted"]
    names = ", ".join(kept[:3]) + (f", … ({len(kept) - 3} more)" if len(kept) > 3 else "")
    return (f"interrupted during {report.stage}: {len(kept)} units finished this run and are kept"
            + (f" ({names})" if kept else "") + f", {len(left)} not finished; "
            "rerun the same command to resume with those")


def run_overview(reports, names: list[str]) -> list[str]:
    """The closing summary of ``run``: one line per stage, then what the selection lacked."""
    lines = ["run summary:"]
    for r in reports:
        lines.append(f"  {r.stage:<8} {len(r.done)} done, {len(r.skipped)} up to date, "
                     f"{len(r.failed)} failed [{r.seconds:.1f} s]")
        lines += ["  " + line for line in r.format_results()]
    ran = {r.stage for r in reports}
    lines += [f"  {n:<8} not run (an earlier stage failed)" for n in names if n not in ran]
    sample = next((r for r in reports if r.stage == "sample"), None)
    if sample is not None and not any("train" in split for split in sample.results.get("splits", {})):
        lines.append("  note: the selection has no training subject: no train shards were written")
    return lines


@user_errors
def run_stage_command(names: list[str], kwargs: dict) -> None:
    from pipeline.orchestration.api import run_stages

    stride = kwargs.pop("stride", None)
    selection = build_selection_from(kwargs)
    common = {k: kwargs.pop(k) for k in ("scheduler", "workers", "force", "dry_run", "keep_going", "wait")}
    every = kwargs.pop("progress_every", None)
    no_bar = kwargs.pop("no_progress")
    progress = (every if every is not None else False) if no_bar or every is not None else True
    out, h36m = kwargs.pop("out"), kwargs.pop("h36m", None)
    if not common["dry_run"]:
        quiet_dask_logs()
    ctx = click.get_current_context()
    try:
        command = "run" if len(names) > 1 else names[0]
        origin = "{flag} on `h36m-nvf " + command + "`, " + time.strftime("%Y-%m-%d %H:%M")
        reports = run_stages(names, out, h36m=h36m, selection=selection, stride=stride,
                             options=kwargs, progress=progress, echo=click.echo, reuse_params=True,
                             origin=origin, **common)
    except ConnectionError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt as e:
        click.echo(interrupted_line(e), err=True)
        ctx.exit(INTERRUPTED_EXIT)
    if len(names) > 1 and not common["dry_run"]:
        click.echo("\n".join(run_overview(reports, names)))
    if any(r.failed for r in reports) and not common["keep_going"]:
        ctx.exit(1)


def register_stage_commands(group: click.Group) -> None:
    """Add ``h36m-nvf <stage>`` for every registered stage and ``h36m-nvf run`` to ``group``."""
    from pipeline.stages import stage_names

    for name in stage_names():
        group.add_command(StageCommand(name, name))
    group.add_command(StageCommand("run", None))
