"""Deterministic random generators keyed by (global seed, unit key)."""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(seed: int, *key: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``key`` (stable across runs and machines).

    Python's ``hash`` is salted per process, so the key is hashed with SHA-256 instead.
    """
    digest = hashlib.sha256(repr((int(seed), *map(str, key))).encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))
