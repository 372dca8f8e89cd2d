"""Does the NVF trainer learn from the shards? Held-out MPJPE / PA-MPJPE against baselines.

A learning benchmark, not a speed one: a synthetic Human3.6M release large enough to
generalise from (five training subjects, S9 held out), built with the project's own APIs —
``write_synthetic_release`` (videos, CDF mocap), the extract stage, the ground-truth fit
writer (a perfect fit: the fitter is benchmarked in bench_fit) and the sample stage
(protocol 1 split: S1, S5, S6, S7, S8 train, S9 test) — then ``nvf.train.train`` for a fixed
CPU budget and ``nvf.evaluate.evaluate`` on the held-out subject after every epoch.

Reports the held-out MPJPE and PA-MPJPE of the model beside the zero baseline (every joint at
the root), the mean-pose baseline (the training split's mean root-relative pose) and the
oracle (the voting decoder on the stored ground truth), and the learning curve (held-out
MPJPE per epoch) as ``benchmarks/results/<stem>-learn.png``. ``ratio`` = model MPJPE / mean-pose
MPJPE (target ≤ 0.6). Run alone with ``python -m benchmarks --only learn``.

The prepared data are deterministic and kept between runs (``$H36M_NVF_CACHE``, default
~/.cache/h36m-nvf, ``bench-learn-<hash of the data fields>``; ``off``: rebuilt each run). They
cost ~410 CPU-seconds to build (release rendering, extract, sample; 24 min wall at load
average 22 on the shared 2-core machine). The epoch count is chosen from ``budget_s`` and a few
timed steps; on a machine whose load changes during the run, the run can end later than the
budget (each epoch's wall time and the load average are in the JSON).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class LearnBenchConfig:
    """Sizes of the learning benchmark (the default is the full CPU run)."""

    subjects: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8", "S9")
    """Subjects of the synthetic release; protocol 1 holds S9 out for testing."""
    sequences: tuple[tuple[int, int], ...] = ((14, 1), (2, 1), (4, 1))
    """(action id, subaction) per subject: Walking, Directions, Eating (walking, standing with
    gestures, seated)."""
    frames: int = 100
    """Mocap frames per sequence (50 fps)."""
    scale: float = 0.2
    """Image scale of the release's videos (0.2: 200 × 200 frames)."""
    extract_stride: int = 2
    """Frames extracted (every 2nd: the sample strides are multiples of it)."""
    train_stride: int = 4
    """Frame stride of the training samples (× 4 cameras): 5 subjects × 3 sequences × 25
    frames × 4 cameras = 1500 samples."""
    test_stride: int = 10
    """Frame stride of the held-out samples: 3 × 10 × 4 = 120 samples of S9."""
    points: int = 1024
    """Stored query points per sample."""
    crop: int = 48
    """Crop side in pixels (the person is ~70 px tall in the 200 px frames)."""
    train_overrides: tuple[tuple[str, object], ...] = ()
    """TrainConfig overrides (field, value) on top of :func:`train_config`."""
    budget_s: float = 1200.0
    """Wall-clock budget of the whole benchmark (data + training + evaluation), seconds; the
    epoch count is chosen from it once the data exist and a few steps are timed."""
    max_epochs: int = 60
    """At most this many epochs."""
    preset: str = "tiny"
    """Model preset (nvf/config.py)."""
    device: str = "cpu"
    """Training device."""
    threads: int = 1
    """torch threads for training. 1: on the shared 2-core machine 2 threads ran a step
    5x slower in wall time (16 vs 3.4 s at load average 16); the data stages use 2 workers."""


QUICK = LearnBenchConfig(subjects=("S1", "S9"), sequences=((14, 1),), frames=20, train_stride=4,
                         test_stride=8, points=256, crop=32, budget_s=150.0, max_epochs=2)


