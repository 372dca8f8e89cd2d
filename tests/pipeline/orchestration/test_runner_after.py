"""Units that run after others of the same stage (``Unit.after``), on a real LocalCluster.

A toy two-level stage like the fit stage: a "base" unit writes a file; "leaf" units read it
and run after it. Checked: order, rerun propagation, failure propagation, and done-records
whose input fingerprints are of the file the base wrote in the same run.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cloudpickle

from pipeline.errors import DataError
from pipeline.orchestration.runner import run_stage
from pipeline.selection import Selection
from pipeline.stages.base import Stage, Unit
from pipeline.store import WorkDir, atomic_write_json, read_done_record

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class TwoLevelConfig:
    source: Path
    """Input of the base unit."""
    selection: Selection = Selection()
    """Unused."""
    leaves: int = 3
    """Leaf units."""
    fail: tuple[str, ...] = ()
    """Unit keys that raise DataError."""
    extra: dict = field(default_factory=dict)
    """Unused."""


def _base(work: WorkDir) -> Path:
    return work.root / "two" / "base.json"


def plan(config: TwoLevelConfig, work: WorkDir) -> list[Unit]:
    units = [Unit(key="two/base", outputs=(_base(work),), inputs={"source": config.source},
                  payload={"kind": "base", "work": str(work.root)})]
    units += [Unit(key=f"two/leaf{i}", outputs=(work.root / "two" / f"leaf{i}.json",),
                   inputs={"base": _base(work)}, payload={"kind": "leaf", "i": i, "work": str(work.root)},
                   after=("two/base",)) for i in range(config.leaves)]
    return units


def run_unit(unit: Unit, config: TwoLevelConfig) -> dict:
    if unit.key in config.fail:
        raise DataError(f"unit {unit.key} cannot run")
    now = time.time()
    if unit.payload["kind"] == "base":
        time.sleep(0.3)  # leaves started too early would find no (or an old) base file
        atomic_write_json(unit.outputs[0], {"text": Path(config.source).read_text(), "written": now})
        return {"written": now}
    base = json.loads(_base(WorkDir(Path(unit.payload["work"]))).read_text())
    atomic_write_json(unit.outputs[0], {"text": base["text"], "base_written": base["written"], "started": now})
    return {"started": now}


TWO = Stage(name="two", version="1", help="two levels", config_type=TwoLevelConfig, plan=plan, run_unit=run_unit)


def _setup(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("first")
    return WorkDir(tmp_path / "work"), source


def _results(report):
    return {o.key: o.result for o in report.outcomes}


def test_leaves_run_after_their_base_and_record_its_new_fingerprint(tmp_path, dask_client):
    work, source = _setup(tmp_path)
    config = TwoLevelConfig(source=source)
    report = run_stage(TWO, config, work, dask_client, progress=False)
    assert set(_results(report).values()) == {"done"}
    base_written = json.loads(_base(work).read_text())["written"]
    for i in range(3):
        leaf = json.loads((work.root / "two" / f"leaf{i}.json").read_text())
        assert leaf["text"] == "first" and leaf["base_written"] == base_written
        assert leaf["started"] >= base_written
    # the leaves' done-records hold the fingerprint of the base file as written: all up to date
    again = run_stage(TWO, config, work, dask_client, progress=False)
    assert set(_results(again).values()) == {"skipped"}
    record = read_done_record(work, "two", "two/leaf0")
    assert record["inputs"]["base"]["sha256"]


def test_a_rerun_base_reruns_its_leaves(tmp_path, dask_client):
    work, source = _setup(tmp_path)
    config = TwoLevelConfig(source=source)
    run_stage(TWO, config, work, dask_client, progress=False)
    source.write_text("second")
    dry = run_stage(TWO, config, work, None, progress=False, dry_run=True)
    statuses = {o.key: o.status for o in dry.outcomes}
    assert statuses["two/base"].startswith("stale (input changed")
    assert statuses["two/leaf1"] == "stale (runs after two/base, which reruns)"
    report = run_stage(TWO, config, work, dask_client, progress=False)
    assert set(_results(report).values()) == {"done"}
    assert json.loads((work.root / "two" / "leaf2.json").read_text())["text"] == "second"
    assert set(_results(run_stage(TWO, config, work, dask_client, progress=False)).values()) == {"skipped"}


def test_a_failed_base_fails_its_leaves_without_running_them(tmp_path, dask_client):
    work, source = _setup(tmp_path)
    report = run_stage(TWO, TwoLevelConfig(source=source, fail=("two/base",)), work, dask_client, progress=False)
    assert set(_results(report).values()) == {"failed"}
    reasons = {o.key: o.reason for o in report.failed}
    assert reasons["two/leaf0"].startswith("prerequisite two/base failed: DataError: unit two/base cannot run")
    assert not (work.root / "two" / "leaf0.json").exists()
    # a failed leaf does not hold back the others
    report = run_stage(TWO, TwoLevelConfig(source=source, fail=("two/leaf1",)), work, dask_client, progress=False)
    assert _results(report) == {"two/base": "done", "two/leaf0": "done", "two/leaf1": "failed", "two/leaf2": "done"}
