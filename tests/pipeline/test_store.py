"""pipeline.store: layout, atomic writes, fingerprints, done-records, status, lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from common.hashing import sha256_file
from pipeline.errors import WorkDirBusy
from pipeline.store import (
    SMALL_FILE_BYTES,
    FingerprintCache,
    WorkDir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npy,
    clean_temp_files,
    fingerprint,
    fingerprint_matches,
    unit_status,
    write_done_record,
)


def test_layout_matches_design(tmp_path):
    w = WorkDir(tmp_path)
    assert w.image(subject="S5", seq="Waiting_1", camera="60457274", frame=3050) == (
        tmp_path / "images/S5/S5_Waiting_1.60457274_003051.jpg"
    )
    assert w.sequence_json("S1", "Walking_1") == tmp_path / "extract/S1/Walking_1/sequence.json"
    assert w.joints_world("S1", "Walking_1") == tmp_path / "extract/S1/Walking_1/joints_world.npy"
    assert w.done_record("extract", "S1/Walking_1/54138969") == (
        tmp_path / "extract/done/S1/Walking_1/54138969.done.json"
    )
    assert w.fit_sequence("S1", "Walking_1") == tmp_path / "fit/S1/Walking_1.npz"
    assert w.relative(w.run_json) == "run.json"
    for bad in ("", "/abs", "S1/../x", "S1//x"):
        with pytest.raises(ValueError):
            w.done_record("extract", bad)


def test_atomic_writes_round_trip_and_leave_no_temp(tmp_path):
    atomic_write_bytes(tmp_path / "a/b.bin", b"xyz")
    atomic_write_json(tmp_path / "c.json", {"b": 1, "a": [1.5]})
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic_write_npy(tmp_path / "d.npy", arr)
    assert (tmp_path / "a/b.bin").read_bytes() == b"xyz"
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": [1.5], "b": 1}
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), arr)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_atomic_path_error_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_clean_temp_files_removes_only_temp_names(tmp_path):
    keep = tmp_path / "images/S1/S1_W_1.1_000001.jpg"
    keep.parent.mkdir(parents=True)
    keep.write_bytes(b"j")
    stale = [tmp_path / "images/S1/.S1_W_1.1_000002.jpg.123-abcd.tmp", tmp_path / "shard.h5.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    assert sorted(clean_temp_files(tmp_path)) == sorted(stale)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [keep]


def test_fingerprints_small_big_and_touch(tmp_path):
    small = tmp_path / "small.cdf"
    small.write_bytes(b"a" * 100)
    fp = fingerprint(small)
    assert fp["size"] == 100 and fp["sha256"] == sha256_file(small)
    # same bytes, new mtime: still the same input
    os.utime(small, ns=(fp["mtime_ns"] + 10**9, fp["mtime_ns"] + 10**9))
    assert fingerprint_matches(fp, fingerprint(small))
    small.write_bytes(b"b" * 100)
    os.utime(small, ns=(fp["mtime_ns"] + 2 * 10**9,) * 2)
    assert not fingerprint_matches(fp, fingerprint(small))
    # big files are not hashed; a new mtime means changed
    big = tmp_path / "big.mp4"
    with open(big, "wb") as f:
        f.truncate(SMALL_FILE_BYTES + 1)
    fpb = fingerprint(big)
    assert "sha256" not in fpb
    assert fingerprint_matches(fpb, fingerprint(big))
    os.utime(big, ns=(fpb["mtime_ns"] + 10**9,) * 2)
    assert not fingerprint_matches(fpb, fingerprint(big))
    assert fingerprint(tmp_path / "nope")["missing"]
    cache = FingerprintCache()
    assert cache(small) == fingerprint(small)


def test_unit_status_transitions(tmp_path):
    w = WorkDir(tmp_path)
    src = tmp_path / "in.txt"
    src.write_text("input")
    out = tmp_path / "toy/out.bin"
    key, params = "S1/x", {"stride": 5}
    status = lambda **kw: unit_status(  # noqa: E731
        w, "toy", key, **{"config_hash": "h1", "params": params,
                          "inputs": {"src": fingerprint(src)}, "outputs": [out], **kw})
    assert status() == "missing"
    atomic_write_bytes(out, b"0123")
    rec = write_done_record(w, "toy", key, stage_version="1", params=params, config_hash="h1",
                            inputs={"src": fingerprint(src)}, outputs=[out])
    assert rec["outputs"]["toy/out.bin"] == {"size": 4, "sha256": sha256_file(out)}
    assert status() == "up to date"
    assert status(force=True) == "forced"
    assert status(config_hash="h2", params={"stride": 10}).startswith("stale (options changed: stride 5→10")
    src.write_text("changed")
    assert status().startswith("stale (input changed:")
    src.write_text("input")
    assert status() == "up to date"  # same bytes again (sha256 of a small file)
    out.write_bytes(b"01")
    assert status() == "stale (output modified: toy/out.bin)"
    out.unlink()
    assert status() == "stale (output missing: toy/out.bin)"
    w.done_record("toy", key).write_text("{not json")
    assert status() == "stale (unreadable done-record)"


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    w = WorkDir(tmp_path)
    with w.lock():
        with pytest.raises(WorkDirBusy, match=r"another run holds this work dir \(pid \d+\).*--wait"):
            w.lock().acquire()
    with w.lock():  # released: free again
        pass


def test_lock_wait_blocks_until_released_and_says_what_it_waits_for(tmp_path, capsys):
    w = WorkDir(tmp_path)
    held = w.lock()
    held.acquire()
    threading.Timer(0.3, held.release).start()
    t0 = time.monotonic()
    with w.lock(wait=True):
        assert time.monotonic() - t0 >= 0.25
    err = capsys.readouterr().err
    assert f"waiting for the run holding {w.root}" in err and "to finish" in err


def test_readers_share_and_exclude_a_writer(tmp_path):
    """The read side of the lock (audit) shares with readers only."""
    work = WorkDir(tmp_path)
    with work.lock(shared=True), work.lock(shared=True):
        with pytest.raises(WorkDirBusy):
            work.lock().acquire()
    with work.lock():
        with pytest.raises(WorkDirBusy):
            work.lock(shared=True).acquire()


def test_lock_dies_with_its_process(tmp_path):
    code = (
        "import sys, time; from pipeline.store import WorkDir; "
        f"l = WorkDir({str(tmp_path)!r}).lock(); l.acquire(); print('locked', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(WorkDirBusy):
            WorkDir(tmp_path).lock().acquire()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    with WorkDir(tmp_path).lock():  # no stale lock after kill -9
        pass


def _stale_reason(tmp_path, old: dict, new: dict) -> str:
    """The status of a unit recorded with ``old`` params, asked about with ``new`` ones."""
    w = WorkDir(tmp_path)
    out = tmp_path / "toy/out.bin"
    atomic_write_bytes(out, b"x")
    write_done_record(w, "toy", "u", stage_version="1", params=old, config_hash="h-old", inputs={},
                      outputs=[out])
    json.loads(w.done_record("toy", "u").read_text())  # a JSON record: tuples came back as lists
    return unit_status(w, "toy", "u", config_hash="h-new", params=new, inputs={}, outputs=[out])


def test_stale_reason_names_only_changed_keys_with_old_and_new_values(tmp_path):
    sampler = {"points": 2048, "near_fraction": 0.5, "sigmas": (0.01, 0.05)}
    old = {"crop": 128, "sampler": sampler, "stride": 64, "seed": 0,
           "samples": [f"S9/Walking_1/54138969/{f:06d}" for f in range(0, 6400, 64)]}
    # same sampler with its keys in another order and a tuple that JSON gives back as a list
    new = {"seed": 0, "sampler": dict(reversed(list(sampler.items()))), "crop": 256, "stride": 20,
           "samples": [f"S9/Walking_1/54138969/{f:06d}" for f in range(0, 6400, 20)]}
    reason = _stale_reason(tmp_path, old, new)
    assert reason.startswith("stale (options changed: ")
    assert "crop 128→256" in reason and "stride 64→20" in reason  # a --test-stride change is named
    assert "sampler" not in reason and "seed" not in reason  # key order is not a change
    assert ("samples 100→320 items (+\"S9/Walking_1/54138969/000020\" and 299 more, "
            "-\"S9/Walking_1/54138969/000064\" and 79 more)") in reason
    assert len(reason) < 250  # not both full sample lists


def test_stale_reason_shortens_many_changes_and_nested_values(tmp_path):
    old = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "sampler": {"points": 2048}}
    new = {"a": 0, "b": 0, "c": 0, "d": 0, "e": 0, "sampler": {"points": 4096}}
    reason = _stale_reason(tmp_path, old, new)
    assert reason == "stale (options changed: a 1→0, b 2→0, c 3→0, d 4→0, and 2 more)"
    assert _stale_reason(tmp_path, {"sampler": {"points": 2048}}, {"sampler": {"points": 4096}}) == \
        "stale (options changed: sampler.points 2048→4096)"
    assert _stale_reason(tmp_path, {"x": [1, 2]}, {"x": (1, 2)}) == "stale (stage version 1 changed)"