def prepare(root: Path, cfg: LearnBenchConfig, workers: int = 2) -> dict[str, Path]:
    """The release, extracted frames, ground-truth fits and protocol-1 shards under ``root``;
    returns {"train": split dir, "test": split dir}."""
    from pipeline.orchestration.api import run_stages
    from pipeline.synthetic.release import (
        SyntheticReleaseConfig,
        write_groundtruth_fits,
        write_synthetic_release,
    )

    work = root / "work"
    release = write_synthetic_release(root / "release", SyntheticReleaseConfig(
        subjects=cfg.subjects, sequences=cfg.sequences, frames=cfg.frames, scale=cfg.scale,
        model_cache=work, workers=workers))
    (extract,) = run_stages(["extract"], work, h36m=release, stride=cfg.extract_stride, workers=workers,
                            progress=False)
    if extract.failed:
        raise RuntimeError(f"extract failed in the benchmark: {extract.failed[0].reason}")
    write_groundtruth_fits(release, work)
    (sample,) = run_stages(["sample"], work, workers=workers, progress=False, options={
        "split": "protocol1", "train_stride": cfg.train_stride, "test_stride": cfg.test_stride,
        "points": cfg.points, "crop": cfg.crop, "body_model": "synthetic", "sdf_backend": "cpu"})
    if sample.failed:
        raise RuntimeError(f"sample failed in the benchmark: {sample.failed[0].reason}")
    return {"train": work / "shards" / "protocol1-train", "test": work / "shards" / "protocol1-test"}


DATA_FIELDS = ("subjects", "sequences", "frames", "scale", "extract_stride", "train_stride", "test_stride",
               "points", "crop")
"""The LearnBenchConfig fields that define the data (the cache key)."""
PREPARED = "prepared.json"


