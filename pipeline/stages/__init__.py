"""The stage registry: one module per stage, each defining ``STAGE`` (see ``base.py``).

``STAGE_MODULES`` order is the order ``h36m-nvf run`` chains the stages. Registering a
stage is one line here (module imported lazily, so ``--help`` stays fast).
"""

from __future__ import annotations

import importlib

STAGE_MODULES: dict[str, str] = {
    "extract": "pipeline.stages.extract",
    "fit": "pipeline.stages.fit",
    "sample": "pipeline.stages.sample",
    "h3wb": "pipeline.stages.h3wb",  # after fit (reads WORK/fit); keep it after "fit" when that lands
}
"""Stage name → module defining ``STAGE``, in pipeline order."""


def stage_names() -> list[str]:
    """Registered stage names in pipeline order."""
    return list(STAGE_MODULES)


def get_stage(name: str):
    """The registered ``Stage`` called ``name`` (KeyError with the known names otherwise)."""
    try:
        module = STAGE_MODULES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join(STAGE_MODULES)}") from None
    return importlib.import_module(module).STAGE


def stage_range(first: str | None = None, last: str | None = None) -> list[str]:
    """The registered names from ``first`` to ``last`` inclusive (None = from the start / to the end)."""
    names = stage_names()
    for n in (first, last):
        if n is not None and n not in names:
            raise KeyError(f"unknown stage {n!r}; known: {', '.join(names)}")
    i = names.index(first) if first else 0
    j = names.index(last) + 1 if last else len(names)
    if i >= j:
        raise KeyError(f"--from {first} comes after --to {last}")
    return names[i:j]
