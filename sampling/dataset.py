"""``ShardDataset``: a map-style torch Dataset over one shard split folder (lazy per-process files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch.utils.data

from common.hashing import sha256_file
from fitting.joint_sets import get_joint_set
from sampling.errors import ShardError
from sampling.shards import INDEX_NAME, STRING_FIELDS, ShardReader, read_index


def decode_jpeg_chw(buf: np.ndarray) -> np.ndarray:
    """JPEG bytes → (3, H, W) float32 RGB in [0, 1]."""
    import cv2

    bgr = cv2.imdecode(np.asarray(buf, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ShardError("image is not a decodable JPEG")
    return np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0


class ShardDataset(torch.utils.data.Dataset):
    """A map-style torch Dataset over one split folder (index.json + shards).

    Files are opened lazily in the process that reads (each DataLoader worker opens its own;
    h5py handles never cross a fork or a pickle). Items are dicts of tensors: ``image``
    (3, H, W) float RGB in [0, 1], ``K``, ``cam_from_world_R``, ``cam_from_world_t``,
    ``root``, ``points`` (M, 3), ``sdf`` (M,), ``votes`` (M, J, 4) float32, ``joints`` (J, 3),
    ``fit_mpjpe_mm``, ``frame``, plus strings ``key``, ``subject``, ``sequence``, ``camera``.

    Args:
        split_dir: the split folder.
        points: draw a random subset of this many stored points per item (None: all), from a
            generator seeded by (seed, epoch, item index); ``set_epoch`` changes the draw.
        seed: global seed of the point draws.
        verify: check every shard's sha256 against index.json at construction.
    """

    def __init__(self, split_dir, points: int | None = None, seed: int = 0, verify: bool = False):
        self.split_dir = Path(split_dir)
        self.index = read_index(self.split_dir)
        self.points = points
        self.seed = seed
        self.epoch = 0
        self.config = self.index["config"]
        self.radius = float(self.config["radius"])
        self.joint_names = tuple(get_joint_set(self.config["joint_set"]).names)
        self._items: list[tuple[str, int]] = []
        for shard in self.index["shards"]:
            path = self.split_dir / shard["name"]
            if not path.is_file():
                raise ShardError(f"{path}: listed in {self.split_dir / INDEX_NAME} but missing")
            if verify and sha256_file(path) != shard["sha256"]:
                raise ShardError(f"{path}: sha256 differs from {self.split_dir / INDEX_NAME}")
            self._items += [(shard["name"], i) for i in range(shard["samples"])]
        n_stored = int(self.config["num_points"])
        if points is not None and not 0 < points <= n_stored:
            raise ShardError(f"{self.split_dir}: asked for {points} points per item, shards hold {n_stored}")
        self._readers: dict[str, ShardReader] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_readers"] = {}
        return state

    def _reader(self, name: str) -> ShardReader:
        if os.getpid() != self._pid:  # forked: never reuse the parent's handles
            self._readers, self._pid = {}, os.getpid()
        if name not in self._readers:
            self._readers[name] = ShardReader(self.split_dir / name)
        return self._readers[name]

    def point_index(self, item: int) -> np.ndarray | None:
        if self.points is None:
            return None
        rng = np.random.default_rng([self.seed, self.epoch, item])
        n_stored = int(self.config["num_points"])
        return np.sort(rng.choice(n_stored, size=self.points, replace=False))

    def __getitem__(self, item: int) -> dict:
        name, local = self._items[item]
        raw = self._reader(name).sample(local, self.point_index(item), smplx=False)
        out = {"image": torch.from_numpy(decode_jpeg_chw(raw["image"])), "index": item}
        for k in ("K", "cam_from_world_R", "cam_from_world_t", "root", "points", "sdf", "votes", "joints"):
            out[k] = torch.from_numpy(np.asarray(raw[k], np.float32))
        out["fit_mpjpe_mm"] = torch.tensor(float(raw["fit_mpjpe_mm"]))
        out["frame"] = torch.tensor(int(raw["frame"]))
        for k in STRING_FIELDS:
            out[k] = raw[k]
        return out

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers = {}
