"""Helpers shared by the tests: tiny releases written from scratch, the synthetic model copied
into a work dir, a perfect fit from a synthetic release's ground truth.

Plain functions (fixtures live in conftest.py); import them with ``from helpers import …``.
"""

from __future__ import annotations

from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
"""The project's shared reference data (beside the checkout); tests that need it skip without it."""


TINY_SEQUENCES = ((14, 1), (4, 1))
"""(action id, subaction): Walking 1 and, for S1, "Eating 2" (an irregular basename)."""


def tiny_frame(camera_index: int, frame: int, width: int = 64, height: int = 48):
    """(H, W, 3) uint8 BGR test picture: a gradient per camera and a bright block that moves
    with the frame index, so frames (and off-by-one mistakes) are easy to tell apart."""
    import numpy as np

    v, u = np.mgrid[0:height, 0:width]
    image = np.stack([(u * 3 + 40 * camera_index) % 256, (v * 4) % 256,
                      np.full_like(u, 60 + 20 * camera_index)], axis=-1).astype(np.uint8)
    x = (frame * 7) % (width - 16)
    y = (frame * 5) % (height - 16)
    image[y:y + 16, x:x + 16] = (255, 255, 255)
    return image


def write_tiny_video(path, camera_index: int, frames: int, width: int = 64, height: int = 48) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 50.0, (width, height))
    assert writer.isOpened(), path
    for i in range(frames):
        writer.write(tiny_frame(camera_index, i, width, height))
    writer.release()


def tiny_mocap_mm(subject: str, action_id: int, frames: int):
    """(T, 96) float mm world joints: a deterministic wobble around a standing height."""
    import numpy as np

    rng = np.random.default_rng([int(subject[1:]), action_id])
    base = rng.normal(0.0, 300.0, (1, 32, 3)) + np.array([0.0, 0.0, 1000.0])
    t = np.arange(frames)[:, None, None]
    return (base + 20.0 * np.sin(0.3 * t + rng.uniform(0, 6, (1, 32, 3)))).reshape(frames, 96)


def write_tiny_release(root, subjects=("S1",), sequences=TINY_SEQUENCES, frames: int = 12,
                       drop_last: dict | None = None, corrupt: tuple = ()):
    """A Human3.6M-layout release with tiny videos (64×48, mp4v) and real CDF/metadata files.

    drop_last: {(subject, basename, camera): n} frames missing at a video's end;
    corrupt: (subject, basename, camera) videos truncated to a quarter (unopenable).
    Returns the root.
    """
    import os

    from pipeline.release.h36m import mocap_path, video_path, write_pose_cdf
    from pipeline.release.metadata import default_metadata, write_metadata

    drop_last = drop_last or {}
    metadata = default_metadata()
    root.mkdir(parents=True, exist_ok=True)
    write_metadata(root / "metadata.xml", metadata)
    for subject in subjects:
        for action_id, sub in sequences:
            basename = metadata.basename(subject, action_id, sub)
            cdf = mocap_path(root, subject, basename)
            cdf.parent.mkdir(parents=True, exist_ok=True)
            write_pose_cdf(cdf, tiny_mocap_mm(subject, action_id, frames))
            for index, cam in enumerate(metadata.camera_ids):
                path = video_path(root, subject, basename, cam)
                write_tiny_video(path, index, frames - drop_last.get((subject, basename, cam), 0))
                if (subject, basename, cam) in corrupt:
                    os.truncate(path, path.stat().st_size // 4)
    return root


def install_model(model_cache, work) -> None:
    """Copy the cached synthetic model into ``work/bodymodel`` (found up to date there)."""
    import shutil

    shutil.copytree(model_cache / "bodymodel", work / "bodymodel", dirs_exist_ok=True)


def extract_with_true_fit(work, release, model_cache, **run_options):
    """WORK with the synthetic model installed, ``release`` extracted (``run_options`` go to
    run_stages: stride, workers or scheduler) and a perfect fit; the extract StageReport."""
    from pipeline.orchestration.api import run_stages

    install_model(model_cache, work)
    (report,) = run_stages(["extract"], work, h36m=release, progress=False, **run_options)
    fake_fit_from_groundtruth(release, work)
    return report


def fake_fit_from_groundtruth(release, work, mpjpe_mm: float = 0.0) -> None:
    """WORK/fit/<S>/<seq>.npz made from the release's true params (a perfect fit).

    Lets sample/validate/audit tests run without the fitter, on exactly known bodies.
    """
    from pipeline.synthetic.release import write_groundtruth_fits

    write_groundtruth_fits(release, work, mpjpe_mm)


def decoded_frames(video) -> list:
    """Every frame of a video by a plain sequential OpenCV read (the independent reference)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            cap.release()
            return frames
        frames.append(frame)


def concat_meshes(*meshes):
    """(vertices, faces) of several (V_i, 3), (F_i, 3) meshes as one mesh."""
    import numpy as np

    vertices, faces, offset = [], [], 0
    for v, f in meshes:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces)


def capsule_mesh(a, b, radius: float, count: int = 24):
    """Capsule mesh (vertices (V, 3), faces (F, 3)) around segment a-b, metres (trimesh's is
    along z; rotated and moved there)."""
    import numpy as np
    import trimesh

    a, b = np.asarray(a, float), np.asarray(b, float)
    axis = b - a
    mesh = trimesh.creation.capsule(height=np.linalg.norm(axis), radius=radius, count=[count, count])
    transform = trimesh.geometry.align_vectors([0, 0, 1], axis / np.linalg.norm(axis))
    transform[:3, 3] = (a + b) / 2
    mesh.apply_transform(transform)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def true_fit_work(tmp_path_factory, name: str, release, model_cache):
    """(WORK, fit npz path, its arrays as a dict) of ``release`` extracted at stride 2 with a
    perfect fit of S9 Walking_1: tests write known errors or poses into the arrays."""
    import numpy as np

    work = tmp_path_factory.mktemp(name)
    extract_with_true_fit(work, release, model_cache, stride=2, workers=1)
    path = work / "fit" / "S9" / "Walking_1.npz"
    with np.load(path) as z:
        return work, path, {k: z[k] for k in z.files}
