"""Standard Human3.6M splits as named data (reference README: protocols, H3WB)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """Which subjects are train and test, and at which frame stride each is sampled."""

    name: str
    """Identifier used on the command line and in folder names."""
    train: tuple[str, ...]
    """Training subjects."""
    test: tuple[str, ...]
    """Test subjects."""
    train_stride: int
    """Keep every n-th mocap frame of a training sequence."""
    test_stride: int
    """Keep every n-th mocap frame of a test sequence."""

    def parts(self, train_stride: int | None = None, test_stride: int | None = None):
        """[(part name, subjects, stride)] with optional stride overrides."""
        return [("train", self.train, train_stride or self.train_stride),
                ("test", self.test, test_stride or self.test_stride)]


SPLITS = {
    # Protocol 1: train S1,S5,S6,S7,S8, test S9,S11; every 5th frame to train, every 64th to test.
    "protocol1": Split("protocol1", ("S1", "S5", "S6", "S7", "S8"), ("S9", "S11"), 5, 64),
    # H3WB: train S1,S5,S6,S7, test S8.
    "h3wb": Split("h3wb", ("S1", "S5", "S6", "S7"), ("S8",), 5, 5),
}


def get_split(name: str) -> Split:
    try:
        return SPLITS[name]
    except KeyError:
        raise ValueError(f"unknown split {name!r}; known: {', '.join(SPLITS)}") from None
