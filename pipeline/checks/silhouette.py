"""Silhouette audit: the fitted mesh's silhouette against the release's ``ground_truth_bs`` masks.

On real data this is the only measure of the fitted surface (no true mesh exists): for every
checked fitted frame and camera with a background-subtraction mask, the fitted mesh is
projected exactly (Human3.6M lens model, per vertex) and rasterised at the video's resolution
(:func:`pipeline.synthetic.render.mesh_silhouette`, the renderer's own coverage rule), and
its intersection over union with the mask is recorded. Masks are read lazily
(:class:`pipeline.release.masks.MaskFile`, listed in sequence.json by extract).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.store import WorkDir

MASK_KIND = "ground_truth_bs"
"""The masks compared with (background subtraction; the boxes carry no shape)."""


@dataclass(frozen=True)
class SequenceSilhouette:
    """IoU per checked frame of one (subject, sequence, camera)."""

    subject: str
    sequence: str
    camera: str
    frame_index: np.ndarray
    """(N,) mocap frames checked (0-based)."""
    iou: np.ndarray
    """(N,) IoU of the fitted mesh's silhouette with the mask (NaN: both empty)."""


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (NaN when both are empty)."""
    union = np.count_nonzero(a | b)
    return float("nan") if union == 0 else np.count_nonzero(a & b) / union


def checked_rows(frame_index: np.ndarray, stride: int, mask_frames: int) -> np.ndarray:
    """Rows of a fit to check: every ``stride``-th fitted frame (in frame order) the mask holds."""
    order = np.argsort(frame_index, kind="stable")
    order = order[frame_index[order] < mask_frames]
    return order[:: max(1, stride)]


def sequence_silhouettes(work: WorkDir, subject: str, sequence: str, model, stride: int = 1,
                         cameras: tuple[str, ...] | None = None, vertex_offset_m=None) -> list[SequenceSilhouette]:
    """IoU of the fitted mesh with each camera's ``ground_truth_bs`` mask of one sequence.

    ``model`` a float64 smplx model (``fitting.bodymodel.cached_body_model_f64``);
    ``vertex_offset_m`` (3,) moves the mesh in the world (tests: a 10 mm shift lowers IoU).
    Cameras without a usable mask are left out (none: an empty list).
    """
    from pipeline.artifacts import read_fit_sequence, read_sequence_info
    from pipeline.checks.plausibility import posed_bodies
    from pipeline.synthetic.render import mesh_silhouette

    info = read_sequence_info(work.sequence_json(subject, sequence))
    masks = {c.id: info.mask(MASK_KIND, c.id) for c in info.cameras
             if cameras is None or c.id in cameras}
    masks = {c: m for c, m in masks.items() if m is not None}
    if not masks:
        return []
    fit = read_fit_sequence(work.fit_sequence(subject, sequence))
    limit = min(m.frames for m in masks.values())
    rows = checked_rows(fit.frame_index, stride, limit)
    if len(rows) == 0:
        return []
    params = {k: np.asarray(v, dtype=np.float64) for k, v in fit.smplx_kwargs(rows).items()}
    params["betas"] = np.asarray(fit.betas, dtype=np.float64)
    vertices, _ = posed_bodies(model, params)
    if vertex_offset_m is not None:
        vertices = vertices + np.asarray(vertex_offset_m, dtype=np.float64)
    faces = np.asarray(model.faces, dtype=np.int64)
    frames = fit.frame_index[rows].astype(np.int64)
    out = []
    for camera_id, mask_file in masks.items():
        camera = info.camera(camera_id)
        if (mask_file.width, mask_file.height) != (camera.width, camera.height):
            raise DataError(f"{mask_file.path}: masks of {mask_file.width}x{mask_file.height} for a "
                            f"{camera.width}x{camera.height} camera")
        observed = mask_file.read_many(frames)
        values = np.array([iou(mesh_silhouette(v, faces, camera), m)
                           for v, m in zip(vertices, observed, strict=True)])
        out.append(SequenceSilhouette(subject, sequence, camera_id, frames, values))
    return out


def audit_silhouettes(work: WorkDir, fits, model_path: Path, stride: int = 1) -> list[SequenceSilhouette]:
    """:func:`sequence_silhouettes` of every fitted sequence (``fits``: the audit's SequenceFit)."""
    from fitting.bodymodel import cached_body_model_f64

    model = cached_body_model_f64(str(model_path))
    out = []
    for f in fits:
        out += sequence_silhouettes(work, f.subject, f.sequence, model, stride)
    return out


def _stats(values: np.ndarray) -> dict:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"frames": 0, "mean": None, "median": None, "p5": None, "min": None}
    return {"frames": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)),
            "p5": float(np.percentile(v, 5)), "min": float(v.min())}


