"""Fit units take the cores of idle workers (a subject's lone shape unit), not of busy ones."""

from __future__ import annotations

import sys
import time

import cloudpickle
import torch

from pipeline.stages.fit import idle_core_threads

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this module


def _threads_inside(wait_s: float = 0.0) -> tuple[int, int]:
    import torch

    from pipeline.stages.fit import idle_core_threads

    time.sleep(wait_s)
    default = torch.get_num_threads()
    torch.set_num_threads(1)  # like the workers h36m-nvf starts (one-thread pools), whatever this cluster set
    try:
        before = torch.get_num_threads()
        with idle_core_threads():
            inside = torch.get_num_threads()
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(default)
    return before, inside


def _busy(seconds: float) -> int:
    time.sleep(seconds)
    return 0


def test_a_lone_unit_uses_the_idle_workers_core(dask_client):
    before, inside = dask_client.submit(_threads_inside, pure=False).result()
    assert before == 1 and inside == 2  # two one-thread workers, the other one idle


def test_a_unit_beside_a_busy_worker_keeps_one_thread(dask_client):
    busy = dask_client.submit(_busy, 3.0, pure=False)
    time.sleep(0.5)
    before, inside = dask_client.submit(_threads_inside, 0.5, pure=False).result()
    busy.result()
    assert before == 1 and inside == 1


def test_outside_a_worker_nothing_changes():
    before = torch.get_num_threads()
    with idle_core_threads():
        assert torch.get_num_threads() == before
