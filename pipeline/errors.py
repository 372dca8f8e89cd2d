"""User-facing errors of the pipeline: a bad release, a bad selection, a busy work dir.

The CLI turns these (and the sibling packages' errors) into one-line messages; library
code raises them with the offending path in the message and never prints.
"""


class DataError(ValueError):
    """An input file of the release or work dir is missing or malformed (exit code 1)."""


class SelectionError(ValueError):
    """A selection string (--subjects, --frames, ...) cannot be parsed (exit code 2)."""


class WorkDirBusy(RuntimeError):
    """Another run holds the work directory's lock."""
