"""Shared fixtures: a real dask LocalCluster and a tiny Human3.6M-layout release.

Both are session-scoped (one per pytest-xdist worker) because starting worker processes and
writing videos cost seconds.
"""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def dask_client():
    """A real LocalCluster: 2 worker processes, 1 thread each (like `h36m-nvf --workers 2`)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


# --------------------------------------------------------------------------- tiny release

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


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory):
    """Read-only tiny release: S1 "Walking 1" and "Eating 2", 12 frames, 4 cameras of 64×48;
    camera 55011271 of "Eating 2" is 2 frames short (usable count 10). Copy it to modify it."""
    root = tmp_path_factory.mktemp("tiny_release")
    return write_tiny_release(root, drop_last={("S1", "Eating 2", "55011271"): 2})


# --------------------------------------------------------------------------- synthetic model + work dir


@pytest.fixture(scope="session", autouse=True)
def _no_user_cache():
    """Tests (and the CLI processes they start) never read or write ~/.cache/h36m-nvf."""
    patch = pytest.MonkeyPatch()
    patch.setenv("H36M_NVF_CACHE", "off")
    yield
    patch.undo()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """A work-dir-like folder whose ``bodymodel/`` holds the synthetic SMPL-X model.

    Generated once for the whole test session: pytest-xdist workers share the folder above
    their base temp dir and take a file lock, so the ~20 s generation runs once.
    """
    import fcntl

    from fitting.bodymodel import resolve_body_model

    shared = tmp_path_factory.getbasetemp().parent / "model-cache"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        resolve_body_model("synthetic", shared)
    return shared


def install_model(model_cache, work) -> None:
    """Copy the cached synthetic model into ``work/bodymodel`` (found up to date there)."""
    import shutil

    shutil.copytree(model_cache / "bodymodel", work / "bodymodel", dirs_exist_ok=True)


@pytest.fixture(scope="session")
def synthetic_release(tmp_path_factory, model_cache):
    """A read-only synthetic release: S9 "Walking 1", 10 frames, 4 cameras at scale 0.2 (200 px)."""
    from pipeline.synthetic.release import SyntheticReleaseConfig, write_synthetic_release

    root = tmp_path_factory.mktemp("synthetic_release")
    config = SyntheticReleaseConfig(subjects=("S9",), sequences=((14, 1),), frames=10, scale=0.2,
                                    model_cache=str(model_cache))
    return write_synthetic_release(root, config)


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
