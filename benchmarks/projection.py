"""Hours and gigabytes for the whole of Human3.6M, per stage, on N cores, from this report's rows.

The dataset (public facts, embedded so that nothing outside the project is needed):
``H36M_FRAMES`` are the frames per subject of the release (shortest of the 4 cameras of each
sequence, summed over its 30 sequences: 15 actions x 2 subactions), decoded from the release's
``metadata.xml`` (its ``frames`` table, as published with anibali/h36m-fetch). Training
subjects S1, S5, S6, S7, S8 at stride 5, test subjects S9, S11 at stride 64 (protocol 1), 4
cameras, 1000 x 1000 px, 50 fps.

Per-unit costs come from the rows of the same run, as core-seconds (one worker = one core):

* extract, per camera frame: every frame is decoded (a stride skips writing, not decoding),
  the kept ones are JPEG-encoded and written. From bench_extract: its decode-only peer
  (one core) gives the decode cost; its stage rate on C cores at stride 1 gives decode +
  write per frame.
* fit, per subject (shape) and per fitted frame (poses), fitting only the frames that are
  sampled (``--stride`` as above): from bench_fit_stage's in-process split, times the threads
  the in-process fitter used (an upper bound: it assumes perfect thread scaling).
* sample, per sample (one frame x one camera): bench_sample's in-process, one-thread row.

Scaling to N cores is linear (units are independent, except a subject's poses after its
shape, which is short beside them); cluster start and cold workers are not in the figures.
Sizes: JPEG bytes of the benchmark's synthetic 1000 px frames (real footage compresses
differently), fit npz bytes per frame, shard bytes per sample.
"""

from __future__ import annotations

H36M_FRAMES = {"S1": 62_152, "S5": 99_113, "S6": 62_496, "S7": 101_658, "S8": 64_710,
               "S9": 85_560, "S11": 58_276}
"""Frames per subject, shortest camera per sequence (Human3.6M metadata.xml, 533,965 in all)."""
TRAIN_SUBJECTS, TEST_SUBJECTS = ("S1", "S5", "S6", "S7", "S8"), ("S9", "S11")
TRAIN_STRIDE, TEST_STRIDE = 5, 64
CAMERAS = 4
CORES = (2, 16, 64)
"""Core counts the projection is shown for."""


def _row(rows: list[dict], benchmark: str, case_start: str) -> dict | None:
    return next((r for r in rows if r.get("benchmark") == benchmark and str(r.get("case", "")).startswith(case_start)
                 and r.get("ours")), None)


def frame_counts() -> dict[str, float]:
    """Mocap frames in all, and frames kept at the protocol strides (per camera)."""
    train = sum(H36M_FRAMES[s] for s in TRAIN_SUBJECTS)
    test = sum(H36M_FRAMES[s] for s in TEST_SUBJECTS)
    return {"all": train + test, "kept": train / TRAIN_STRIDE + test / TEST_STRIDE,
            "subjects": len(TRAIN_SUBJECTS) + len(TEST_SUBJECTS)}


def costs(rows: list[dict]) -> dict[str, dict]:
    """Per-unit core-seconds and bytes by stage, from the rows found (a stage without its row
    is left out)."""
    out = {}
    extract = _row(rows, "extract", "")
    if extract and extract.get("peer"):
        cores = int(str(extract.get("device", "2 cores")).split("cores")[0].split(",")[-1].strip() or 2)
        decode = 1.0 / extract["peer"]
        both = cores / extract["ours"]
        out["extract"] = {"decode_core_s": decode, "write_core_s": max(0.0, both - decode)}
    fit = _row(rows, "fit-stage", "")
    if fit:
        threads = fit.get("in_process_torch_threads", 1)
        out["fit"] = {"shape_core_s": fit["in_process_shape_s"] * threads,
                      "pose_core_s": fit["in_process_pose_ms_per_frame"] / 1e3 * threads,
                      "bytes_per_frame": fit.get("fit_bytes_per_frame", 0.0)}
    sample_in = _row(rows, "sample", "unit function in-process")
    sample_stage = _row(rows, "sample", "stage end-to-end")
    if sample_in:
        out["sample"] = {"core_s": 1.0 / sample_in["ours"],
                         "bytes_per_sample": (sample_stage or {}).get("bytes_per_sample", 0.0)}
        if sample_stage and sample_stage.get("extracted_jpeg_bytes") and "extract" in out:
            out["extract"]["jpeg_bytes"] = sample_stage["extracted_jpeg_bytes"]
    return out


