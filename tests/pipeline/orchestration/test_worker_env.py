"""Local dask workers really start with the runner's environment (thread pools, allocator)."""

from __future__ import annotations

import os

from pipeline.orchestration.runner import LOCAL_WORKER_ENV, close_client, get_client


def _worker_view() -> dict:
    """Inside a worker: the environment the process was started with (what glibc and numba
    read at start-up; /proc/self/environ does not change later) and numba's pool width."""
    import numba

    with open("/proc/self/environ", "rb") as f:
        at_start = dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)
    return {"at_start": at_start, "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "pid": os.getpid()}


def test_local_workers_are_spawned_with_the_worker_environment(monkeypatch):
    for key in LOCAL_WORKER_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")  # exported by the user: kept
    before = dict(os.environ)
    client = get_client(workers=1)
    try:
        view = next(iter(client.run(_worker_view).values()))
    finally:
        close_client(client)
    assert view["pid"] != os.getpid()
    at_start = view["at_start"]
    assert at_start["MALLOC_MMAP_THRESHOLD_"] == LOCAL_WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]
    assert at_start["NUMBA_NUM_THREADS"] == "1" and view["numba_threads"] == 1
    assert at_start["OMP_NUM_THREADS"] == "1"
    assert at_start["OPENBLAS_NUM_THREADS"] == "3"
    assert "MALLOC_TRIM_THRESHOLD_" in at_start  # dask's own pre-spawn settings stay
    # this process's environment is as it was
    assert {k: os.environ.get(k) for k in LOCAL_WORKER_ENV} == {k: before.get(k) for k in LOCAL_WORKER_ENV}
