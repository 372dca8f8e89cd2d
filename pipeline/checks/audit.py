"""Fit-quality audit: per-frame numbers → summary.json, plots and overlays in one HTML page.

Researchers read it to decide whether to trust the pseudo-ground truth: MPJPE statistics per
subject and sequence, histograms, per-joint errors, error over time, and the worst frames
drawn onto the extracted images. The page is static (opens from disk, no server).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fitting.joint_sets import H36M17, H36M17_FROM_H36M32
from pipeline.errors import DataError
from pipeline.release.cameras import Camera
from pipeline.store import WorkDir, atomic_write_bytes, atomic_write_json

MESH_BGR = (230, 170, 90)
"""Colour of the fitted mesh in overlays."""


@dataclass(frozen=True)
class AuditConfig:
    """What the audit draws."""

    body_model: str = "synthetic"
    """Body model used by the fit ("synthetic" = WORK/bodymodel/SMPLX_NEUTRAL.npz, or a path)."""
    worst: int = 20
    """How many of the worst frames to list and draw."""
    camera: str | None = None
    """Camera for the overlays (default: the first camera with an extracted image)."""


@dataclass(frozen=True)
class SequenceFit:
    """Per-frame fit metrics of one (subject, sequence), read from ``WORK/fit/<S>/<seq>.npz``."""

    subject: str
    sequence: str
    frame_index: np.ndarray  # (T,) int
    mpjpe_mm: np.ndarray  # (T,)
    joint_err_mm: np.ndarray  # (T, 17)
    converged: np.ndarray  # (T,) bool


def read_fits(work: WorkDir) -> list[SequenceFit]:
    """Every fitted sequence in the work dir, sorted by (subject, sequence)."""
    fits = []
    for path in sorted((work.root / "fit").glob("S*/*.npz")):
        if path.name == "shape.npz":
            continue
        try:
            with np.load(path) as z:
                fits.append(SequenceFit(path.parent.name, path.stem, z["frame_index"], z["mpjpe_mm"],
                                        z["joint_err_mm"], z["converged"].astype(bool)))
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{path}: not a readable fit file ({e})") from e
    if not fits:
        raise DataError(f"{work.root / 'fit'}: no fitted sequences; run `h36m-nvf fit` first")
    return fits


def error_stats(mpjpe_mm: np.ndarray, converged: np.ndarray) -> dict:
    """Mean, median, p95, max MPJPE (mm) and the converged share over some frames."""
    return {
        "frames": int(mpjpe_mm.size),
        "mean_mm": float(np.mean(mpjpe_mm)),
        "median_mm": float(np.median(mpjpe_mm)),
        "p95_mm": float(np.percentile(mpjpe_mm, 95)),
        "max_mm": float(np.max(mpjpe_mm)),
        "converged_share": float(np.mean(converged)),
    }


def summarize(fits: list[SequenceFit], worst: int = 20) -> dict:
    """The machine-readable summary: overall, per subject, per sequence, per joint, worst frames."""
    all_err = np.concatenate([f.mpjpe_mm for f in fits])
    all_conv = np.concatenate([f.converged for f in fits])
    subjects = sorted({f.subject for f in fits})
    by_subject = {
        s: error_stats(np.concatenate([f.mpjpe_mm for f in fits if f.subject == s]),
                       np.concatenate([f.converged for f in fits if f.subject == s]))
        for s in subjects
    }
    per_joint = np.concatenate([f.joint_err_mm for f in fits]).mean(axis=0)
    frames = [(float(e), f.subject, f.sequence, int(i)) for f in fits for e, i in zip(f.mpjpe_mm, f.frame_index)]
    frames.sort(key=lambda x: (-x[0], x[1], x[2], x[3]))
    return {
        "overall": error_stats(all_err, all_conv),
        "subjects": by_subject,
        "sequences": [{"subject": f.subject, "sequence": f.sequence, **error_stats(f.mpjpe_mm, f.converged)}
                      for f in fits],
        "per_joint_mm": {name: float(v) for name, v in zip(H36M17.names, per_joint)},
        "worst": [{"subject": s, "sequence": q, "frame": i, "mpjpe_mm": e} for e, s, q, i in frames[:worst]],
    }


# --- plots ------------------------------------------------------------------------------------


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())


def plot_histograms(fits: list[SequenceFit], path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for s in sorted({f.subject for f in fits}):
        ax.hist(np.concatenate([f.mpjpe_mm for f in fits if f.subject == s]), bins=40, alpha=0.6, label=s)
    ax.set_xlabel("MPJPE to mocap (mm)")
    ax.set_ylabel("frames")
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_per_joint(summary: dict, path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names, values = zip(*summary["per_joint_mm"].items())
    ax.bar(range(len(values)), values)
    ax.set_xticks(range(len(values)), names, rotation=60, ha="right")
    ax.set_ylabel("mean error (mm)")
    _save(fig, path)
    plt.close(fig)


def plot_over_time(fit: SequenceFit, path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 2.5))
    ax.plot(fit.frame_index, fit.mpjpe_mm, lw=1)
    bad = ~fit.converged
    ax.scatter(fit.frame_index[bad], fit.mpjpe_mm[bad], color="red", s=8, label="not converged")
    ax.set_xlabel("frame")
    ax.set_ylabel("MPJPE (mm)")
    ax.set_title(f"{fit.subject} {fit.sequence}")
    if bad.any():
        ax.legend()
    _save(fig, path)
    plt.close(fig)


# --- overlays ---------------------------------------------------------------------------------


def load_cameras(work: WorkDir, subject: str, sequence: str) -> list[Camera]:
    path = work.sequence_json(subject, sequence)
    try:
        return [Camera.from_json(c) for c in json.loads(path.read_text())["cameras"]]
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: cannot read cameras ({e})") from e


def fitted_body(model_path: Path, fit_path: Path, frame: int):
    """(vertices (V,3), faces (F,3), h36m17 joints (17,3)) of one fitted frame, world, metres."""
    import torch

    from fitting.bodymodel import cached_body_model_f64
    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx

    model = cached_body_model_f64(str(model_path))
    with np.load(fit_path) as z:
        row = int(np.flatnonzero(z["frame_index"] == frame)[0])
        kwargs = {k: torch.as_tensor(z[k][row: row + 1], dtype=torch.float64)
                  for k in ("global_orient", "body_pose", "transl", "left_hand_pose", "right_hand_pose",
                            "jaw_pose", "leye_pose", "reye_pose", "expression")}
        kwargs["betas"] = torch.as_tensor(z["betas"], dtype=torch.float64).reshape(1, -1)
    with torch.no_grad():
        out = model(**kwargs)
    verts = out.vertices[0]
    joints32 = h36m32_from_smplx(out.joints[0, :55], verts[correspondence_vertex_ids()])
    return verts.numpy(), np.asarray(model.faces, dtype=np.int64), joints32.numpy()[H36M17_FROM_H36M32]


def draw_overlay(image: np.ndarray, camera: Camera, vertices: np.ndarray, faces: np.ndarray,
                 fitted: np.ndarray, mocap: np.ndarray) -> np.ndarray:
    """The image with the shaded fitted mesh blended in, fitted joints (green) and mocap (red).

    Args:
        image: (H, W, 3) BGR uint8 extracted frame of ``camera``.
        vertices: (V, 3), fitted: (17, 3), mocap: (17, 3) world frame, metres.
    """
    import cv2

    from pipeline.synthetic.render import render_mesh

    # Render on black: the shaded body (ambient light keeps it > 0) is the blend mask.
    albedo = np.broadcast_to(np.array(MESH_BGR, dtype=np.float64), vertices.shape)
    layer = render_mesh(vertices, faces, albedo, camera, np.zeros_like(image))
    mask = layer.max(axis=-1) > 0
    out = image.copy()
    out[mask] = (0.45 * image[mask] + 0.55 * layer[mask]).astype(np.uint8)
    for pts, color in ((mocap, (40, 40, 230)), (fitted, (40, 200, 40))):
        uv = np.asarray(camera.project(pts))
        for j, p in enumerate(H36M17.parents):
            if p >= 0:
                cv2.line(out, _pt(uv[j]), _pt(uv[p]), color, 1, cv2.LINE_AA)
        for q in uv:
            cv2.circle(out, _pt(q), 2, color, -1, cv2.LINE_AA)
    return out


def _pt(uv) -> tuple[int, int]:
    return int(round(float(uv[0]))), int(round(float(uv[1])))


def render_fit_overlay(work: WorkDir, model_path: Path, subject: str, sequence: str, frame: int,
                       camera_id: str) -> np.ndarray:
    """Overlay for one extracted frame (BGR uint8); DataError when the frame has no image."""
    import cv2

    image_path = work.image(subject, sequence, camera_id, frame)
    image = cv2.imread(str(image_path))
    if image is None:
        raise DataError(f"{image_path}: no extracted image for frame {frame} (extract with a stride that keeps it)")
    cameras = {c.id: c for c in load_cameras(work, subject, sequence)}
    if camera_id not in cameras:
        raise DataError(f"{work.sequence_json(subject, sequence)}: no camera {camera_id}")
    verts, faces, fitted = fitted_body(model_path, work.fit_sequence(subject, sequence), frame)
    mocap = np.load(work.joints_world(subject, sequence))[frame][H36M17_FROM_H36M32]
    return draw_overlay(image, cameras[camera_id], verts, faces, fitted, mocap)


def _worst_with_images(work: WorkDir, fits: list[SequenceFit], camera: str | None, n: int) -> list[tuple]:
    """The n worst frames that have an extracted image, as (mpjpe, subject, seq, frame, camera)."""
    rows = []
    for f in fits:
        cams = [c.id for c in load_cameras(work, f.subject, f.sequence)]
        cams = [camera] if camera in cams else cams
        for e, i in zip(f.mpjpe_mm, f.frame_index):
            cam = next((c for c in cams if work.image(f.subject, f.sequence, c, int(i)).exists()), None)
            if cam is not None:
                rows.append((float(e), f.subject, f.sequence, int(i), cam))
    rows.sort(key=lambda r: (-r[0], r[1], r[2], r[3]))
    return rows[:n]


# --- page -------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.2f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


STAT_COLUMNS = ["frames", "mean_mm", "median_mm", "p95_mm", "max_mm", "converged_share"]


def write_audit(work: WorkDir, config: AuditConfig = AuditConfig(), model_path: Path | None = None) -> Path:
    """Write ``WORK/audit/`` (index.html, summary.json, PNGs) and return the index path."""
    import cv2

    fits = read_fits(work)
    summary = summarize(fits, config.worst)
    out = work.audit_index.parent
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", summary)
    plot_histograms(fits, out / "hist.png")
    plot_per_joint(summary, out / "per_joint.png")
    for f in fits:
        plot_over_time(f, out / f"time_{f.subject}_{f.sequence}.png")

    overlays = []
    if model_path is not None:
        for e, s, q, i, cam in _worst_with_images(work, fits, config.camera, config.worst):
            name = f"worst_{s}_{q}_{cam}_{i:06d}.jpg"
            image = render_fit_overlay(work, model_path, s, q, i, cam)
            atomic_write_bytes(out / name, cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            overlays.append((e, s, q, i, cam, name))

    o = summary["overall"]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>h36m-nvf fit audit</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}"
        "figure{display:inline-block;margin:4px}img{max-width:480px}</style>",
        "<h1>Fit-quality audit</h1>",
        f"<p>{o['frames']} fitted frames: mean {o['mean_mm']:.2f} mm, median {o['median_mm']:.2f} mm, "
        f"p95 {o['p95_mm']:.2f} mm, max {o['max_mm']:.2f} mm MPJPE to the mocap joints (h36m17); "
        f"{100 * o['converged_share']:.1f}% converged. Machine-readable: <a href='summary.json'>summary.json</a>.</p>",
        "<h2>Per subject</h2>",
        _table(["subject", *STAT_COLUMNS], [[s, *(v[c] for c in STAT_COLUMNS)] for s, v in summary["subjects"].items()]),
        "<h2>Per sequence</h2>",
        _table(["subject", "sequence", *STAT_COLUMNS],
               [[r["subject"], r["sequence"], *(r[c] for c in STAT_COLUMNS)] for r in summary["sequences"]]),
        "<h2>Distribution</h2><img src='hist.png'><img src='per_joint.png'>",
        "<h2>Error over time</h2>",
        *(f"<img src='time_{f.subject}_{f.sequence}.png'>" for f in fits),
        f"<h2>The {config.worst} worst frames</h2>",
        _table(["subject", "sequence", "frame", "MPJPE (mm)"],
               [[w["subject"], w["sequence"], w["frame"], w["mpjpe_mm"]] for w in summary["worst"]]),
    ]
    if overlays:
        parts.append("<h3>Overlays (worst frames with an extracted image; green = fit, red = mocap)</h3>")
        parts += [f"<figure><img src='{n}'><figcaption>{s} {q} cam {c} frame {i}: {e:.1f} mm</figcaption></figure>"
                  for e, s, q, i, c, n in overlays]
    atomic_write_bytes(work.audit_index, "\n".join(parts).encode())
    return work.audit_index