def project(rows: list[dict]) -> tuple[list[dict], str]:
    """(projection records, markdown) for the stages whose costs the rows give."""
    n = frame_counts()
    c = costs(rows)
    records = []
    if "extract" in c:
        e = c["extract"]
        core_s = CAMERAS * (n["all"] * e["decode_core_s"] + n["kept"] * e["write_core_s"])
        gb = CAMERAS * n["kept"] * e.get("jpeg_bytes", 0.0) / 1e9
        records.append(("extract", core_s, gb, f"{CAMERAS} x {n['all']:,} frames decoded "
                        f"({1e3 * e['decode_core_s']:.1f} ms each), {CAMERAS} x {n['kept']:,.0f} written as JPEG "
                        f"({1e3 * e['write_core_s']:.1f} ms, {e.get('jpeg_bytes', 0) / 1e3:.0f} kB each)"))
    if "fit" in c:
        f = c["fit"]
        core_s = n["subjects"] * f["shape_core_s"] + n["kept"] * f["pose_core_s"]
        records.append(("fit", core_s, n["kept"] * f["bytes_per_frame"] / 1e9,
                        f"{n['subjects']} shapes ({f['shape_core_s']:.0f} core-s each) + {n['kept']:,.0f} frames "
                        f"({1e3 * f['pose_core_s']:.1f} core-ms each), {f['bytes_per_frame'] / 1e3:.1f} kB/frame"))
    if "sample" in c:
        s = c["sample"]
        samples = CAMERAS * n["kept"]
        records.append(("sample", samples * s["core_s"], samples * s["bytes_per_sample"] / 1e9,
                        f"{samples:,.0f} samples ({1e3 * s['core_s']:.0f} core-ms each), "
                        f"{s['bytes_per_sample'] / 1e3:.0f} kB each"))
    out = [{"stage": stage, "core_hours": core_s / 3600, "gb": gb, "basis": basis,
            **{f"hours_on_{k}_cores": core_s / 3600 / k for k in CORES}} for stage, core_s, gb, basis in records]
    if not out:
        return [], ""
    head = " | ".join(f"h on {k} cores" for k in CORES)
    lines = ["", "## Projection: the whole of Human3.6M",
             f"Train S1, S5, S6, S7, S8 at stride {TRAIN_STRIDE}, test S9, S11 at stride {TEST_STRIDE}, "
             f"{CAMERAS} cameras: {n['kept']:,.0f} frames of {n['all']:,} ({CAMERAS * n['kept']:,.0f} samples). "
             "Per-unit costs from this run's rows (see benchmarks/projection.py).", "",
             f"| stage | core-hours | {head} | GB | basis |", "|---|---|" + "---|" * len(CORES) + "---|---|"]
    for r in out:
        hours = " | ".join(f"{r[f'hours_on_{k}_cores']:.2f}" for k in CORES)
        lines.append(f"| {r['stage']} | {r['core_hours']:.1f} | {hours} | {r['gb']:.1f} | {r['basis']} |")
    total = sum(r["core_hours"] for r in out)
    lines.append(f"| all | {total:.1f} | " + " | ".join(f"{total / k:.2f}" for k in CORES)
                 + f" | {sum(r['gb'] for r in out):.1f} | |")
    return out, "\n".join(lines) + "\n"
