"""Progress inside a unit (frames decoded, samples written), reported from the worker.

A stage's ``run_unit`` calls ``unit_progress(done, total, "frames")`` as it goes. The runner
(``pipeline.orchestration.runner``) wraps each unit in ``reporting(sink)``; the sink it passes
on a dask worker sends the numbers as a dask event (``Worker.log_event``) to the scheduler,
which forwards them to the client that subscribed to the run's topic. Why events and not a
progress file or a dask Queue: they travel on the worker's existing connection to the
scheduler (no shared file system needed, nothing left in WORK, no polling of the scheduler),
are batched by distributed, and a lost message only makes a bar a little late.

Outside a unit (plain function calls, tests) ``unit_progress`` does nothing. Reports are
throttled here to one per ``MIN_INTERVAL_S`` (and the last one), so a stage may call it for
every frame.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

MIN_INTERVAL_S = 0.5
"""At most one report per unit in this many seconds (besides the first and the last)."""

Sink = Callable[[int, int, str], None]
"""sink(done, total, what): receives one report."""

_local = threading.local()


@contextlib.contextmanager
def reporting(sink: Sink | None) -> Iterator[None]:
    """Within: ``unit_progress`` calls of this thread go to ``sink`` (None: dropped)."""
    saved = getattr(_local, "state", None)
    _local.state = [sink, 0.0] if sink is not None else None
    try:
        yield
    finally:
        _local.state = saved


def unit_progress(done: int, total: int, what: str) -> None:
    """Report that ``done`` of ``total`` items (``what``: "frames", "samples") of the current
    unit are finished. Cheap; never raises (progress must not fail a unit)."""
    state = getattr(_local, "state", None)
    if state is None:
        return
    now = time.monotonic()
    if done < total and now - state[1] < MIN_INTERVAL_S:
        return
    state[1] = now
    with contextlib.suppress(Exception):
        state[0](int(done), int(total), str(what))
