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


def _faults_of_reused_buffers(mb: int = 20, times: int = 10) -> int:
    """In a unit: minor page faults while a buffer of ``mb`` MB is allocated, written and freed
    ``times`` times, a small result kept after each (what the fitter does with its LM
    Jacobians). glibc's malloc directly: numpy asks for huge pages, which fault fewer times."""
    import ctypes
    import resource

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    kept = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        buffer = libc.malloc(mb << 20)
        ctypes.memset(buffer, 1, mb << 20)
        kept.append(libc.malloc(64 << 10))
        libc.free(buffer)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    for p in kept:
        libc.free(p)
    return faults


def test_a_local_workers_large_buffers_are_reused_not_faulted_in_again(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    client = get_client(workers=1)
    try:
        faults = client.submit(_faults_of_reused_buffers, pure=False).result()
    finally:
        close_client(client)
    pages = (20 << 20) // os.sysconf("SC_PAGE_SIZE")
    # a fresh mmap per buffer faults every page in each time (10 x pages); a reused one once
    assert faults < 3 * pages, f"{faults} page faults for 10 uses of a {pages}-page buffer"
