"""The progress line's arithmetic (rate, ETA, estimated totals) and the closing summary of ``run``."""

from __future__ import annotations

import io

from pipeline.orchestration.commands import run_overview
from pipeline.orchestration.progress import (
    ProgressBoard,
    ProgressMode,
    format_duration,
    progress_mode,
)
from pipeline.orchestration.runner import StageReport, UnitOutcome
from pipeline.orchestration.summaries import format_results


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_and_eta_from_the_items_inside_units():
    clock = Clock()
    out = io.StringIO()
    board = ProgressBoard("sample", total_units=5, skipped=1, mode=ProgressMode(bar=False, interval=10.0),
                          stream=out, clock=clock)
    board.item_report("a", 0, 100, "samples")
    clock.now += 10.0
    board.item_report("a", 30, 100, "samples")
    board.item_report("b", 20, 100, "samples")
    # 4 units to run, 2 reported with 100 each: 400 estimated, 50 done in 10 s -> 5/s, 350 left -> 70 s
    text = board.text()
    assert "sample: 1/5 units" in text and "samples 50/400+" in text
    assert "5.0 samples/s" in text and "ETA 1:10" in text
    board.tick()
    assert out.getvalue() == text + "\n"  # a log line, due after 10 s; no carriage return
    board.tick()
    assert out.getvalue().count("\n") == 1  # not due again yet
    board.unit_finished("a", ok=True)
    assert "samples 120/400+" in board.text() and "2/5 units" in board.text()


def test_failed_units_are_counted_and_bar_redraws_in_place():
    clock = Clock()
    out = io.StringIO()
    board = ProgressBoard("fit", 3, 0, ProgressMode(bar=True, interval=None), stream=out, clock=clock)
    board.unit_finished("S1/shape", ok=False)
    clock.now += 1
    board.tick()
    board.close()
    assert out.getvalue().startswith("\rfit: 1/3 units (1 failed)") and out.getvalue().endswith("\n")


def test_progress_modes():
    class NotATerminal(io.StringIO):
        def isatty(self):
            return False

    assert progress_mode(True, NotATerminal()) == ProgressMode(bar=False, interval=30.0)
    assert progress_mode(False) == ProgressMode(bar=False, interval=30.0)
    assert progress_mode(5) == ProgressMode(bar=False, interval=5.0)
    assert progress_mode(None) == ProgressMode(bar=False, interval=None)
    assert format_duration(3725) == "1:02:05" and format_duration(42) == "0:42"


def report(stage, results, done=1):
    return StageReport(stage, [UnitOutcome(f"u{i}", "missing", "done") for i in range(done)], results=results)


def test_run_summary_lists_every_stage_and_a_selection_without_training_subject():
    reports = [report("extract", {"sequences": 2, "videos": 8, "images": 40}),
               report("sample", {"splits": {"protocol1-test": {"shards": 1, "samples": 8, "bytes": 2500}}})]
    lines = run_overview(reports, ["extract", "fit", "sample", "h3wb"])
    text = "\n".join(lines)
    assert "2 sequences, 40 images from 8 videos" in text
    assert "protocol1-test: 8 samples in 1 shards, 2.5 kB" in text
    assert "h3wb     not run" in text
    assert "no training subject" in text
    with_train = run_overview([report("sample", {"splits": {"protocol1-train": {"shards": 1, "samples": 8,
                                                                             "bytes": 1}}})], ["sample"])
    assert "no training subject" not in "\n".join(with_train)


def test_fit_results_line():
    line = format_results("fit", {"device": "cpu", "frames": 80, "mpjpe_mm_mean": 12.34,
                                  "mpjpe_mm_p95": 20.0, "mpjpe_mm_max": 31.0})
    assert line == ["  80 frames fitted on cpu: MPJPE mean 12.3 mm, p95 20.0 mm, max 31.0 mm"]


def test_fit_results_are_computed_over_the_frames_of_the_fit_files(tmp_path_factory, synthetic_release, model_cache):
    """p95 over all fitted frames (not a mean of per-unit numbers), from known per-frame errors."""
    import numpy as np
    from helpers import true_fit_work

    from pipeline.orchestration.summaries import fit_results
    from pipeline.selection import Selection
    from pipeline.stages import get_stage
    from pipeline.store import WorkDir

    work, path, data = true_fit_work(tmp_path_factory, "summary_work", synthetic_release, model_cache)
    errors = np.linspace(1.0, 40.0, len(data["mpjpe_mm"]))
    data["mpjpe_mm"] = errors
    np.savez(path, **data)
    stage = get_stage("fit")
    units = stage.plan(stage.make_config(h36m=None, selection=Selection(), options={"device": "cpu"}), WorkDir(work))
    rep = StageReport("fit", [UnitOutcome(u.key, "up to date", "skipped") for u in units])
    results = fit_results(rep, units, WorkDir(work))
    assert results["device"] == "cpu" and results["frames"] == len(errors)
    assert results["mpjpe_mm_mean"] == np.mean(errors) and results["mpjpe_mm_p95"] == np.percentile(errors, 95)
    assert results["mpjpe_mm_max"] == 40.0


def test_sample_results_count_every_camera_shard_of_a_unit():
    from pipeline.orchestration.runner import StageReport, UnitOutcome
    from pipeline.orchestration.summaries import sample_results

    shards = {f"shard-S9-Walking_1-{c}-00000.h5": {"samples": 2} for c in ("54138969", "55011271")}
    report = StageReport("sample", [UnitOutcome("protocol1-test/S9/Walking_1/00000", "missing", "done",
                                                info={"samples": 4, "bytes": 100, "shards": shards})])
    assert sample_results(report, [], None)["splits"]["protocol1-test"] == {"shards": 2, "samples": 4, "bytes": 100}
