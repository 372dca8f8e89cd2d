"""Which part of a release a stage works on: ``--subjects --actions --cameras --frames --stride``."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.errors import SelectionError

_SUBJECT = re.compile(r"^[sS]\d{1,2}$")
H36M_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
"""Subjects with public poses, suggested for a misspelled id (pipeline.release.h36m's
SUBJECTS_WITH_DATA is this list: the release layer sits above this module)."""
MAX_LISTED = 12
"""Known names listed in an error message, at most."""


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
    """A Selection from command-line strings; SelectionError with a one-line reason.

    Subject ids are case-insensitive ("s1" → "S1"); one that is no subject id at all ("S1l") is
    an error at once. Whether the names exist is checked later, against what the release or WORK
    holds (``check_selection``).
    """
    if stride < 1:
        raise SelectionError(f"--stride must be at least 1, got {stride}")
    subject_ids = parse_list(subjects, "subjects")
    for s in subject_ids or ():
        if not _SUBJECT.match(s):
            raise _unknown("--subjects", "subject id", s, list(H36M_SUBJECTS), "Human3.6M")
    return Selection(
        subjects=tuple(s.upper() if _SUBJECT.match(s) else s for s in subject_ids) if subject_ids else None,
        actions=parse_list(actions, "actions"),
        cameras=parse_list(cameras, "cameras"),
        frames=parse_frames(frames),
        stride=stride,
    )


# --------------------------------------------------------------------------- checked against data


@dataclass(frozen=True)
class Held:
    """One sequence that a release or a work dir holds, as far as a selection is concerned."""

    subject: str
    sequence: str
    """Folder name, e.g. "Walking_1"."""
    action: str
    """Canonical action, e.g. "Walking"."""
    cameras: tuple[str, ...]
    frames: int | None = None
    """Frame count (None: not counted)."""


def _listing(names: Iterable[str]) -> str:
    names = list(names)
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def _unknown(flag: str, what: str, value: str, known: list[str], where: str) -> SelectionError:
    """``--subjects: unknown subject 'S88' in WORK/fit; did you mean S8? It holds S1, S8, S9``."""
    lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(value.lower(), list(lower), n=3, cutoff=0.65)
    hint = f"; did you mean {' or '.join(lower[c] for c in close)}?" if close else ";"
    return SelectionError(f"{flag}: unknown {what} {value!r} in {where}{hint} it holds "
                          f"{_listing(known) or 'none'}")


def _canonical_subjects(selection: Selection, held: list[Held], where: str) -> tuple[str, ...] | None:
    known = sorted({h.subject for h in held}, key=lambda s: (len(s), s))
    by_lower = {k.lower(): k for k in known}
    if selection.subjects is None:
        return None
    out = []
    for s in selection.subjects:
        if s.lower() not in by_lower:
            raise _unknown("--subjects", "subject", s, known, where)
        out.append(by_lower[s.lower()])
    return tuple(dict.fromkeys(out))


def _canonical_actions(actions, held: list[Held], where: str) -> tuple[str, ...] | None:
    """Each action or sequence name in the spelling held (case-insensitive, " " or "_")."""
    if actions is None:
        return None
    names: dict[str, str] = {}
    for h in held:
        names.setdefault(h.action.lower(), h.action)
        names.setdefault(h.sequence.lower(), h.sequence)
    out = []
    for a in actions:
        key = a.replace(" ", "_").lower()
        if key not in names:
            known = sorted({h.action for h in held}) + sorted({h.sequence for h in held} - {h.action for h in held})
            raise _unknown("--actions", "action or sequence", a, known, where)
        out.append(names[key])
    return tuple(dict.fromkeys(out))


def check_selection(selection: Selection, held: Iterable[Held], where: str) -> Selection:
    """``selection`` with names in the spelling ``held`` uses; SelectionError for any subject,
    action, sequence or camera that ``where`` does not hold (with "did you mean" and the list of
    what exists), and for a frame range that starts after every selected sequence's end.

    Actions are checked among the selected subjects' sequences, cameras among the selected
    sequences' cameras. An empty ``held`` checks nothing (the stage says what is missing).
    """
    held = list(held)
    if not held:
        return selection
    subjects = _canonical_subjects(selection, held, where)
    chosen = [h for h in held if subjects is None or h.subject in subjects]
    which = f"{where} ({', '.join(subjects)})" if subjects else where
    actions = _canonical_actions(selection.actions, chosen, which)
    narrowed = dataclasses.replace(selection, subjects=subjects, actions=actions)
    chosen = [h for h in chosen if narrowed.wants_sequence(h.action, h.sequence)]
    if selection.cameras is not None:
        known = sorted({c for h in chosen for c in h.cameras})
        for c in selection.cameras:
            if c not in known:
                raise _unknown("--cameras", "camera", c, known, which)
    start, stop = selection.frames
    counted = [h for h in chosen if h.frames is not None]
    if start > 0 and counted and all(start >= h.frames for h in counted):
        longest = max(counted, key=lambda h: h.frames)
        raise SelectionError(f"--frames {start}:{'' if stop is None else stop}: every selected sequence ends "
                             f"before frame {start} (the longest, {longest.subject}/{longest.sequence}, has "
                             f"{longest.frames} frames)")
    return narrowed
