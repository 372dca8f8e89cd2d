"""Shared fixtures: a real dask LocalCluster and a tiny Human3.6M-layout release.

Both are session-scoped (one per pytest-xdist worker) because starting worker processes and
writing videos cost seconds.
"""

from __future__ import annotations

import logging

import pytest
from helpers import write_tiny_release


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


@pytest.fixture(scope="session")
def synthetic_release(tmp_path_factory, model_cache):
    """A read-only synthetic release: S9 "Walking 1", 10 frames, 4 cameras at scale 0.2 (200 px)."""
    from pipeline.synthetic.release import SyntheticReleaseConfig, write_synthetic_release

    root = tmp_path_factory.mktemp("synthetic_release")
    config = SyntheticReleaseConfig(subjects=("S9",), sequences=((14, 1),), frames=10, scale=0.2,
                                    model_cache=str(model_cache))
    return write_synthetic_release(root, config)


