"""Deterministic .npz writing: fixed member timestamps and order, so equal arrays give equal bytes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""Member timestamp (np.savez stamps the current time, which breaks byte-identity)."""


def write_npz(fh: BinaryIO, arrays: Mapping[str, np.ndarray], *, compress: bool = False,
              allow_pickle: bool = False) -> None:
    """Write ``arrays`` as an .npz (one .npy member per key, sorted) into an open binary file.

    ``np.load`` reads it back. ``compress`` deflates the members (level 1); ``allow_pickle`` is
    only for object arrays that third-party readers expect pickled (VideoPose3D's npz).
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(fh, "w", compression=method) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            array = np.asanyarray(arrays[name])
            if array.dtype != object:  # C order: equal values give equal bytes whatever the layout
                array = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
            np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=1 if compress else None)
