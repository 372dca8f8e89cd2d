"""pipeline.orchestration.runner with a toy stage on a real 2-process LocalCluster."""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cloudpickle
import pytest

from pipeline.errors import DataError, SelectionError
from pipeline.orchestration.runner import _give_gpu, run_stage
from pipeline.selection import Selection
from pipeline.stages import stage_names, stage_range
from pipeline.stages.base import Stage, StageConfig, StageOption, Unit
from pipeline.store import WorkDir, atomic_write_json, read_done_record

# workers cannot import this test module by name: ship its functions by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class ToyConfig(StageConfig):
    source: Path | None = None
    """Input file; every unit reads it."""
    factor: int = 2
    """Multiplies the unit index."""
    count: int = 4
    """Number of units."""
    fail: tuple[str, ...] = ()
    """Unit keys that raise DataError."""
    die_marker: str | None = None
    """When set and missing, the first unit creates it and SIGKILLs its own worker."""
    gpu: bool = False
    """Units ask for resources={"GPU": 1}."""
    extra: dict = field(default_factory=dict)
    """Unused."""


def toy_plan(config: ToyConfig, work: WorkDir) -> list[Unit]:
    return [
        Unit(key=f"toy/{i}", outputs=(work.root / "toy" / "out" / f"{i}.json",),
             inputs={"source": config.source}, params={"factor": config.factor}, payload=i,
             resources={"GPU": 1} if config.gpu else None)
        for i in range(config.count)
    ]


def toy_run_unit(unit: Unit, config: ToyConfig) -> dict:
    if config.die_marker and unit.payload == 0 and not os.path.exists(config.die_marker):
        Path(config.die_marker).write_text("died once")
        os.kill(os.getpid(), signal.SIGKILL)
    if unit.key in config.fail:
        raise DataError(f"{config.source}: unit {unit.key} cannot be read\nsecond line")
    text = Path(config.source).read_text()
    atomic_write_json(unit.outputs[0], {"value": unit.payload * config.factor, "text": text})
    return {"value": unit.payload * config.factor, **({"pid": os.getpid()} if config.gpu else {})}


TOY = Stage(name="toy", version="1", help="toy", config_type=ToyConfig, plan=toy_plan,
            run_unit=toy_run_unit, options=(StageOption("factor", int, "Multiplier."),))


@pytest.fixture
def toy(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("hello")
    return WorkDir(tmp_path / "work"), source


def run(config, work, client, **kw):
    return run_stage(TOY, config, work, client, progress=False, **kw)


def test_runs_all_then_skips_all(toy, dask_client):
    work, source = toy
    report = run(ToyConfig(source=source), work, dask_client)
    assert [o.result for o in report.outcomes] == ["done"] * 4
    for i in range(4):
        data = json.loads((work.root / f"toy/out/{i}.json").read_text())
        assert data == {"value": 2 * i, "text": "hello"}
        rec = read_done_record(work, "toy", f"toy/{i}")
        assert rec["unit"] == f"toy/{i}" and rec["info"] == {"value": 2 * i}
        assert set(rec["outputs"]) == {f"toy/out/{i}.json"}
    assert json.loads(work.failures_json("toy").read_text()) == []
    run_json = json.loads(work.run_json.read_text())
    assert run_json["stages"]["toy"]["summary"]["done"] == 4
    assert run_json["stages"]["toy"]["config"]["factor"] == 2

    mtimes = {p: p.stat().st_mtime_ns for p in (work.root / "toy").rglob("*.json")}
    again = run(ToyConfig(source=source), work, dask_client)
    assert [o.result for o in again.outcomes] == ["skipped"] * 4
    assert "4 units: 0 done, 4 skipped (up to date), 0 failed" in again.format()
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items() if "failures" not in p.name)


def test_dry_run_lists_reasons_and_writes_nothing(toy, dask_client):
    work, source = toy
    dry = run(ToyConfig(source=source), work, None, dry_run=True)
    assert [o.result for o in dry.outcomes] == ["would run"] * 4
    assert not work.root.exists()
    text = dry.format()
    assert text.splitlines()[0] == "toy: 4 units, 4 would run, 0 up to date"
    assert "  run   toy/0  missing" in text

    run(ToyConfig(source=source), work, dask_client)
    (work.root / "toy/out/1.json").unlink()
    dry = run(ToyConfig(source=source, factor=3), work, None, dry_run=True)
    assert all(o.status.startswith("stale (options changed: factor 2→3") for o in dry.outcomes)
    dry = run(ToyConfig(source=source), work, None, dry_run=True)
    assert [o.status for o in dry.outcomes] == [
        "up to date", "stale (output missing: toy/out/1.json)", "up to date", "up to date"]
    assert "  skip  toy/0  up to date" in dry.format()
    dry = run(ToyConfig(source=source), work, None, dry_run=True, force=True)
    assert dry.outcomes[0].status == "forced"


