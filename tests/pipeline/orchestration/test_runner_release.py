"""Units that run after another start on idle workers as soon as it ends (real LocalCluster):
the runner submits them then, with its result as a plain value, so no worker holds a dask
dependency of theirs that would draw them all to itself."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

import cloudpickle

from pipeline.orchestration.runner import run_stage
from pipeline.selection import Selection
from pipeline.stages.base import Stage, Unit
from pipeline.store import WorkDir, atomic_write_json

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class ChainConfig:
    leaf_s: float = 1.5
    """Seconds each leaf unit works."""
    selection: Selection = Selection()
    """Unused."""


def plan(config: ChainConfig, work: WorkDir) -> list[Unit]:
    out = work.root / "out"
    return [Unit(key="c/first", outputs=(out / "first.json",)),
            Unit(key="c/a", outputs=(out / "a.json",), after=("c/first",)),
            Unit(key="c/b", outputs=(out / "b.json",), after=("c/first",)),
            Unit(key="c/last", outputs=(out / "last.json",), after=("c/a",))]  # a chain of three


def run_unit(unit: Unit, config: ChainConfig) -> dict:
    start = time.time()
    time.sleep(config.leaf_s if unit.key in ("c/a", "c/b") else 0.2)
    atomic_write_json(unit.outputs[0], {"pid": os.getpid(), "start": start, "end": time.time()})
    return {}


STAGE = Stage(name="c", version="1", help="chain", config_type=ChainConfig, plan=plan, run_unit=run_unit)


def test_units_after_one_start_together_on_the_idle_workers(tmp_path, dask_client):
    work = WorkDir(tmp_path / "work")
    report = run_stage(STAGE, ChainConfig(), work, dask_client, progress=False)
    assert {o.result for o in report.outcomes} == {"done"}
    seen = {p.stem: json.loads(p.read_text()) for p in (work.root / "out").glob("*.json")}
    assert seen["a"]["pid"] != seen["b"]["pid"]
    assert abs(seen["a"]["start"] - seen["b"]["start"]) < 0.5
    assert min(seen["a"]["start"], seen["b"]["start"]) >= seen["first"]["end"]
    assert seen["last"]["start"] >= seen["a"]["end"]  # held until its own prerequisite ended
