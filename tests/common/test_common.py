"""common/: deterministic npz writing, hashing, device names, units."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from common.device import DeviceError, check_device_name, resolve_device
from common.hashing import sha256_file, sha256_json
from common.units import MM_PER_M
from common.zipfiles import write_npz


def _npz_bytes(arrays, **kw) -> bytes:
    buf = io.BytesIO()
    write_npz(buf, arrays, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("compress", [False, True])
def test_write_npz_round_trips_through_np_load(compress):
    arrays = {"b": np.arange(12, dtype=np.float32).reshape(3, 4), "a": np.array("text"),
              "f": np.asfortranarray(np.eye(3)), "s": np.float64(2.5)}
    with np.load(io.BytesIO(_npz_bytes(arrays, compress=compress))) as z:
        assert sorted(z.files) == ["a", "b", "f", "s"]
        for k, v in arrays.items():
            np.testing.assert_array_equal(z[k], v)
            assert z[k].dtype == v.dtype and z[k].shape == np.shape(v)  # 0-d stays 0-d


def test_write_npz_is_byte_identical_for_equal_arrays_in_any_order():
    a = {"x": np.ones(5), "y": np.zeros((2, 2), np.int64)}
    b = {"y": np.zeros((2, 2), np.int64), "x": np.ones(5)}
    assert _npz_bytes(a) == _npz_bytes(b)
    assert _npz_bytes(a) != _npz_bytes({**a, "x": np.full(5, 2.0)})


def test_write_npz_pickled_object_arrays_need_allow_pickle():
    value = np.empty((), dtype=object)
    value[()] = {"S1": [1, 2]}
    data = _npz_bytes({"meta": value}, allow_pickle=True)
    with np.load(io.BytesIO(data), allow_pickle=True) as z:
        assert z["meta"].item() == {"S1": [1, 2]}
    with pytest.raises(ValueError):
        _npz_bytes({"meta": value})  # pickling is opt-in


def test_sha256_file_equals_hashlib_on_the_bytes(tmp_path):
    path = tmp_path / "f.bin"
    data = np.random.default_rng(0).bytes(3 << 20)  # several read chunks
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk=7) == hashlib.sha256(data).hexdigest()


def test_sha256_json_ignores_key_order():
    assert sha256_json({"a": 1, "b": [1, 2]}) == sha256_json({"b": [1, 2], "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_names_accepted(name):
    assert check_device_name(name) == name


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", "CPU"])
def test_device_names_rejected_with_the_choices(name):
    with pytest.raises(DeviceError, match="auto, cuda, cuda:N or cpu"):
        check_device_name(name)


def test_resolve_device_cpu_and_auto():
    import torch

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")


def test_mm_per_m():
    assert MM_PER_M * 0.001 == pytest.approx(1.0)
