"""Which part of a release a stage works on: ``--subjects --actions --cameras --frames --stride``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import SelectionError

_SUBJECT = re.compile(r"^S\d{1,2}$")
_CAMERA = re.compile(r"^\d{8}$")


@dataclass(frozen=True)
class Selection:
    """A filter over (subject, action, camera, frame); None means "all"."""

    subjects: tuple[str, ...] | None = None
    """Subject ids such as ("S1", "S5")."""
    actions: tuple[str, ...] | None = None
    """Canonical action names ("Walking") or sequence names ("Walking_1", "Walking 1")."""
    cameras: tuple[str, ...] | None = None
    """Camera ids such as ("54138969",)."""
    frames: tuple[int, int | None] = (0, None)
    """Half-open mocap frame range [start, stop); stop None = to the end."""
    stride: int | None = 1
    """Keep every stride-th frame of the range (None: the stage decides, e.g. a split's strides)."""

    def wants_subject(self, subject: str) -> bool:
        return self.subjects is None or subject in self.subjects

    def wants_sequence(self, action: str, sequence: str) -> bool:
        """True when ``action`` (canonical) or ``sequence`` (e.g. "Walking_1") is selected."""
        if self.actions is None:
            return True
        names = {action, sequence, sequence.replace("_", " ")}
        return any(a in names or a.replace(" ", "_") in names for a in self.actions)

    def wants_camera(self, camera: str) -> bool:
        return self.cameras is None or camera in self.cameras

    def frame_indices(self, count: int) -> range:
        """The selected frame indices among ``count`` available frames."""
        start, stop = self.frames
        stop = count if stop is None else min(stop, count)
        return range(min(start, stop), stop, self.stride or 1)

    def to_json(self) -> dict:
        return {
            "subjects": list(self.subjects) if self.subjects else None,
            "actions": list(self.actions) if self.actions else None,
            "cameras": list(self.cameras) if self.cameras else None,
            "frames": list(self.frames),
            "stride": self.stride,
        }


def parse_list(text: str | None, what: str, pattern: re.Pattern | None = None) -> tuple[str, ...] | None:
    """Split "a,b,c" into a tuple; None or "" or "all" mean no filter."""
    if text is None or text.strip() in ("", "all"):
        return None
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise SelectionError(f"--{what}: empty list in {text!r}")
    if pattern is not None:
        bad = [x for x in items if not pattern.match(x)]
        if bad:
            raise SelectionError(f"--{what}: {bad[0]!r} is not a valid {what[:-1]} id")
    return items


def parse_frames(text: str | None) -> tuple[int, int | None]:
    """Parse "start:stop", "start:" or ":stop" (mocap frame indices, stop exclusive)."""
    if text is None or text.strip() in ("", ":", "all"):
        return (0, None)
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text)
    if not m:
        raise SelectionError(f"--frames: expected START:STOP (e.g. 0:500), got {text!r}")
    start = int(m.group(1)) if m.group(1) else 0
    stop = int(m.group(2)) if m.group(2) else None
    if stop is not None and stop <= start:
        raise SelectionError(f"--frames: stop {stop} must be greater than start {start}")
    return (start, stop)


def build_selection(
    subjects: str | None = None,
    actions: str | None = None,
    cameras: str | None = None,
    frames: str | None = None,
    stride: int = 1,
) -> Selection:
    """A Selection from command-line strings; SelectionError with a one-line reason."""
    if stride < 1:
        raise SelectionError(f"--stride must be at least 1, got {stride}")
    return Selection(
        subjects=parse_list(subjects, "subjects", _SUBJECT),
        actions=parse_list(actions, "actions"),
        cameras=parse_list(cameras, "cameras", _CAMERA),
        frames=parse_frames(frames),
        stride=stride,
    )
