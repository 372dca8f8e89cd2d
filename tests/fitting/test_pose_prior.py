"""The range-normalised pose prior (fitting.joint_limits.range_normalised_axes): each joint's
swing and twist in units of its half range of motion, against the exact swing/twist split."""

import math

import numpy as np
import torch

from fitting.joint_limits import (
    BODY_JOINT_NAMES,
    JOINT_LIMITS,
    _frames,
    bone_axes,
    limit_arrays,
    range_normalised_axes,
    swing_twist,
)
from fitting.joint_sets import SMPLX55


def _axes():
    gen = torch.Generator().manual_seed(3)
    rest = torch.randn(55, 3, generator=gen, dtype=torch.float64) * 0.2
    return bone_axes(rest)


def test_small_rotations_map_to_swing_and_twist_over_the_half_ranges():
    axes = _axes()
    m = range_normalised_axes(axes)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(63, generator=gen, dtype=torch.float64) * 1e-4
    swing, twist = swing_twist(theta.reshape(21, 3), axes)
    ref, lo, hi = limit_arrays(torch.float64)
    u, v = _frames(axes, ref)
    expected = torch.stack([(swing * u).sum(-1), (swing * v).sum(-1), twist], -1) / (0.5 * (hi - lo))
    np.testing.assert_allclose((m @ theta).reshape(21, 3).numpy(), expected.numpy(), rtol=1e-3, atol=1e-7)  # 2nd order: ~theta^2/h


def test_a_twist_costs_more_at_the_collar_than_at_the_shoulder_by_the_ranges():
    axes = _axes()
    m = range_normalised_axes(axes)
    energy = {}
    for name in ("left_collar", "left_shoulder"):
        j = BODY_JOINT_NAMES.index(name)
        theta = torch.zeros(21, 3, dtype=torch.float64)
        theta[j] = math.radians(10.0) * axes[j]  # 10 degrees about the bone axis: pure twist
        energy[name] = float(((m @ theta.reshape(63)) ** 2).sum())
    half = {n: 0.5 * (JOINT_LIMITS[n].twist_range[1] - JOINT_LIMITS[n].twist_range[0]) for n in energy}
    assert SMPLX55.index("left_collar") == BODY_JOINT_NAMES.index("left_collar") + 1
    np.testing.assert_allclose(energy["left_collar"] / energy["left_shoulder"],
                               (half["left_shoulder"] / half["left_collar"]) ** 2, rtol=1e-9)
    assert energy["left_collar"] > energy["left_shoulder"]