def test_stale_units_rerun_only(toy, dask_client):
    work, source = toy
    run(ToyConfig(source=source), work, dask_client)
    (work.root / "toy/out/2.json").write_text("{}")  # corrupted by hand (other size)
    report = run(ToyConfig(source=source), work, dask_client)
    assert [o.result for o in report.outcomes] == ["skipped", "skipped", "done", "skipped"]
    source.write_text("world")
    report = run(ToyConfig(source=source), work, dask_client)
    assert all(o.status.startswith("stale (input changed:") for o in report.outcomes)
    assert json.loads((work.root / "toy/out/0.json").read_text())["text"] == "world"


def test_failures_are_recorded_and_others_complete(toy, dask_client):
    work, source = toy
    report = run(ToyConfig(source=source, fail=("toy/1",)), work, dask_client)
    assert [o.key for o in report.failed] == ["toy/1"]
    reason = report.failed[0].reason
    assert reason == f"DataError: {source}: unit toy/1 cannot be read"
    assert len(report.done) == 3
    assert json.loads(work.failures_json("toy").read_text()) == [{"unit": "toy/1", "reason": reason}]
    assert read_done_record(work, "toy", "toy/1") is None
    assert f"FAILED  toy/1  {reason}" in report.format()
    # fixed: only the failed unit runs
    report = run(ToyConfig(source=source), work, dask_client)
    assert [o.result for o in report.outcomes] == ["skipped", "done", "skipped", "skipped"]
    assert json.loads(work.failures_json("toy").read_text()) == []


def test_worker_killed_mid_unit_does_not_fail_the_run(toy, dask_client, tmp_path):
    work, source = toy
    marker = tmp_path / "died"
    report = run(ToyConfig(source=source, die_marker=str(marker)), work, dask_client)
    assert marker.exists()  # a worker really died inside unit toy/0
    assert [o.result for o in report.outcomes] == ["done"] * 4
    assert json.loads((work.root / "toy/out/0.json").read_text())["value"] == 0
    dask_client.wait_for_workers(2, timeout=30)


def test_gpu_units_need_a_worker_with_the_gpu_resource(toy, dask_client):
    work, source = toy
    report = run(ToyConfig(source=source, gpu=True, count=2), work, dask_client)
    assert report.failed[0].reason == "no dask worker offers resources {'GPU': 1}"
    # what get_client does for each CUDA device: give one worker {"GPU": 1}
    worker = sorted(dask_client.scheduler_info(n_workers=-1)["workers"])[0]
    dask_client.run(_give_gpu, workers=[worker])
    try:
        report = run(ToyConfig(source=source, gpu=True, count=2), work, dask_client)
        assert [o.result for o in report.outcomes] == ["done", "done"]
        gpu_pid = dask_client.run(os.getpid, workers=[worker])[worker]
        assert [o.info["pid"] for o in report.outcomes] == [gpu_pid, gpu_pid]
    finally:
        dask_client.run(_take_gpu, workers=[worker])


async def _take_gpu(dask_worker) -> None:
    await dask_worker.set_resources(GPU=0)


def test_make_config_ignores_none_and_rejects_foreign_options(toy):
    _, source = toy
    config = TOY.make_config(h36m=None, selection=Selection(stride=5),
                             options={"source": source, "factor": None})
    assert config.factor == 2 and config.selection.stride == 5 and config.source == source
    assert TOY.options[0].flag == "--factor"
    with pytest.raises(SelectionError, match="unknown option.*jpeg_quality"):  # a typo must not vanish
        TOY.make_config(h36m=None, selection=Selection(), options={"source": source, "jpeg_quality": 90})


def test_stage_range():
    assert stage_range() == stage_names() and stage_names()[0] == "extract"
    assert stage_range("extract", "extract") == ["extract"]
    assert stage_range(stage_names()[-1]) == stage_names()[-1:]
    with pytest.raises(KeyError, match="unknown stage 'nope'"):
        stage_range("nope")