def data_key(cfg: LearnBenchConfig) -> str:
    """Short hash of the data-defining fields."""
    import hashlib

    fields = {k: getattr(cfg, k) for k in DATA_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()[:12]


def data_cache_dir(cfg: LearnBenchConfig) -> Path | None:
    """Where the prepared data of ``cfg`` is kept between runs: ``$H36M_NVF_CACHE`` (default
    ~/.cache/h36m-nvf) / bench-learn-<key>; None when the cache is "off"."""
    from fitting.bodymodel import CACHE_ENV

    root = os.environ.get(CACHE_ENV, "")
    if root == "off":
        return None
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "h36m-nvf"
    return base / f"bench-learn-{data_key(cfg)}"


def cached_prepare(cfg: LearnBenchConfig, scratch: Path) -> tuple[dict[str, Path], dict]:
    """The prepared splits, from the cache when a complete preparation of the same data config
    is there (the data are deterministic), else prepared now (into the cache, or ``scratch``
    when it is off). Returns (splits, {"cached": bool, "build_s": seconds of the build})."""
    folder = data_cache_dir(cfg)
    splits = lambda root: {"train": root / "work" / "shards" / "protocol1-train",  # noqa: E731
                           "test": root / "work" / "shards" / "protocol1-test"}
    if folder is not None and (folder / PREPARED).is_file():
        record = json.loads((folder / PREPARED).read_text())
        if record.get("key") == data_key(cfg) and all((d / "index.json").is_file() for d in splits(folder).values()):
            return splits(folder), {"cached": True, "build_s": record["build_s"], "folder": str(folder)}
    target = folder or scratch / "data"
    shutil.rmtree(target, ignore_errors=True)
    t = time.perf_counter()
    data = prepare(target, cfg)
    build_s = time.perf_counter() - t
    (target / PREPARED).write_text(json.dumps({"key": data_key(cfg), "build_s": round(build_s, 1),
                                               "config": {k: getattr(cfg, k) for k in DATA_FIELDS}}, default=list))
    return data, {"cached": False, "build_s": round(build_s, 1), "folder": str(target)}


def train_config(cfg: LearnBenchConfig, epochs: int):
    """The trainer's config for the benchmark: the preset, batch 16, 256 points per step."""
    from nvf.config import apply_overrides, preset_config

    return apply_overrides(preset_config(cfg.preset), {
        "epochs": epochs, "batch_size": 16, "points": min(256, cfg.points), "lr": 2e-3, "device": cfg.device,
        "num_workers": 0, "checkpoint_every": 1, **dict(cfg.train_overrides)}, "bench_learn")


def _step_seconds(config, split: Path, steps: int = 6) -> float:
    """Seconds per training step of ``config`` (forward, backward, AdamW) on real batches."""
    import torch

    from nvf.data import make_loader, photometric_augment, shard_dataset, to_device
    from nvf.train import build_model, losses, resolve_device

    ds = shard_dataset(split, config.points, config.seed)
    device = resolve_device(config.device)
    model = build_model(config, len(ds.joint_names)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i, batch in enumerate(make_loader(ds, config.batch_size, True, 0, config.seed, 0)):
        if i > steps:
            break
        batch = to_device(batch, device)
        t = time.perf_counter()
        image = photometric_augment(batch["image"], gen, config.brightness, config.contrast, config.saturation)
        parts = losses(*model(image, batch["points"], batch["K"], batch["root"]), batch, config)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        parts["loss"].item()  # synchronises a GPU
        times.append(time.perf_counter() - t)
    ds.close()
    return sorted(times[1:])[len(times[1:]) // 2]  # median, the first step excluded (warm-up)


def plot_curve(path: Path, curve: list[dict], baselines: dict, title: str) -> None:
    """Held-out MPJPE and PA-MPJPE per epoch with the baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [c["epoch"] for c in curve]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(epochs, [c["mpjpe_mm"] for c in curve], "o-", color="C0", label="model MPJPE (held out)")
    ax.plot(epochs, [c["pa_mpjpe_mm"] for c in curve], "s--", color="C1", label="model PA-MPJPE")
    styles = {"zero": ("C3", "zero baseline"), "mean_pose": ("C2", "mean-pose baseline")}
    for key, (colour, label) in styles.items():
        ax.axhline(baselines[key]["mpjpe_mm"], color=colour, ls="-", lw=1, label=f"{label} MPJPE")
        ax.axhline(baselines[key]["pa_mpjpe_mm"], color=colour, ls=":", lw=1, label=f"{label} PA-MPJPE")
    ax.axhline(0.6 * baselines["mean_pose"]["mpjpe_mm"], color="k", ls="-.", lw=0.8,
               label="target: 0.6 × mean-pose MPJPE")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mm (root-relative)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def learn(cfg: LearnBenchConfig, root: Path, curve_png: Path, data: dict | None = None) -> dict:
    """Prepare (unless ``data`` is given), train within the budget, evaluate every epoch."""
    import torch

    from nvf.evaluate import evaluate
    from nvf.train import train

    t0 = time.perf_counter()
    if data is None:
        data, data_info = cached_prepare(cfg, root)
    else:
        data_info = {"cached": True, "build_s": None, "folder": str(data["train"].parent)}
    t_data = time.perf_counter() - t0
    probe = train_config(cfg, 1)
    from sampling.shards import read_index

    n_train, n_test = read_index(data["train"])["samples"], read_index(data["test"])["samples"]
    steps_per_epoch = -(-n_train // probe.batch_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        step_s = _step_seconds(probe, data["train"])
    finally:
        torch.set_num_threads(threads)
    # an epoch = its steps + loading (~10 %) + the held-out evaluation (~1/6 of a step per sample)
    epoch_s = steps_per_epoch * step_s * 1.1 + n_test / probe.batch_size * step_s / 3
    left = cfg.budget_s - (time.perf_counter() - t0) - 30.0  # 30 s for the report and plot
    epochs = max(1, min(cfg.max_epochs, int(left / epoch_s)))
    config = train_config(cfg, epochs)
    curve: list[dict] = []

    def held_out(epoch: int, run_dir: Path) -> None:
        report = evaluate(run_dir, data["test"], device=cfg.device, batch_size=32, progress=False)
        curve.append({"epoch": epoch, "mpjpe_mm": report["mpjpe_mm"], "pa_mpjpe_mm": report["pa_mpjpe_mm"],
                      "seconds": round(time.perf_counter() - t0, 1)})
        curve[-1]["report"] = report

    t_train = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        train(data["train"], root / "run", config, progress=False, on_checkpoint=held_out)
    finally:
        torch.set_num_threads(threads)
    t_train = time.perf_counter() - t_train
    last = curve[-1].pop("report")
    for c in curve:
        c.pop("report", None)
    base = last["baselines"]
    total = time.perf_counter() - t0
    threads = cfg.threads
    title = (f"NVF tiny, held-out S9: {n_train} train / {n_test} test samples, {epochs} epochs, "
             f"{total / 60:.1f} min on {threads} threads")
    plot_curve(curve_png, curve, base, title)
    mpjpe = [c["mpjpe_mm"] for c in curve]
    return {
        "train_samples": n_train, "test_samples": n_test, "epochs": epochs,
        "mpjpe_mm": last["mpjpe_mm"], "pa_mpjpe_mm": last["pa_mpjpe_mm"], "baselines": base,
        "verdict": last["verdict"], "ratio_to_mean_pose": last["mpjpe_mm"] / base["mean_pose"]["mpjpe_mm"],
        "pa_ratio_to_mean_pose": last["pa_mpjpe_mm"] / base["mean_pose"]["pa_mpjpe_mm"],
        "falling_epochs": sum(b < a for a, b in zip(mpjpe, mpjpe[1:], strict=False)),
        "curve": curve, "decoder": last["decoder"], "per_joint": last["per_joint"],
        "data": data_info, "seconds": {"data": round(t_data, 1), "train_and_eval": round(t_train, 1), "total": round(total, 1)},
        "step_s_probe": step_s, "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "load_average": os.getloadavg(), "threads": threads, "curve_png": str(curve_png),
    }


def _data_note(info: dict) -> str:
    if not info.get("cached"):
        return ", built in this run"
    return f", cached; built in {info['build_s']:.0f} s" if info.get("build_s") else ", given"


def _row(r: dict, cfg: LearnBenchConfig) -> dict:
    b = r["baselines"]
    load = ", ".join(f"{x:.1f}" for x in r["load_average"])
    curve = " → ".join(f"{c['mpjpe_mm']:.0f}" for c in r["curve"])
    return {
        "benchmark": "learn", "case": f"held-out S9 MPJPE after {r['epochs']} epochs, {cfg.preset} preset, "
                                      f"{r['train_samples']} train samples ({','.join(s for s in cfg.subjects if s != 'S9')}), {cfg.crop} px",
        "ours": r["mpjpe_mm"], "peer_name": "mean-pose baseline", "peer": b["mean_pose"]["mpjpe_mm"],
        "ratio": r["ratio_to_mean_pose"], "unit": "mm", "device": r["device"],
        "notes": f"target ratio <= 0.6; PA-MPJPE {r['pa_mpjpe_mm']:.1f} vs mean-pose "
                 f"{b['mean_pose']['pa_mpjpe_mm']:.1f} mm ({r['pa_ratio_to_mean_pose']:.2f}x); zero baseline "
                 f"{b['zero']['mpjpe_mm']:.1f} / {b['zero']['pa_mpjpe_mm']:.1f} mm; oracle "
                 f"{b['oracle']['mpjpe_mm']:.2f} mm; held-out MPJPE per epoch {curve} ({r['falling_epochs']} of "
                 f"{len(r['curve']) - 1} epochs falling); {r['seconds']['total'] / 60:.1f} min wall in all "
                 f"({r['seconds']['data']:.0f} s data{_data_note(r['data'])}), budget {cfg.budget_s / 60:.0f} min; load average {load}; "
                 f"curve {Path(r['curve_png']).name}"}


def run(gpu: bool = False, quick: bool = False) -> list[dict]:
    import datetime as dt
    import socket

    import torch

    cases = [QUICK if quick else LearnBenchConfig()]
    if gpu and torch.cuda.is_available():  # the NVF-sized network, longer (not yet measured: no GPU lent)
        cases.append(dataclasses.replace(cases[0], preset="full", device="cuda", budget_s=3 * cases[0].budget_s,
                                         crop=2 * cases[0].crop))
    rows = []
    for cfg in cases:
        tag = "" if cfg.device == "cpu" else f"-{cfg.preset}-{cfg.device}"
        stem = f"{dt.datetime.now():%Y-%m-%d}-{socket.gethostname()}{'-quick' if quick else ''}-learn{tag}"
        root = Path(tempfile.mkdtemp(prefix="bench_learn_"))
        try:
            r = learn(cfg, root, RESULTS / f"{stem}.png")
        finally:
            shutil.rmtree(root, ignore_errors=True)
        r["device"] = (torch.cuda.get_device_name(0) if cfg.device == "cuda"
                       else f"cpu ({cfg.threads} torch thread(s), 2 data workers)")
        (RESULTS / f"{stem}.json").write_text(json.dumps(r, indent=1, default=float) + "\n")
        rows.append(_row(r, cfg))
    return rows
