"""Human3.6M ``MySegmentsMat`` masks: the MATLAB v7.3 file format and the official box recipe.

Real release layout::

    <root>/S1/MySegmentsMat/ground_truth_bb/<basename>.<camera>.mat   filled rectangles
    <root>/S1/MySegmentsMat/ground_truth_bs/<basename>.<camera>.mat   background subtraction

A file is MATLAB v7.3 (HDF5 behind a 512-byte userblock that starts with the ``MATLAB 7.3
MAT-file`` text header) holding one variable ``Masks``: a 1×T cell of per-frame logical
masks. In h5py terms ``f["Masks"]`` is a (T, 1) dataset of object references, each pointing
to a (W, H) uint8 dataset under ``#refs#`` (MATLAB stores column-major, so the array is the
mask transposed). Third-party readers do ``f[f["Masks"][i, 0]][()].T == 1``.

The box recipe is the official ``H36MMyBBMask``: for each of the 32 world joints, 14 points
on a sphere (radius 115 mm; 140 mm for 1-based joints 15, 16; 260 mm for 12, 13, 14) are
projected with the lens model; the rectangle spans ``floor(min)`` .. ``ceil(max)`` clipped to
``[1, W] × [1, H]`` (1-based, inclusive, MATLAB).

Readers here are lazy (:class:`MaskFile` opens the file per frame read) and never raise on a
damaged file during release reading: :func:`probe_mask_file` turns every defect into a
one-line problem naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.units import MM_PER_M
from pipeline.errors import DataError

SEGMENTS_DIR = Path("MySegmentsMat")
MASK_KINDS = ("ground_truth_bb", "ground_truth_bs")
"""Mask folders: official boxes (filled rectangles) and background-subtraction silhouettes."""
MASK_SUFFIX = ".mat"
MASKS_VARIABLE = "Masks"
REFS_GROUP = "#refs#"
USERBLOCK_SIZE = 512
MAT_HEADER_TEXT = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970 "
                   b"HDF5 schema 1.00 .")
"""The 116-byte text of a v7.3 header (a fixed date: the same masks give the same bytes)."""

BB_RADIUS_MM = 115.0
"""Sphere radius around every joint in the box recipe, mm."""
BB_RADIUS_OVERRIDES_MM = {15: 140.0, 16: 140.0, 12: 260.0, 13: 260.0, 14: 260.0}
"""1-based joints with other radii (head top and shoulders; neck, head, spine)."""


def mask_path(root: Path, subject: str, basename: str, camera: str, kind: str) -> Path:
    """``<root>/<S>/MySegmentsMat/<kind>/<basename>.<camera>.mat``."""
    return Path(root) / subject / SEGMENTS_DIR / kind / f"{basename}.{camera}{MASK_SUFFIX}"


# --- the box recipe -------------------------------------------------------------------------


def sphere_directions() -> np.ndarray:
    """(14, 3) unit directions: the 6 axis directions and the 8 cube diagonals."""
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    return np.concatenate([axes, corners / np.sqrt(3.0)])


def bb_radii_m() -> np.ndarray:
    """(32,) sphere radius per joint (0-based order), metres."""
    radii = np.full(32, BB_RADIUS_MM)
    for joint, radius in BB_RADIUS_OVERRIDES_MM.items():
        radii[joint - 1] = radius
    return radii / MM_PER_M


def bb_rectangles(joints_world: np.ndarray, camera) -> np.ndarray:
    """(T, 4) int official boxes ``x_min, y_min, x_max, y_max``: 0-based, inclusive pixels.

    joints_world (T, 32, 3) metres; camera a :class:`pipeline.release.cameras.Camera`.
    The recipe's 1-based ``[m, M]`` (projections used as MATLAB indices, clipped to
    ``[1, W] × [1, H]``) is ``[m - 1, M - 1]`` here.
    """
    joints = np.asarray(joints_world, dtype=np.float64)
    points = joints[:, :, None, :] + bb_radii_m()[None, :, None, None] * sphere_directions()[None, None]
    # The recipe takes the projections (D2_Positions' numbers) as 1-based MATLAB indices.
    uv = camera.project(points.reshape(len(joints), -1, 3))
    lo = np.floor(uv.min(axis=1))
    hi = np.ceil(uv.max(axis=1))
    size = np.array([camera.width, camera.height], dtype=np.float64)
    lo = np.clip(lo, 1, size)
    hi = np.clip(hi, 1, size)
    return (np.concatenate([lo, hi], axis=1) - 1).astype(np.int64)


def rectangle_mask(box, width: int, height: int) -> np.ndarray:
    """(H, W) bool filled rectangle of an inclusive 0-based box ``x0, y0, x1, y1``."""
    mask = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    mask[y0:y1 + 1, x0:x1 + 1] = True
    return mask


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Inclusive 0-based ``x0, y0, x1, y1`` of a mask's true pixels (None when empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.int64)


# --- writing ---------------------------------------------------------------------------------


def _matlab_class(obj, name: str) -> None:
    import h5py
    import numpy as np_

    obj.attrs.create("MATLAB_class", np_.bytes_(name), dtype=h5py.string_dtype("ascii", len(name)))


class MaskWriter:
    """Write one ``MySegmentsMat`` file frame by frame (atomic: a temporary file renamed on
    a clean close)::

        with MaskWriter(path, width, height) as writer:
            for mask in masks:            # (H, W) bool
                writer.append(mask)
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int):
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._file = None
        self._refs: list = []

    def __enter__(self) -> MaskWriter:
        import h5py

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._tmp, "w", userblock_size=USERBLOCK_SIZE, libver="earliest")
        self._group = self._file.create_group(REFS_GROUP)
        return self

    def append(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask)
        if mask.shape != (self.height, self.width):
            raise ValueError(f"{self.path}: mask of shape {mask.shape}, expected "
                             f"{(self.height, self.width)}")
        name = f"f{len(self._refs):06d}"
        # stored transposed (MATLAB is column-major): h5py shape (W, H)
        data = self._group.create_dataset(name, data=np.ascontiguousarray(mask.T, dtype=np.uint8),
                                          chunks=(self.width, self.height), compression="gzip",
                                          compression_opts=3)
        _matlab_class(data, "logical")
        data.attrs.create("MATLAB_int_decode", np.uint8(1))
        self._refs.append(data.ref)

    def __exit__(self, exc_type, exc, tb) -> None:
        import h5py

        try:
            if exc_type is None:
                cells = self._file.create_dataset(MASKS_VARIABLE, (len(self._refs), 1),
                                                  dtype=h5py.ref_dtype)
                for i, ref in enumerate(self._refs):
                    cells[i, 0] = ref
                _matlab_class(cells, "cell")
        finally:
            self._file.close()
        if exc_type is not None:
            self._tmp.unlink(missing_ok=True)
            return
        with open(self._tmp, "r+b") as fh:  # the MAT-file header inside the userblock
            fh.write(MAT_HEADER_TEXT.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")
        os.replace(self._tmp, self.path)


def write_mask_file(path: str | os.PathLike, masks, width: int, height: int) -> Path:
    """Write an iterable of (H, W) bool masks as one ``MySegmentsMat`` file. Returns path."""
    with MaskWriter(path, width, height) as writer:
        for mask in masks:
            writer.append(mask)
    return Path(path)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskFile:
    """One ``MySegmentsMat`` file of a sequence and camera, read lazily frame by frame."""

    path: Path
    """The .mat file."""
    kind: str
    """"ground_truth_bb" or "ground_truth_bs"."""
    frames: int
    """Frames (cells) the file holds."""
    width: int
    """Mask width in pixels."""
    height: int
    """Mask height in pixels."""

    def read(self, frame: int) -> np.ndarray:
        """(H, W) bool mask of frame ``frame`` (0-based); DataError naming the file when the
        frame is out of range or its data is damaged."""
        return self.read_many([frame])[0]

    def read_many(self, frames) -> list[np.ndarray]:
        """Masks of several frames with one open of the file."""
        import h5py

        frames = [int(f) for f in frames]
        bad = [f for f in frames if not 0 <= f < self.frames]
        if bad:
            raise DataError(f"{self.path}: frame {bad[0]} out of range (file holds {self.frames})")
        try:
            with h5py.File(self.path, "r") as f:
                cells = f[MASKS_VARIABLE]
                out = []
                for i in frames:
                    data = f[cells[i, 0]][()]
                    if data.shape != (self.width, self.height):
                        raise DataError(f"{self.path}: frame {i} has shape {data.shape}, expected "
                                        f"{(self.width, self.height)} (W, H)")
                    out.append(data.T == 1)
                return out
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{self.path}: unreadable mask data ({e})") from None

    def box(self, frame: int) -> np.ndarray | None:
        """Inclusive 0-based ``x0, y0, x1, y1`` of a frame's mask (None when empty)."""
        return mask_box(self.read(frame))

    def boxes(self, frames) -> list[np.ndarray | None]:
        """``box`` of several frames with one open of the file."""
        return [mask_box(m) for m in self.read_many(frames)]


def open_mask_file(path: str | os.PathLike, kind: str) -> MaskFile:
    """Header check of a mask file → :class:`MaskFile`; DataError naming the file when it is
    not a v7.3 MAT file with a (T, 1) ``Masks`` cell of 2-D frames (first and last checked)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mask file not found")
    try:
        with open(path, "rb") as fh:
            header = fh.read(128)
        if not header.startswith(b"MATLAB 7.3 MAT-file"):
            raise DataError(f"{path}: not a MATLAB v7.3 MAT-file (no 'MATLAB 7.3 MAT-file' header)")
        with h5py.File(path, "r") as f:
            if MASKS_VARIABLE not in f:
                raise DataError(f"{path}: no '{MASKS_VARIABLE}' variable")
            cells = f[MASKS_VARIABLE]
            if cells.ndim != 2 or cells.shape[1] != 1 or cells.dtype != h5py.ref_dtype:
                raise DataError(f"{path}: '{MASKS_VARIABLE}' is {cells.shape} {cells.dtype}, "
                                "expected a (T, 1) cell of references")
            frames = cells.shape[0]
            if frames == 0:
                raise DataError(f"{path}: '{MASKS_VARIABLE}' holds no frames")
            first = f[cells[0, 0]]
            last = f[cells[frames - 1, 0]]
            if first.ndim != 2 or last.shape != first.shape:
                raise DataError(f"{path}: frames of shapes {first.shape} and {last.shape}")
            last[0, 0]  # touch the data: a truncated file fails here
            width, height = first.shape
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DataError(f"{path}: unreadable MAT-file ({e})") from None
    return MaskFile(path=path, kind=kind, frames=int(frames), width=int(width), height=int(height))


def probe_mask_file(path: Path, kind: str, frames: int | None, width: int, height: int
                    ) -> tuple[MaskFile | None, str | None]:
    """(mask file, None) when usable for a sequence of ``frames`` frames at width × height,
    else (None, problem naming the file): damaged, truncated or misaligned."""
    try:
        mask = open_mask_file(path, kind)
    except DataError as e:
        return None, str(e)
    if (mask.width, mask.height) != (width, height) and width and height:
        return None, (f"{path}: masks of {mask.width}x{mask.height}, the video is {width}x{height} "
                      "(misaligned)")
    if frames is not None and mask.frames < frames:
        return None, f"{path}: {mask.frames} mask frames for {frames} usable frames (truncated)"
    return mask, None
