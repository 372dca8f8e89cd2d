"""Synthetic shard content with analytic ground truth, for tests and benchmarks.

A "body" is a union of spheres centred on the 17 joints of a jittered stick figure, seen by a
pinhole crop camera. Its SDF is analytic (min over spheres of |p - c| - r: exact outside, right
sign inside), its image is drawn with cv2 (spheres painted far to near, one colour per joint,
darker with depth), and its votes come from sampling.votes. Nothing here is used in production.
"""

from __future__ import annotations

import numpy as np

from fitting.joint_sets import H36M17
from fitting.smplx_params import SMPLX_PARAM_DIMS
from sampling.shards import ShardConfig, ShardSample, ShardWriter
from sampling.votes import nvf_votes

# A standing stick figure in the pelvis frame (camera axes: y down), metres, H36M17 order.
_TEMPLATE = np.array([
    [0.00, 0.00, 0.00], [-0.13, 0.00, 0.00], [-0.13, 0.42, 0.00], [-0.13, 0.82, 0.00],
    [0.13, 0.00, 0.00], [0.13, 0.42, 0.00], [0.13, 0.82, 0.00], [0.00, -0.23, 0.00],
    [0.00, -0.47, 0.00], [0.00, -0.57, 0.00], [0.00, -0.70, 0.00], [0.17, -0.45, 0.00],
    [0.20, -0.18, 0.00], [0.22, 0.06, 0.00], [-0.17, -0.45, 0.00], [-0.20, -0.18, 0.00],
    [-0.22, 0.06, 0.00],
])
_SPHERE_RADII = np.array([0.13, 0.10, 0.08, 0.06, 0.10, 0.08, 0.06, 0.12, 0.13, 0.07, 0.11,
                          0.07, 0.06, 0.05, 0.07, 0.06, 0.05])
ACTIONS = ("Walking_1", "Eating_2", "Directions", "Sitting_1", "Phoning_1")


def sphere_sdf(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """SDF of a union of spheres: points (..., N, 3), centres (..., K, 3), radii (K,) → (..., N)."""
    d = np.linalg.norm(points[..., :, None, :] - centres[..., None, :, :], axis=-1) - radii
    return d.min(-1)


def _crop_camera(root: np.ndarray, size: int) -> np.ndarray:
    f = size * root[2] / 2.2  # about 2.2 m across the crop at the root's depth
    c = (size - 1) / 2.0
    return np.array([[f, 0, c - f * root[0] / root[2]], [0, f, c - f * root[1] / root[2]], [0, 0, 1]])


def _draw(joints: np.ndarray, radii: np.ndarray, K: np.ndarray, size: int) -> np.ndarray:
    import cv2

    image = np.full((size, size, 3), 40, np.uint8)
    hues = (np.arange(len(joints)) * 180 // len(joints)).astype(np.uint8)
    for k in np.argsort(-joints[:, 2]):  # far to near
        x, y, z = joints[k]
        u, v = K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]
        shade = int(np.clip(255 - 60 * (z - 2.6), 80, 255))
        colour = cv2.cvtColor(np.array([[[hues[k], 200, shade]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
        centre = (int(round(u * 16)), int(round(v * 16)))  # 4 fractional bits: sub-pixel drawing
        cv2.circle(image, centre, int(round(K[0, 0] * radii[k] / z * 16)), tuple(int(c) for c in colour),
                   -1, cv2.LINE_AA, shift=4)
    return image


def _sample_points(rng, joints, radii, root, K, size, n):
    n_surface = n // 2
    n_ball = n // 4
    n_frustum = n - n_surface - n_ball
    k = np.arange(n_surface) % len(joints)  # every sphere gets its share of surface points
    d = rng.normal(size=(n_surface, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    sigma = np.where(rng.random(n_surface) < 0.5, 0.01, 0.04)[:, None]  # two noise scales
    surface = joints[k] + d * radii[k, None] + rng.normal(size=(n_surface, 3)) * sigma
    ball = rng.normal(size=(n_ball, 3))
    ball = root + ball / np.linalg.norm(ball, axis=1, keepdims=True) * rng.random((n_ball, 1)) ** (1 / 3)
    uv = rng.uniform(-0.5, size - 0.5, (n_frustum, 2))
    z = root[2] + rng.uniform(-0.6, 0.6, n_frustum)
    frustum = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0] * z, (uv[:, 1] - K[1, 2]) / K[1, 1] * z, z], 1)
    return np.concatenate([surface, ball, frustum]).astype(np.float32)


def make_sample(seed: int, index: int, config: ShardConfig) -> ShardSample:
    """One synthetic sample, a pure function of (seed, index, config)."""
    rng = np.random.default_rng([seed, index])
    root = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2), rng.uniform(2.8, 3.6)])
    joints = root + _TEMPLATE + rng.normal(scale=0.05, size=_TEMPLATE.shape)
    joints[0] = root
    joints = joints.astype(np.float32)
    K = _crop_camera(root, config.image_size)
    points = _sample_points(rng, joints.astype(np.float64), _SPHERE_RADII, root, K, config.image_size,
                            config.num_points)
    sdf = sphere_sdf(points.astype(np.float64), joints.astype(np.float64), _SPHERE_RADII)
    sequence = ACTIONS[index % len(ACTIONS)]
    camera = ("54138969", "55011271")[index % 2]
    return ShardSample(
        key=f"S1/{sequence}/{camera}/{index:06d}", subject="S1", sequence=sequence, camera=camera,
        frame=index, image=_draw(joints, _SPHERE_RADII, K, config.image_size), K=K,
        cam_from_world_R=np.eye(3), cam_from_world_t=np.zeros(3), root=root, points=points,
        sdf=sdf.astype(np.float32), votes=nvf_votes(points, joints, config.radius), joints=joints,
        smplx={k: np.zeros(d, np.float32) for k, d in SMPLX_PARAM_DIMS.items()},
        fit_mpjpe_mm=float(rng.uniform(5, 30)),
    )


def write_synthetic_split(shards_dir, split: str, samples: int, config: ShardConfig,
                          samples_per_shard: int = 4, seed: int = 0):
    """Write ``samples`` synthetic samples as ``<shards_dir>/<split>``; returns the split folder."""
    if config.joint_set != H36M17.name:
        raise ValueError("synthetic bodies use the h36m17 joint set")
    with ShardWriter(shards_dir, split, config, samples_per_shard) as writer:
        for i in range(samples):
            writer.add(make_sample(seed, i, config))
    return writer.split_dir
