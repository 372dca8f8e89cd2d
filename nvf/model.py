"""The NVF network: stacked-hourglass image encoder + pixel-aligned point MLP (PIFu-style).

For each query point p (camera frame, metres) the last hourglass stack's feature map is sampled
bilinearly at p's projection with the crop intrinsics K; together with an encoding of p's
root-relative depth it goes through an MLP whose hidden layers all see the input again (skip
inputs). Outputs: SDF (``sdf_clamp * tanh``, metres) and J votes ``[h, ux, uy, uz]`` (raw; the
decoder clamps h and normalises u).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from nvf.config import ModelConfig


def _norm(channels: int) -> nn.Module:
    # GroupNorm: no train/eval gap with the small batches this trainer sees.
    return nn.GroupNorm(min(8, channels), channels)


class Residual(nn.Module):
    """Pre-activation bottleneck residual block (Newell et al.)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            _norm(cin), nn.ReLU(inplace=False), nn.Conv2d(cin, mid, 1),
            _norm(mid), nn.ReLU(), nn.Conv2d(mid, mid, 3, padding=1),
            _norm(mid), nn.ReLU(), nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """One hourglass of ``levels`` down-samplings, channels constant."""

    def __init__(self, levels: int, channels: int):
        super().__init__()
        self.up = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(levels - 1, channels) if levels > 1 else Residual(channels, channels)
        self.out = Residual(channels, channels)

    def forward(self, x):
        up = self.up(x)
        low = self.out(self.inner(self.down(F.max_pool2d(x, 2, ceil_mode=True))))
        return up + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    """Image (B, 3, H, W) → feature map (B, C, H/s, W/s) of the last stack."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.stem_stride not in (2, 4):
            raise ValueError("stem_stride must be 2 or 4")
        c = cfg.width
        stem = [nn.Conv2d(3, c, 7, stride=2, padding=3), _norm(c), nn.ReLU(), Residual(c, c)]
        if cfg.stem_stride == 4:
            stem += [nn.MaxPool2d(2), Residual(c, c)]
        self.stem = nn.Sequential(*stem)
        self.stacks = nn.ModuleList(
            nn.Sequential(Hourglass(cfg.levels, c), Residual(c, c), nn.Conv2d(c, c, 1), _norm(c), nn.ReLU())
            for _ in range(cfg.stacks)
        )
        self.merges = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(cfg.stacks - 1))

    def forward(self, image):
        x = self.stem(image)
        for i, stack in enumerate(self.stacks):
            features = stack(x)
            if i < len(self.merges):
                x = x + self.merges[i](features)
        return features


def project_to_grid(points, K, height: int, width: int):
    """Camera-frame points (B, N, 3) → grid_sample coordinates (B, N, 2) in [-1, 1].

    Pixel centres are at integers and the image spans [-0.5, W - 0.5] (align_corners=False).
    """
    z = points[..., 2:3].clamp(min=1e-6)
    xy = points[..., :2] / z
    u = K[:, None, 0, 0:1] * xy[..., 0:1] + K[:, None, 0, 1:2] * xy[..., 1:2] + K[:, None, 0, 2:3]
    v = K[:, None, 1, 1:2] * xy[..., 1:2] + K[:, None, 1, 2:3]
    return torch.cat([(2 * u + 1) / width - 1, (2 * v + 1) / height - 1], dim=-1)


def fourier_encode(x, frequencies: int):
    """(B, N, D) → (B, N, D (1 + 2F)): [x, sin(2^k π x), cos(2^k π x)] for k < F."""
    feats = [x]
    for k in range(frequencies):
        feats += [torch.sin((2**k) * math.pi * x), torch.cos((2**k) * math.pi * x)]
    return torch.cat(feats, dim=-1)


class PointMLP(nn.Module):
    """(B, N, C_in) → (B, N, C_out); every hidden layer after the first also sees the input."""

    def __init__(self, cin: int, hidden: tuple[int, ...], cout: int):
        super().__init__()
        layers, prev = [], 0
        for i, h in enumerate(hidden):
            layers.append(nn.Linear(cin + (prev if i else 0), h))
            prev = h
        self.hidden = nn.ModuleList(layers)
        self.head = nn.Linear(prev + cin, cout)

    def forward(self, x0):
        h = F.leaky_relu(self.hidden[0](x0), 0.1)
        for layer in self.hidden[1:]:
            h = F.leaky_relu(layer(torch.cat([h, x0], -1)), 0.1)
        return self.head(torch.cat([h, x0], -1))


class NVFNet(nn.Module):
    """Image + query points → SDF and votes for ``joints`` joints."""

    def __init__(self, cfg: ModelConfig, joints: int, sdf_clamp: float):
        super().__init__()
        self.cfg = cfg
        self.joints = joints
        self.sdf_clamp = sdf_clamp
        self.encoder = StackedHourglass(cfg)
        cin = cfg.width + (3 if cfg.pixel_coords else 1) * (1 + 2 * cfg.depth_frequencies)
        self.mlp = PointMLP(cin, tuple(cfg.mlp), 1 + 4 * joints)

    def query(self, features, image_hw, points, K, root):
        """Features (B, C, h, w), points (B, N, 3), K (B, 3, 3), root (B, 3) → (sdf (B, N), votes (B, N, J, 4))."""
        grid = project_to_grid(points, K, *image_hw)
        pixel = F.grid_sample(features, grid.unsqueeze(2), mode="bilinear", padding_mode="zeros",
                              align_corners=False)[..., 0].transpose(1, 2)  # (B, N, C)
        z_rel = (points[..., 2:3] - root[:, None, 2:3]) / self.cfg.depth_scale
        position = torch.cat([grid, z_rel], -1) if self.cfg.pixel_coords else z_rel
        out = self.mlp(torch.cat([pixel, fourier_encode(position, self.cfg.depth_frequencies)], -1))
        sdf = self.sdf_clamp * torch.tanh(out[..., 0])
        votes = out[..., 1:].unflatten(-1, (self.joints, 4))
        return sdf, votes

    def forward(self, image, points, K, root):
        """Image (B, 3, H, W) in [0, 1], points (B, N, 3) camera frame → (sdf (B, N), votes (B, N, J, 4))."""
        features = self.encoder(image * 2 - 1)
        return self.query(features, image.shape[-2:], points, K, root)
