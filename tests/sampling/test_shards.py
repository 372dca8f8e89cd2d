"""HDF5 shards (sampling/shards.py): round trip, checksums, determinism, validation, Dataset."""

import hashlib
import json

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fitting.smplx_params import smplx_params_to_camera
from nvf.synthetic import make_sample, write_synthetic_split
from sampling.dataset import ShardDataset
from sampling.errors import ShardError
from sampling.shards import (
    SCHEMA,
    ShardConfig,
    ShardWriter,
    check_shard,
    open_shard,
    read_index,
)

CONFIG = ShardConfig(radius=0.3, num_points=64, image_size=32, sampler={"test": True})


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_synthetic_split(tmp_path_factory.mktemp("shards"), "train", 5, CONFIG, samples_per_shard=2)


def test_round_trip(split):
    index = read_index(split)
    assert [s["samples"] for s in index["shards"]] == [2, 2, 1]
    assert index["samples"] == 5 and index["config"]["sampler"] == {"test": True}
    with open_shard(split / "shard-00001.h5") as reader:
        assert len(reader) == 2 and reader.radius == 0.3 and reader.joint_set == "h36m17"
        got = reader.sample(1)
    want = make_sample(0, 3, CONFIG)
    assert got["key"] == want.key and got["sequence"] == want.sequence and got["frame"] == want.frame
    for name in ("K", "root", "points", "sdf", "joints", "cam_from_world_R", "cam_from_world_t"):
        np.testing.assert_array_equal(got[name], np.asarray(getattr(want, name), np.float32))
    np.testing.assert_array_equal(got["votes"], want.votes.astype(np.float16))
    assert got["smplx"]["body_pose"].shape == (63,)
    import cv2

    decoded = cv2.imdecode(got["image"], cv2.IMREAD_COLOR)
    assert decoded.shape == (32, 32, 3)
    assert np.abs(decoded.astype(int) - want.image.astype(int)).mean() < 8  # JPEG loss only
    with h5py.File(split / "shard-00000.h5", "r") as f:
        assert f.attrs["schema"] == SCHEMA
        assert json.loads(f.attrs["joint_names"])[0] == "Pelvis"
        assert f["points"].chunks == (1, 64, 3) and f["votes"].compression == "lzf"


