"""What a stage produced, in one or two lines of its summary: frames and fit errors, samples
and bytes per split, H3WB samples per file.

Computed from the units' results (``info``, also kept in the done-records of units that were
up to date), plus, for fit, the per-frame errors in the fit files (a p95 cannot be combined
from per-unit numbers). Every function returns JSON-able data; ``format_results`` turns it
into text. A stage without a function here has no result lines.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import numpy as np

from pipeline.errors import DataError


def _finished(report):
    return [o for o in report.outcomes if o.result in ("done", "skipped") and o.info is not None]


def extract_results(report, units, work) -> dict:
    videos = [o for o in _finished(report) if "/" in o.key and o.key.count("/") >= 2]
    sequences = [o for o in _finished(report) if o.key.count("/") < 2]
    return {"sequences": len(sequences), "videos": len(videos),
            "images": int(sum(o.info.get("frames", 0) for o in videos))}


def fit_results(report, units, work) -> dict:
    from pipeline.artifacts import read_fit_sequence

    by_key = {u.key: u for u in units}
    errors, devices = [], set()
    for o in _finished(report):
        unit = by_key.get(o.key)
        if unit is None:
            continue
        devices.add(str(unit.params.get("device", "?")))
        if o.key.endswith("/shape"):
            continue
        with contextlib.suppress(DataError, OSError):
            errors.append(np.asarray(read_fit_sequence(unit.outputs[0]).mpjpe_mm, dtype=np.float64))
    out: dict = {"device": ",".join(sorted(devices)) or "?"}
    if errors:
        e = np.concatenate(errors)
        out.update(frames=int(e.size), mpjpe_mm_mean=float(e.mean()),
                   mpjpe_mm_p95=float(np.percentile(e, 95)), mpjpe_mm_max=float(e.max()))
    return out


def sample_results(report, units, work) -> dict:
    per_split: dict[str, dict[str, int]] = defaultdict(lambda: {"shards": 0, "samples": 0, "bytes": 0})
    for o in _finished(report):
        split = o.key.split("/")[0]
        row = per_split[split]
        row["shards"] += len(o.info.get("shards", ())) or 1  # a unit writes one shard per camera
        row["samples"] += int(o.info.get("samples", 0))
        row["bytes"] += int(o.info.get("bytes", 0))
    return {"splits": dict(sorted(per_split.items()))}


def h3wb_results(report, units, work) -> dict:
    files: dict[str, int] = {}
    for o in _finished(report):
        files.update({str(k): int(v) for k, v in (o.info.get("files") or {}).items()})
        if not o.info.get("files") and "samples" in o.info:
            files[f"{o.key} (samples)"] = int(o.info["samples"])
    return {"files": files}


RESULTS = {"extract": extract_results, "fit": fit_results, "sample": sample_results, "h3wb": h3wb_results}
"""Stage name → results function (report, units, work) -> dict."""


def stage_results(report, units, work) -> dict:
    fn = RESULTS.get(report.stage)
    return fn(report, units, work) if fn else {}


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_results(stage: str, results: dict) -> list[str]:
    """Indented text lines of ``stage_results``."""
    if not results:
        return []
    if stage == "extract":
        return [f"  {results['sequences']} sequences, {results['images']} images from {results['videos']} videos"]
    if stage == "fit":
        if "frames" not in results:
            return [f"  device {results['device']}"]
        return [f"  {results['frames']} frames fitted on {results['device']}: MPJPE mean "
                f"{results['mpjpe_mm_mean']:.1f} mm, p95 {results['mpjpe_mm_p95']:.1f} mm, "
                f"max {results['mpjpe_mm_max']:.1f} mm"]
    if stage == "sample":
        return [f"  {split}: {row['samples']} samples in {row['shards']} shards, {human_bytes(row['bytes'])}"
                for split, row in results["splits"].items()]
    if stage == "h3wb":
        return [f"  {name}: {count} samples" for name, count in sorted(results["files"].items())]
    return []
