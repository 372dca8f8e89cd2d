"""``h36m-nvf show-fit``: one fitted frame drawn onto its extracted image, after checking the
request piece by piece so that each mistake gets its own message.

The checks run in the order a user's mistakes nest: subject, sequence (a missing subaction,
"Walking" for "Walking_1", gets the candidates), camera, frame past the end, frame not
fitted, frame without an image. The image format follows the output's suffix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import DataError, SelectionError
from pipeline.store import WorkDir

IMAGE_FORMATS = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg"}
"""Output suffix → OpenCV encoder."""


def _listing(names, limit: int = 12) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def check_request(work: WorkDir, subject: str, sequence: str, frame: int, camera: str) -> None:
    """SelectionError (usage) or DataError naming the one thing wrong with the request."""
    from pipeline.artifacts import (
        fitted_sequences,
        fitted_subjects,
        read_fit_sequence,
        read_sequence_info,
    )

    subjects = fitted_subjects(work)
    if subject not in subjects:
        hint = next((s for s in subjects if s.lower() == subject.lower()), None)
        raise SelectionError(f"subject {subject}: not fitted in {work.root}"
                             + (f"; did you mean {hint}?" if hint else "")
                             + f" (fitted: {_listing(subjects) or 'none; run fit first'})")
    sequences = fitted_sequences(work, subject)
    if sequence not in sequences:
        close = [s for s in sequences if s.lower().startswith(sequence.lower().rstrip("_") + "_")]
        raise SelectionError(
            f"sequence {sequence}: not fitted for {subject}"
            + (f"; give the subaction: {_listing(close)}" if close else "")
            + f" (fitted: {_listing(sequences)})")
    info = read_sequence_info(work.sequence_json(subject, sequence))
    cameras = [c.id for c in info.cameras]
    if camera not in cameras:
        raise SelectionError(f"--camera {camera}: not a camera of {subject} {sequence} (cameras: {_listing(cameras)})")
    if frame >= info.num_frames:
        raise SelectionError(f"--frame {frame}: past the end of {subject} {sequence} "
                             f"(frames 0 to {info.num_frames - 1})")
    fit = read_fit_sequence(work.fit_sequence(subject, sequence))
    fitted = np.asarray(fit.frame_index)
    if frame not in set(fitted.tolist()):
        step = int(np.min(np.diff(fitted))) if len(fitted) > 1 else 0
        raise DataError(f"{fit.path}: frame {frame} was not fitted (fitted: {len(fitted)} frames from "
                        f"{int(fitted.min())} to {int(fitted.max())}" + (f", every {step}" if step > 1 else "")
                        + "); pick a fitted frame or fit with a stride that keeps it")
    image = work.image(subject, sequence, camera, frame)
    if not image.is_file():
        have = sorted(int(p.stem.rsplit("_", 1)[1]) - 1 for p in image.parent.glob(
            f"{subject}_{sequence}.{camera}_*.jpg")) if image.parent.is_dir() else []
        near = min(have, key=lambda f: abs(f - frame)) if have else None
        raise DataError(f"{image}: no extracted image for frame {frame}"
                        + (f" (nearest with an image: {near})" if near is not None else " (no image of this camera)")
                        + "; extract with a stride that keeps it")


def encode_image(image: np.ndarray, output: Path) -> bytes:
    """``image`` encoded in the format of ``output``'s suffix (SelectionError for another one)."""
    import cv2

    ext = IMAGE_FORMATS.get(output.suffix.lower())
    if ext is None:
        raise SelectionError(f"-o {output}: unknown image format {output.suffix or '(no suffix)'}; "
                             f"use {', '.join(IMAGE_FORMATS)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else []
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise DataError(f"{output}: cannot encode the image as {ext}")
    return data.tobytes()


def show_fit(work: WorkDir, model_path: Path, subject: str, sequence: str, frame: int, camera: str,
             output: Path) -> str:
    """Check the request, draw the overlay, write ``output``; return the frame's text report."""
    from pipeline.checks.audit import describe_frame
    from pipeline.checks.overlays import render_fit_overlay
    from pipeline.store import atomic_write_bytes

    encode_image(np.zeros((1, 1, 3), np.uint8), output)  # a bad suffix fails before any work
    check_request(work, subject, sequence, frame, camera)
    image = render_fit_overlay(work, model_path, subject, sequence, frame, camera)
    atomic_write_bytes(output, encode_image(image, output))
    return describe_frame(work, model_path, subject, sequence, frame)
