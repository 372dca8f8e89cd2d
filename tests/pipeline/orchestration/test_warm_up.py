"""A stage's ``warm_up`` runs once on every worker (real LocalCluster), after the units others
wait for and before the rest: the worker that is idle while a lone first unit runs is warm when
its turn comes, and the first unit does not wait for it."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

import cloudpickle

from pipeline.errors import DataError
from pipeline.orchestration.runner import close_client, get_client, run_stage
from pipeline.selection import Selection
from pipeline.stages.base import Stage, Unit
from pipeline.store import WorkDir, atomic_write_json

cloudpickle.register_pickle_by_value(sys.modules[__name__])

_WARM = "H36M_NVF_TEST_WARM_UP"
"""Set in a worker process by the warm-up (per-process state, like the fitter cache)."""


@dataclass(frozen=True)
class WarmConfig:
    leaves: int = 5
    """Units that run after the first one."""
    fail_warm_up: bool = False
    """The warm-up raises."""
    selection: Selection = Selection()
    """Unused."""


def plan(config: WarmConfig, work: WorkDir) -> list[Unit]:
    units = [Unit(key="w/first", outputs=(work.root / "out" / "first.json",))]
    return units + [Unit(key=f"w/{i}", outputs=(work.root / "out" / f"{i}.json",), after=("w/first",))
                    for i in range(config.leaves)]


def warm_up(config: WarmConfig, unit: Unit) -> None:
    if config.fail_warm_up:
        raise DataError("warm-up cannot run")
    time.sleep(0.5)
    os.environ[_WARM] = os.environ.get(_WARM, "") + f"{unit.key},"


def run_unit(unit: Unit, config: WarmConfig) -> dict:
    time.sleep(0.3 if unit.key == "w/first" else 0.05)
    atomic_write_json(unit.outputs[0], {"pid": os.getpid(), "warm": os.environ.get(_WARM, "")})
    return {}


STAGE = Stage(name="w", version="1", help="warm-up", config_type=WarmConfig, plan=plan, run_unit=run_unit,
              warm_up=warm_up)


def _seen(work: WorkDir) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((work.root / "out").glob("*.json"))]


def test_every_worker_warms_up_once_after_the_awaited_unit_and_before_the_others(tmp_path):
    work = WorkDir(tmp_path / "work")
    client = get_client(workers=2)
    try:
        report = run_stage(STAGE, WarmConfig(), work, client, progress=False)
        pids = set(client.run(os.getpid).values())
        warmed = client.run(lambda: os.environ.get(_WARM, ""))
    finally:
        close_client(client)
    assert {o.result for o in report.outcomes} == {"done"}
    seen = {p.stem: json.loads(p.read_text()) for p in (work.root / "out").glob("*.json")}
    assert len(seen) == 6 and {s["pid"] for s in seen.values()} <= pids
    assert set(warmed.values()) == {"w/first,"}  # every worker warmed up, once
    # the awaited first unit starts at once (its worker warms up after it); the others after
    assert seen["first"]["warm"] == ""
    assert {s["warm"] for k, s in seen.items() if k != "first"} == {"w/first,"}


def test_a_failing_warm_up_leaves_the_units_to_run(tmp_path):
    work = WorkDir(tmp_path / "work")
    client = get_client(workers=2)
    try:
        report = run_stage(STAGE, WarmConfig(leaves=2, fail_warm_up=True), work, client, progress=False)
    finally:
        close_client(client)
    assert {o.result for o in report.outcomes} == {"done"}
    assert {s["warm"] for s in _seen(work)} == {""}