def summarize_silhouettes(results: list[SequenceSilhouette], stride: int, worst: int = 20) -> dict:
    """``summary.json``'s ``silhouette``: overall and per-sequence IoU statistics (over cameras
    and checked frames), per camera, and the ``worst`` (frame, camera) pairs."""
    if not results:
        return {"checked": False, "reason": f"no {MASK_KIND} masks in the release (or none usable)"}
    every = np.concatenate([r.iou for r in results])
    sequences: dict[str, dict] = {}
    for r in results:
        key = f"{r.subject}/{r.sequence}"
        sequences.setdefault(key, {"subject": r.subject, "sequence": r.sequence, "cameras": {}, "per_frame": {}})
        sequences[key]["cameras"][r.camera] = _stats(r.iou)
        sequences[key]["per_frame"][r.camera] = {"frame": r.frame_index.tolist(),
                                                 "iou": [None if not np.isfinite(v) else float(v) for v in r.iou]}
    for key, row in sequences.items():
        row.update(_stats(np.concatenate([r.iou for r in results if f"{r.subject}/{r.sequence}" == key])))
    pairs = [(float(v), r.subject, r.sequence, r.camera, int(i)) for r in results
             for v, i in zip(r.iou, r.frame_index, strict=True) if np.isfinite(v)]
    pairs.sort(key=lambda p: (p[0], p[1], p[2], p[3], p[4]))
    return {
        "checked": True, "mask": MASK_KIND, "stride": stride, **_stats(every),
        "sequences": list(sequences.values()),
        "worst": [{"subject": s, "sequence": q, "camera": c, "frame": i, "iou": v}
                  for v, s, q, c, i in pairs[:worst]],
        "definition": "IoU of the fitted mesh's silhouette (exact Human3.6M lens-model projection of every "
                      "vertex, triangles rasterised at pixel centres at the video's resolution) with the "
                      f"release's {MASK_KIND} mask, every {stride}-th fitted frame, every camera with a mask",
    }


def silhouette_outline_image(work: WorkDir, model, subject: str, sequence: str, camera_id: str,
                             frame: int) -> np.ndarray:
    """BGR image of one frame: the extracted image (or the mask in grey where there is none)
    with the mask's outline (red) and the fitted mesh's silhouette outline (green)."""
    import cv2

    from pipeline.artifacts import read_fit_sequence, read_sequence_info
    from pipeline.checks.plausibility import posed_bodies
    from pipeline.synthetic.render import mesh_silhouette

    info = read_sequence_info(work.sequence_json(subject, sequence))
    camera = info.camera(camera_id)
    mask_file = info.mask(MASK_KIND, camera_id)
    if mask_file is None:
        raise DataError(f"{work.sequence_json(subject, sequence)}: no {MASK_KIND} mask for camera {camera_id}")
    mask = mask_file.read(frame)
    fit = read_fit_sequence(work.fit_sequence(subject, sequence))
    row = fit.row_of(frame)
    params = {k: np.asarray(v, dtype=np.float64) for k, v in fit.smplx_kwargs([row]).items()}
    params["betas"] = np.asarray(fit.betas, dtype=np.float64)
    vertices, _ = posed_bodies(model, params)
    fitted = mesh_silhouette(vertices[0], np.asarray(model.faces, dtype=np.int64), camera)
    image = cv2.imread(str(work.image(subject, sequence, camera_id, frame)))
    if image is None or image.shape[:2] != mask.shape:
        image = np.where(mask[..., None], 150, 40).astype(np.uint8).repeat(3, axis=-1)
    for m, color, width in ((mask, (40, 40, 230), 3), (fitted, (40, 200, 40), 1)):  # both stay visible
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(image, contours, -1, color, width)
    return image
