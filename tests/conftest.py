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
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
