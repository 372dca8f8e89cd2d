"""``--wait`` says what it waits for; the read side of the lock (audit) shares with readers only."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.errors import WorkDirBusy
from pipeline.store import WorkDir


def test_wait_says_what_it_waits_for(tmp_path, capsys):
    work = WorkDir(tmp_path)
    held = work.lock()
    held.acquire()
    threading.Timer(0.5, held.release).start()
    t0 = time.monotonic()
    with work.lock(wait=True):
        waited = time.monotonic() - t0
    assert waited >= 0.4
    err = capsys.readouterr().err
    assert f"waiting for the run holding {work.root}" in err and "to finish" in err


def test_readers_share_and_exclude_a_writer(tmp_path):
    work = WorkDir(tmp_path)
    with work.lock(shared=True), work.lock(shared=True):
        with pytest.raises(WorkDirBusy):
            work.lock().acquire()
    with work.lock():
        with pytest.raises(WorkDirBusy):
            work.lock(shared=True).acquire()
