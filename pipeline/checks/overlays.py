"""The audit's overlays: a fitted frame's mesh outline, fitted and mocap joints drawn onto the
extracted image, and the worst frames chosen for drawing."""


from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fitting.joint_sets import H36M17, H36M17_FROM_H36M32
from pipeline.errors import DataError
from pipeline.release.cameras import Camera
from pipeline.store import WorkDir

if TYPE_CHECKING:
    from pipeline.checks.audit import SequenceFit

MESH_BGR = (230, 170, 90)
"""Colour of the fitted mesh in overlays."""
FITTED_BGR = (40, 200, 40)
"""Fitted joints (green)."""
MOCAP_BGR = (40, 40, 230)
"""Mocap joints (red), drawn over the fitted ones."""


def load_cameras(work: WorkDir, subject: str, sequence: str) -> list[Camera]:
    from pipeline.artifacts import read_sequence_info

    return list(read_sequence_info(work.sequence_json(subject, sequence)).cameras)


def fitted_body(model_path: Path, fit_path: Path, frame: int):
    """(vertices (V,3), faces (F,3), h36m17 joints (17,3)) of one fitted frame, world, metres."""
    import torch

    from fitting.bodymodel import cached_body_model_f64
    from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx
    from pipeline.artifacts import read_fit_sequence

    model = cached_body_model_f64(str(model_path))
    fit = read_fit_sequence(fit_path)
    kwargs = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in fit.smplx_kwargs(fit.row_of(frame)).items()}
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
    # fitted (green, larger dots) first, mocap (red, smaller) on top: where they coincide the
    # red centre stays visible inside a green ring
    for pts, color, radius in ((fitted, FITTED_BGR, 4), (mocap, MOCAP_BGR, 2)):
        uv = np.asarray(camera.project(pts))
        for j, p in enumerate(H36M17.parents):
            if p >= 0:
                cv2.line(out, _pt(uv[j]), _pt(uv[p]), color, 1, cv2.LINE_AA)
        for q in uv:
            cv2.circle(out, _pt(q), radius, color, -1, cv2.LINE_AA)
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
    from pipeline.artifacts import read_joints_world

    mocap = read_joints_world(work.joints_world(subject, sequence))[frame][H36M17_FROM_H36M32]
    return draw_overlay(image, cameras[camera_id], verts, faces, fitted, mocap)


def _worst_with_images(work: WorkDir, fits: list[SequenceFit], camera: str | None, n: int,
                       score: dict[tuple[str, str], np.ndarray] | None = None) -> list[tuple]:
    """The n worst frames that have an extracted image, as (score, subject, seq, frame, camera);
    score: per (subject, sequence) (T,) values, default the MPJPE."""
    rows = []
    for f in fits:
        cams = [c.id for c in load_cameras(work, f.subject, f.sequence)]
        cams = [camera] if camera in cams else cams
        values = f.mpjpe_mm if score is None else score[(f.subject, f.sequence)]
        for e, i in zip(values, f.frame_index):
            if not np.isfinite(e):
                continue
            cam = next((c for c in cams if work.image(f.subject, f.sequence, c, int(i)).exists()), None)
            if cam is not None:
                rows.append((float(e), f.subject, f.sequence, int(i), cam))
    rows.sort(key=lambda r: (-r[0], r[1], r[2], r[3]))
    return rows[:n]


def _worst_frames(fits: list[SequenceFit], score: dict[tuple[str, str], np.ndarray], n: int, key: str) -> list[dict]:
    frames = [(float(e), f.subject, f.sequence, int(i)) for f in fits
              for e, i in zip(score[(f.subject, f.sequence)], f.frame_index) if np.isfinite(e)]
    frames.sort(key=lambda x: (-x[0], x[1], x[2], x[3]))
    return [{"subject": s, "sequence": q, "frame": i, key: e} for e, s, q, i in frames[:n]]
