"""The ``h36m-nvf`` command line: parse options, build a config, call the library.

Nothing here computes anything. Library errors that are the user's to fix (a bad file, a
bad selection, a busy work dir) become one-line messages; ``-v`` shows tracebacks.
"""

from __future__ import annotations

import functools
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

import click

from fitting.errors import BodyModelError
from pipeline.errors import DataError, SelectionError, WorkDirBusy
from sampling.errors import ShardError

USER_ERRORS = (DataError, BodyModelError, ShardError, WorkDirBusy, FileNotFoundError)


def _version() -> str:
    try:
        return version("h36m-nvf")
    except PackageNotFoundError:
        return "0+unknown"


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


def selection_options(fn):
    """The selection options every stage accepts (see pipeline.selection)."""
    options = [
        click.option("--subjects", help="Comma-separated subjects, e.g. S1,S5 (default: all)."),
        click.option("--actions", help="Comma-separated actions or sequences, e.g. Walking,Eating_2."),
        click.option("--cameras", help="Comma-separated camera ids, e.g. 54138969."),
        click.option("--frames", help="Mocap frame range START:STOP (stop exclusive)."),
        click.option("--stride", type=click.IntRange(min=1), default=None,
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


@click.group(context_settings={"auto_envvar_prefix": "H36M_NVF", "help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="h36m-nvf")
@click.option("-v", "--verbose", count=True, help="More logging; -v also shows tracebacks.")
def main(verbose: int) -> None:
    """Human3.6M → SMPL-X pseudo-ground truth → NVF training shards."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# --- body model (fitting/synthetic_model.py) ---

# --- synthetic release and inspection (pipeline/synthetic.py, pipeline/h36m.py) ---

# --- stages and orchestration (pipeline/runner.py, pipeline/stages/extract.py) ---

# --- fitting and audit (pipeline/stages/fit.py, pipeline/audit.py) ---

# --- sampling and validation (pipeline/stages/sample.py, sampling/) ---

# --- H3WB (pipeline/stages/h3wb.py) ---

# --- NVF trainer (nvf/) ---

# --- demo and spot-check ---


if __name__ == "__main__":
    main()