def test_index_checksums_and_no_leftovers(split):
    for shard in read_index(split)["shards"]:
        data = (split / shard["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
        assert len(data) == shard["bytes"]
        assert check_shard(split / shard["name"], shard["sha256"]) == []
    assert not list(split.glob("*.tmp"))


def test_deterministic_bytes(tmp_path, split):
    again = write_synthetic_split(tmp_path, "train", 5, CONFIG, samples_per_shard=2)
    for name in ("shard-00000.h5", "shard-00002.h5", "index.json"):
        assert (again / name).read_bytes() == (split / name).read_bytes()


def test_bytes_do_not_depend_on_when_dataset_handles_close(tmp_path, split, monkeypatch):
    """A dask worker may close h5py handles late (h5py defers a close while another thread
    holds its lock): keeping every dataset handle alive until the file closes must not change
    the file (it did with HDF5's chunk cache, which places a chunk when its handle closes)."""
    held = []
    create = h5py.Group.create_dataset

    def create_and_hold(self, *args, **kwargs):
        held.append(create(self, *args, **kwargs))
        return held[-1]

    monkeypatch.setattr(h5py.Group, "create_dataset", create_and_hold)
    again = write_synthetic_split(tmp_path, "train", 5, CONFIG, samples_per_shard=2)
    assert held
    for name in ("shard-00000.h5", "shard-00002.h5"):
        assert (again / name).read_bytes() == (split / name).read_bytes()


def test_check_shard_catches_flipped_byte_and_truncation(tmp_path, split):
    shard = read_index(split)["shards"][0]
    data = bytearray((split / shard["name"]).read_bytes())
    flipped = tmp_path / "flipped.h5"
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    problems = check_shard(flipped, shard["sha256"])
    assert problems and "sha256" in problems[0] and "\n" not in problems[0]
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(bytes(data[: len(data) // 3]))
    problems = check_shard(truncated, None)
    assert problems and any("unreadable" in p for p in problems)
    assert check_shard(tmp_path / "absent.h5", None)[0].endswith("missing")
    with pytest.raises(ShardError, match="truncated.h5"):
        open_shard(truncated)


def test_writer_rejects_bad_shapes(tmp_path):
    good = make_sample(0, 0, CONFIG)
    bad = good.__class__(**{**good.__dict__, "points": good.points[:10]})
    with pytest.raises(ShardError, match="points has shape"):
        with ShardWriter(tmp_path, "bad", CONFIG, samples_per_shard=1) as w:
            w.add(bad)
    assert not list((tmp_path / "bad").glob("*.h5*"))


def test_read_index_errors(tmp_path):
    with pytest.raises(ShardError, match="no shard index"):
        read_index(tmp_path)
    (tmp_path / "index.json").write_text('{"schema": "other"}')
    with pytest.raises(ShardError, match="schema"):
        read_index(tmp_path)


def test_dataset_in_dataloader_with_workers(split):
    ds = ShardDataset(split, points=16, seed=3)
    assert len(ds) == 5 and ds.radius == 0.3
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    keys = [k for b in batches for k in b["key"]]
    assert keys == [make_sample(0, i, CONFIG).key for i in range(5)]
    b = batches[0]
    assert b["image"].shape == (2, 3, 32, 32) and b["image"].dtype == torch.float32
    assert 0.0 <= float(b["image"].min()) and float(b["image"].max()) <= 1.0
    assert b["points"].shape == (2, 16, 3) and b["votes"].shape == (2, 16, 17, 4)
    assert b["sdf"].shape == (2, 16) and b["joints"].shape == (2, 17, 3)
    # the subset is a pure function of (seed, epoch, item): same in the main process
    item = ds[1]
    full = ShardDataset(split)[1]
    idx = ds.point_index(1)
    torch.testing.assert_close(item["points"], full["points"][idx])
    torch.testing.assert_close(batches[0]["points"][1], item["points"])
    ds.set_epoch(1)
    assert not np.array_equal(ds.point_index(1), idx)


def test_smplx_params_to_camera_matches_smplx_lbs():
    """Posing with camera-frame params == posing in the world, then X_cam = R X + t."""
    from scipy.spatial.transform import Rotation
    from smplx.lbs import lbs

    rng = np.random.default_rng(0)
    V, J = 40, 55
    parents = torch.tensor([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15,
                            15, 15, 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38, 21, 40,
                            41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53])
    t64 = dict(dtype=torch.float64)
    v_template = torch.tensor(rng.normal(size=(V, 3)) * 0.3, **t64)
    shapedirs = torch.tensor(rng.normal(size=(V, 3, 10)) * 0.02, **t64)
    posedirs = torch.tensor(rng.normal(size=(54 * 9, V * 3)) * 0.001, **t64)
    J_regressor = torch.tensor(rng.dirichlet(np.ones(V), size=J), **t64)
    weights = torch.tensor(rng.dirichlet(np.ones(J), size=V), **t64)
    B = 3
    betas = torch.tensor(rng.normal(size=(B, 10)), **t64)
    body = torch.tensor(rng.normal(size=(B, 54 * 3)) * 0.2, **t64)
    world = {"global_orient": rng.normal(size=(B, 3)), "transl": rng.normal(size=(B, 3)),
             "betas": betas.numpy()}

    def posed(orient, transl):
        pose = torch.cat([torch.as_tensor(orient, **t64), body], 1)
        verts, _ = lbs(betas, pose, v_template, shapedirs, posedirs, J_regressor, parents, weights)
        return verts + torch.as_tensor(transl, **t64)[:, None]  # smplx adds transl after lbs

    R = Rotation.random(B, random_state=1).as_matrix()
    t = rng.normal(size=(B, 3))
    pelvis_rest = (J_regressor[0] @ (v_template + torch.einsum("vck,bk->bvc", shapedirs, betas))).numpy()
    cam = smplx_params_to_camera(world, R, t, pelvis_rest)
    want = np.einsum("bij,bvj->bvi", R, posed(world["global_orient"], world["transl"]).numpy()) + t[:, None]
    got = posed(cam["global_orient"], cam["transl"]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-9)
    np.testing.assert_array_equal(cam["betas"], world["betas"])
