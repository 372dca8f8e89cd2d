"""Data for the trainer: shard datasets, loaders and photometric augmentation.

Geometry is never augmented (the crop intrinsics and the stored points define it); only the
image's colours are jittered, per sample, from a generator seeded by (seed, epoch).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from sampling.dataset import ShardDataset

TENSOR_KEYS = ("image", "K", "root", "points", "sdf", "votes", "joints")


def shard_dataset(split_dir, points: int | None, seed: int) -> ShardDataset:
    """The split's ShardDataset drawing ``points`` stored points per item (None: all)."""
    return ShardDataset(split_dir, points=points, seed=seed)


def make_loader(dataset: ShardDataset, batch_size: int, shuffle: bool, num_workers: int,
                seed: int, epoch: int) -> DataLoader:
    """A loader whose order and point draws depend only on (seed, epoch)."""
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator, drop_last=False,
                      persistent_workers=False)


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if k in TENSOR_KEYS else v) for k, v in batch.items()}


def photometric_augment(image, generator: torch.Generator, brightness: float, contrast: float,
                        saturation: float):
    """Colour jitter of images (B, 3, H, W) in [0, 1]: brightness, contrast, saturation, per sample."""
    B = image.shape[0]

    def draw(amplitude):
        r = torch.rand(B, 1, 1, 1, generator=generator).to(image.device, image.dtype)
        return (2 * r - 1) * amplitude

    grey = (0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3])
    out = grey + (image - grey) * (1 + draw(saturation))
    mean = grey.mean(dim=(-1, -2), keepdim=True)
    out = mean + (out - mean) * (1 + draw(contrast))
    return (out + draw(brightness)).clamp(0.0, 1.0)
