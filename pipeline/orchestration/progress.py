"""What a running stage shows: units done, items inside units (frames, samples), rate, ETA.

``ProgressBoard`` aggregates unit completions (from the client's futures) and the in-unit
reports the workers send (``pipeline.stages.progress``, delivered as dask events). It renders
either a one-line bar redrawn in place (stderr is a terminal) or, for logs (``--no-progress``,
or stderr redirected to a file), a plain line every ``interval`` seconds: never carriage
returns in a file.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass

LOG_INTERVAL_S = 30.0
"""Seconds between progress lines in log mode (``--no-progress`` or stderr not a terminal)."""
BAR_REFRESH_S = 0.25
"""Seconds between redraws of the bar on a terminal."""


@dataclass(frozen=True)
class ProgressMode:
    """How a stage shows progress."""

    bar: bool
    """Redraw one line in place (only sensible on a terminal)."""
    interval: float | None
    """Log mode: a line every this many seconds (None: silent)."""


def progress_mode(progress: bool | float | None, stream=None) -> ProgressMode:
    """``True``: a bar on a terminal, else a line every LOG_INTERVAL_S; ``False``: lines every
    LOG_INTERVAL_S; a number: lines every that many seconds; ``None`` or 0: silent."""
    stream = stream or sys.stderr
    if progress is None or (progress is not True and progress is not False and progress <= 0):
        return ProgressMode(bar=False, interval=None)
    if progress is True:
        tty = hasattr(stream, "isatty") and stream.isatty()
        return ProgressMode(bar=tty, interval=None if tty else LOG_INTERVAL_S)
    if progress is False:
        return ProgressMode(bar=False, interval=LOG_INTERVAL_S)
    return ProgressMode(bar=False, interval=float(progress))


def format_duration(seconds: float) -> str:
    """"0:42", "1:02:03"."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBoard:
    """The progress of one stage's run; feed it with ``unit_finished`` and ``item_report``,
    call ``tick()`` often (it draws only when due) and ``close()`` at the end."""

    def __init__(self, stage: str, total_units: int, skipped: int, mode: ProgressMode,
                 stream=None, clock=time.monotonic) -> None:
        self.stage, self.total, self.skipped, self.mode = stage, total_units, skipped, mode
        self.stream = stream or sys.stderr
        self.clock = clock
        self.t0 = clock()
        self.finished = 0  # this run's units, failed included
        self.failed = 0
        self.items: dict[str, tuple[int, int, str]] = {}  # unit -> (done, total, what)
        self.first_item_at: float | None = None
        self._last_draw = self.t0
        self._drawn = False

    # --- input
    def unit_finished(self, key: str, ok: bool) -> None:
        self.finished += 1
        self.failed += not ok
        if key in self.items:
            _, total, what = self.items[key]
            self.items[key] = (total, total, what)  # a unit that ends has done all its items

    def item_report(self, key: str, done: int, total: int, what: str) -> None:
        if self.first_item_at is None:
            self.first_item_at = self.clock()
        self.items[key] = (done, total, what)

    # --- output
    def text(self) -> str:
        now = self.clock()
        done_units = self.skipped + self.finished
        parts = [f"{self.stage}: {done_units}/{self.total} units"
                 + (f" ({self.failed} failed)" if self.failed else "")]
        to_run = self.total - self.skipped
        eta = None
        if self.items:
            what = Counter(w for _, _, w in self.items.values()).most_common(1)[0][0]
            mine = [(d, t) for d, t, w in self.items.values() if w == what]
            done_items = sum(d for d, _ in mine)
            known = sum(t for _, t in mine)
            unreported = max(0, to_run - len(self.items))
            estimate = known + unreported * known / len(mine)
            parts.append(f"{what} {done_items}/{int(round(estimate))}"
                         + ("+" if unreported else ""))
            elapsed = now - (self.first_item_at or now)
            if elapsed > 1.0 and done_items:
                rate = done_items / elapsed
                parts.append(f"{rate:.1f} {what}/s")
                eta = (estimate - done_items) / rate
        elif self.finished:
            rate = self.finished / max(now - self.t0, 1e-9)
            eta = (to_run - self.finished) / rate
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        parts.append(format_duration(now - self.t0))
        return " · ".join(parts)

    def tick(self, force: bool = False) -> None:
        now = self.clock()
        if self.mode.bar:
            if force or now - self._last_draw >= BAR_REFRESH_S:
                width = shutil.get_terminal_size((100, 20)).columns - 1
                self.stream.write("\r" + self.text()[:width] + "\x1b[K")
                self.stream.flush()
                self._last_draw, self._drawn = now, True
        elif self.mode.interval is not None and (now - self._last_draw >= self.mode.interval):
            self.stream.write(self.text() + "\n")
            self.stream.flush()
            self._last_draw = now

    def close(self) -> None:
        if self.mode.bar and self._drawn:
            self.tick(force=True)
            self.stream.write("\n")
            self.stream.flush()
