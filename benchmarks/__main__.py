"""Run every ``benchmarks/bench_*.py`` in one process tree and write a JSON + markdown report.

Each module exposes ``run(gpu: bool = False, quick: bool = False) -> list[dict]`` with rows
``{benchmark, case, ours, peer_name, peer, ratio, unit, device, notes, ...}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import socket
import sys
import time
import traceback
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def discover() -> list[str]:
    """Every ``bench_*`` module here (bench_fit_stage among them)."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))


def machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"host": socket.gethostname(), "cpu_cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "gpu": gpu}


def fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def markdown(rows: list[dict], info: dict) -> str:
    head = f"Machine: {info['cpu_cores']} CPU cores, GPU: {info['gpu'] or 'none'}; torch {info['torch']}\n\n"
    lines = ["| benchmark | case | ratio | ours | peer | unit | device | notes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}×" if isinstance(r.get("ratio"), (int, float)) else "—"
        peer = f"{fmt(r.get('peer'))} ({r['peer_name']})" if r.get("peer_name") else "—"
        lines.append(f"| {r.get('benchmark')} | {r.get('case')} | {ratio} | {fmt(r.get('ours'))} | {peer} "
                     f"| {r.get('unit', '')} | {r.get('device', '')} | {r.get('notes', '')} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--gpu", action="store_true", help="also run the CUDA variants (when CUDA exists)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    parser.add_argument("--only", help="comma-separated benchmarks, e.g. sdf,fit or learn (the learning "
                                       "benchmark alone, ~20 min); bench_ prefixes optional")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown report")
    args = parser.parse_args(argv)

    names = discover()
    if args.only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in args.only.split(",")}
        unknown = wanted - set(names)
        if unknown:
            parser.error(f"--only: no benchmark {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(n[6:] for n in names)}")
        names = [n for n in names if n in wanted]
    info = machine()
    rows, failures = [], []
    for name in names:
        t0 = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            rows += importlib.import_module(f"benchmarks.{name}").run(gpu=args.gpu, quick=args.quick)
        except Exception as e:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            failures.append(f"{name}: {type(e).__name__}: {e}")
        print(f"   {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    stamp = dt.datetime.now().strftime("%Y-%m-%d")
    args.out.mkdir(parents=True, exist_ok=True)
    only = "-only-" + "-".join(n[6:] for n in names) if args.only else ""  # a partial run keeps the full report
    stem = args.out / f"{stamp}-{info['host']}{only}{'-quick' if args.quick else ''}"
    from benchmarks.projection import project

    projection, projection_md = project(rows)
    report = {"machine": info, "rows": rows, "failures": failures, "date": stamp, "projection": projection}
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    table = markdown(rows, info) + projection_md
    stem.with_suffix(".md").write_text(table)
    print(table)
    for f in failures:
        print(f"FAILED {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
