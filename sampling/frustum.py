"""Query points for NVF training: near-surface, ball and camera-frustum samples.

All points are in the camera frame (OpenCV: x right, y down, z forward), metres. The mix
follows NCF/NVF and PIFu (reference README "NVF"): points near the surface at two noise scales
(where the SDF and votes carry most information), uniform points in a ball around the root,
and uniform points in the crop's frustum between root depth ± a margin, with at most a given
share inside the body so that the SDF stays balanced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SamplerConfig:
    """How many query points of each kind a sample gets, and where."""

    points: int = 4096
    """Query points per sample (N)."""
    near_fraction: float = 0.5
    """Share of near-surface points, split evenly over ``near_sigmas_m``."""
    near_sigmas_m: tuple[float, ...] = (0.01, 0.05)
    """Standard deviations (metres) of the Gaussian noise added to surface samples."""
    ball_fraction: float = 0.25
    """Share of uniform points in a ball around the root joint."""
    ball_radius_m: float = 1.0
    """Radius (metres) of that ball; a standing adult fits in 1 m around the pelvis."""
    depth_margin_m: float = 1.0
    """Frustum points lie between root depth - margin and root depth + margin (metres)."""
    max_inside_fraction: float = 0.5
    """At most this share of the N points may lie inside the body (SDF < 0)."""

    def __post_init__(self) -> None:
        if not 0 <= self.near_fraction + self.ball_fraction <= 1:
            raise ValueError("near_fraction + ball_fraction must lie in [0, 1]")
        if not 0 < self.max_inside_fraction <= 1:
            raise ValueError("max_inside_fraction must lie in (0, 1]")

    def counts(self, n: int | None = None) -> tuple[list[int], int, int]:
        """(near counts per sigma, ball count, frustum count) for ``n`` points."""
        n = self.points if n is None else n
        n_near = round(n * self.near_fraction)
        per_sigma = [n_near // len(self.near_sigmas_m)] * len(self.near_sigmas_m)
        per_sigma[0] += n_near - sum(per_sigma)
        n_ball = round(n * self.ball_fraction)
        return per_sigma, n_ball, n - n_near - n_ball

    def to_json(self) -> dict:
        return asdict(self)


def surface_table(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(triangles (F, 3, 3), face probabilities (F,) proportional to area) for ``sample_surface``."""
    tri = vertices[faces]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    return tri, area / area.sum()


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator,
                   table: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Area-uniform points on a triangle mesh.

    Args:
        vertices: (V, 3) metres. faces: (F, 3) int.
        table: ``surface_table(vertices, faces)`` when already computed (several draws).
    Returns:
        (n, 3) points on the surface, vertices' dtype.
    """
    tri, probability = surface_table(vertices, faces) if table is None else table
    face = rng.choice(len(faces), size=n, p=probability)
    # Uniform barycentrics by folding the unit square onto the triangle.
    r1, r2 = rng.random(n), rng.random(n)
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    t = tri[face]
    return (t[:, 0] + r1[:, None] * (t[:, 1] - t[:, 0]) + r2[:, None] * (t[:, 2] - t[:, 0])).astype(vertices.dtype)


def sample_ball(center: np.ndarray, radius: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) points uniform in the ball of ``radius`` metres around ``center`` (3,)."""
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True) + 1e-12
    r = radius * rng.random(n) ** (1 / 3)  # volume-uniform radius
    return center + direction * r[:, None]


def sample_frustum(
    K: np.ndarray, width: int, height: int, z_near: float, z_far: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, 3) camera-frame points uniform in the volume of a pinhole frustum.

    Args:
        K: (3, 3) pinhole intrinsics (pixels). width, height: image size (pixels); the image
            spans pixel centres 0..width-1, so its edges are at -0.5 and width-0.5.
        z_near, z_far: depth range in metres, 0 < z_near < z_far.
    """
    if not 0 < z_near < z_far:
        raise ValueError(f"need 0 < z_near < z_far, got {z_near}, {z_far}")
    # The frustum's cross-section grows as z², so depth has density ∝ z² on [z_near, z_far].
    a, b = z_near**3, z_far**3
    z = (a + (b - a) * rng.random(n)) ** (1 / 3)
    u = rng.uniform(-0.5, width - 0.5, n)
    v = rng.uniform(-0.5, height - 0.5, n)
    x = (u - K[0, 2] - K[0, 1] * (v - K[1, 2]) / K[1, 1]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return np.stack([x * z, y * z, z], axis=-1)


def candidate_points(
    vertices: np.ndarray,
    faces: np.ndarray,
    root: np.ndarray,
    K: np.ndarray,
    crop_px: int,
    config: SamplerConfig,
    rng: np.random.Generator,
    n: int,
) -> np.ndarray:
    """(n, 3) query points of every kind in the config's proportions, camera frame, metres.

    Args:
        vertices: (V, 3) posed mesh in the camera frame. faces: (F, 3).
        root: (3,) root joint in the camera frame. K: (3, 3) crop intrinsics; crop_px: crop size.
    """
    per_sigma, n_ball, n_frustum = config.counts(n)
    table = surface_table(vertices, faces) if any(per_sigma) else None
    parts = [
        sample_surface(vertices, faces, k, rng, table) + rng.normal(scale=sigma, size=(k, 3))
        for k, sigma in zip(per_sigma, config.near_sigmas_m)
    ]
    parts.append(sample_ball(root, config.ball_radius_m, n_ball, rng))
    z_near = max(float(root[2]) - config.depth_margin_m, 0.05)
    parts.append(sample_frustum(K, crop_px, crop_px, z_near, float(root[2]) + config.depth_margin_m, n_frustum, rng))
    return np.concatenate(parts).astype(np.float32)


def sample_query_points(
    vertices: np.ndarray,
    faces: np.ndarray,
    root: np.ndarray,
    K: np.ndarray,
    crop_px: int,
    config: SamplerConfig,
    rng: np.random.Generator,
    signed_distance: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """N query points with at most ``max_inside_fraction`` inside, and their SDF.

    Candidates are drawn with 50% extra, their SDF computed once, then inside points beyond
    the cap are dropped in favour of outside ones (order kept, so the result is deterministic).

    Args:
        signed_distance: maps (M, 3) points to (M,) signed distances (negative inside).
    Returns:
        points (N, 3) float32 and sdf (N,) float32, camera frame, metres.
    """
    n = config.points
    max_inside = int(np.floor(config.max_inside_fraction * n))
    points = candidate_points(vertices, faces, root, K, crop_px, config, rng, n + n // 2)
    sdf = np.asarray(signed_distance(points), dtype=np.float32)
    for _ in range(8):
        inside = np.flatnonzero(sdf < 0)
        outside = np.flatnonzero(sdf >= 0)
        n_in = min(len(inside), max_inside)
        if n_in + len(outside) >= n:
            keep = np.sort(np.concatenate([inside[:n_in], outside[: n - n_in]]))
            return points[keep], sdf[keep]
        # Too few outside points (a huge body in a small frustum): draw more frustum points.
        extra = candidate_points(vertices, faces, root, K, crop_px,
                                 SamplerConfig(**{**config.to_json(), "near_fraction": 0.0, "ball_fraction": 0.0}),
                                 rng, n)
        points = np.concatenate([points, extra])
        sdf = np.concatenate([sdf, np.asarray(signed_distance(extra), dtype=np.float32)])
    raise RuntimeError("could not draw enough outside points; is the mesh enclosing the frustum?")
