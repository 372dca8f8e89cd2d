"""Fit units run torch on one thread per worker, also beside an idle worker.

Why not more: the fitter's operations are small (a 512-frame LM batch), so torch's OpenMP
threads meet at a barrier every few microseconds; on this 2-core machine a shape fit on two
threads took 9.1 s quiet against 11.9 s on one, but 28 s to over 180 s when another process
took a core (a spinning thread waits for one that is not scheduled). A unit cannot know that
its neighbour stays idle (the dependents of a shape unit become runnable, and start on the
idle worker, while it is still asking), so parallelism comes from units, one thread each.
"""

from __future__ import annotations

import sys

import cloudpickle

from pipeline.orchestration.runner import close_client, get_client

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this module


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_fit_units_run_torch_on_one_thread_also_beside_an_idle_worker():
    from fitting.smplify import FitConfig

    client = get_client(workers=2)  # the other worker stays idle
    try:
        in_unit = client.submit(_torch_threads, pure=False).result()
    finally:
        close_client(client)
    assert in_unit == 1  # OMP_NUM_THREADS=1 at the worker's spawn (LOCAL_WORKER_ENV)
    assert FitConfig(device="cpu").cpu_threads == 1  # and the fitter's own setting within its fits
