"""Known quirks of the Human3.6M release, as named data in one place.

The reader (:mod:`pipeline.release.h36m`) applies these and records a human-readable note in each
affected Sequence's ``quirks``; nothing here is silent.
"""

from __future__ import annotations

from dataclasses import dataclass

CANONICAL_ACTIONS: dict[int, str] = {
    2: "Directions",
    3: "Discussion",
    4: "Eating",
    5: "Greeting",
    6: "Phoning",
    7: "Posing",
    8: "Purchases",
    9: "Sitting",
    10: "SittingDown",
    11: "Smoking",
    12: "Photo",
    13: "Waiting",
    14: "Walking",
    15: "WalkDog",
    16: "WalkTogether",
}
"""The 15 benchmark actions by metadata.xml action id, with the names the literature uses.

metadata.xml calls 12/15/16 "TakingPhoto"/"WalkingDog"/"WalkingTogether", and S1's files say
"TakingPhoto 1"/"WalkingDog 1" where the other subjects say "Photo"/"WalkDog"."""

ACTION_ALIASES: dict[str, str] = {
    "TakingPhoto": "Photo",
    "WalkingDog": "WalkDog",
    "WalkingTogether": "WalkTogether",
}
"""Other spellings of canonical action names (metadata.xml's names, S1's file names)."""

IGNORED_ACTION_IDS: tuple[int, ...] = (1,)
"""Mapping rows that are not benchmark sequences: 1 = "Miscellaneous" ("_ALL" recordings)."""


@dataclass(frozen=True)
class KnownBadVideo:
    """A video of the release known to be unusable."""

    subject: str
    """Subject id, e.g. "S11"."""
    basename: str
    """Sequence basename as in the mapping table, e.g. "Directions"."""
    camera: str
    """Camera id."""
    reason: str
    """Why it is skipped (shown in Sequence.quirks)."""


KNOWN_BAD_VIDEOS: tuple[KnownBadVideo, ...] = (
    KnownBadVideo(
        "S11", "Directions", "54138969",
        "corrupt video in the release; camera skipped (VideoPose3D drops the whole sequence; "
        "the mocap and the other three cameras are fine)",
    ),
)

TRUNCATE_TO_SHORTEST = True
"""Per-camera video counts differ from each other and from mocap by a few frames (e.g. S5
"Waiting 2": 4857/4866/4866/4857): frame i is taken as the same instant everywhere and the
sequence is cut to the shortest count."""

MAX_FRAME_COUNT_MISMATCH = 16
"""A spread of counts above this many frames is reported as a problem, not just truncated:
the real release differs by at most ~9 frames."""


def canonical_action(name: str) -> str:
    """Canonical spelling of an action name ("TakingPhoto" → "Photo"); others unchanged."""
    return ACTION_ALIASES.get(name, name)


def known_bad_video(subject: str, basename: str, camera: str) -> KnownBadVideo | None:
    for bad in KNOWN_BAD_VIDEOS:
        if (bad.subject, bad.basename, bad.camera) == (subject, basename, camera):
            return bad
    return None
