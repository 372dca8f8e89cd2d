"""Finding, validating and loading body-model files; the body-model CLI commands."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import smplx
import torch
from click.testing import CliRunner

from cli import main
from common.hashing import sha256_file
from fitting import bodymodel
from fitting.bodymodel import check_model_file, load_body_model, resolve_body_model
from fitting.errors import BodyModelError
from fitting.synthetic_model import write_synthetic_model


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """The synthetic model, shared with test_synthetic_model.py when run in the same session."""
    folder = tmp_path_factory.getbasetemp() / "synthetic_bodymodel"
    path = folder / "SMPLX_NEUTRAL.npz"
    return path if path.exists() else write_synthetic_model(folder, seed=0)


@pytest.fixture(scope="session")
def arrays(model_path):
    with np.load(model_path) as data:
        return {k: data[k] for k in data.files}


def _check_cli(path):
    result = CliRunner().invoke(main, ["body-model", "check", str(path)])
    return result.exit_code, result.output


def _assert_one_line_error(path, *needles):
    code, out = _check_cli(path)
    assert code == 1, out
    assert "Traceback" not in out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), out
    assert str(path) in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_check_accepts_synthetic_file_and_prints_sha256(model_path):
    code, out = _check_cli(model_path)
    assert code == 0, out
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert out.strip() == f"{model_path}  sha256={digest}"
    assert sha256_file(model_path) == digest
    assert check_model_file(model_path) == model_path


def test_missing_file(tmp_path):
    _assert_one_line_error(tmp_path / "SMPLX_NEUTRAL.npz", "not found")


def test_wrong_file_type(tmp_path):
    p = tmp_path / "SMPLX_NEUTRAL.obj"
    p.write_text("v 0 0 0\n")
    _assert_one_line_error(p, "wrong file type")


def test_gender_part_of_name(tmp_path, model_path):
    p = tmp_path / "SMPLX_KID.npz"
    p.write_bytes(model_path.read_bytes())
    _assert_one_line_error(p, "gender", "NEUTRAL")


def test_smpl_file_name_is_not_smplx(tmp_path):
    p = tmp_path / "SMPL_NEUTRAL.pkl"
    p.write_bytes(b"x")
    _assert_one_line_error(p, "not an SMPL-X")


def test_unreadable_npz_and_pkl(tmp_path):
    npz = tmp_path / "SMPLX_MALE.npz"
    npz.write_bytes(b"this is not a zip archive")
    _assert_one_line_error(npz, "not a readable .npz")
    truncated = tmp_path / "t" / "SMPLX_NEUTRAL.npz"
    truncated.parent.mkdir()
    np.savez(truncated, v_template=np.zeros((10475, 3)))
    truncated.write_bytes(truncated.read_bytes()[:200])
    _assert_one_line_error(truncated, "SMPLX_NEUTRAL.npz")
    pkl = tmp_path / "SMPLX_FEMALE.pkl"
    pkl.write_bytes(b"\x80\x04garbage")
    _assert_one_line_error(pkl, "unreadable .pkl")


def test_smpl_model_content_is_reported(tmp_path):
    p = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(p, v_template=np.zeros((6890, 3)), f=np.zeros((13776, 3), dtype=np.int64),
             kintree_table=np.zeros((2, 24), dtype=np.int64), weights=np.zeros((6890, 24)))
    _assert_one_line_error(p, "SMPL", "6890 vertices", "24 joints")


def test_missing_keys(tmp_path, arrays):
    p = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(p, **{k: v for k, v in arrays.items() if k not in ("hands_meanl", "lmk_faces_idx")})
    _assert_one_line_error(p, "missing keys", "hands_meanl", "lmk_faces_idx")


def test_wrong_array_shape(tmp_path, arrays):
    p = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(p, **dict(arrays, weights=arrays["weights"][:, :54]))
    _assert_one_line_error(p, "'weights'", "(10475, 54)", "(10475, 55)")


def test_pkl_model_is_accepted_and_loads(tmp_path, arrays):
    p = tmp_path / "SMPLX_NEUTRAL.pkl"
    with open(p, "wb") as fh:
        pickle.dump(dict(arrays), fh)
    assert check_model_file(p) == p
    model = load_body_model(p)
    assert model().joints.shape == (1, 144, 3)


def test_resolve_folder_layouts(tmp_path, model_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "SMPLX_NEUTRAL.npz").write_bytes(model_path.read_bytes())
    assert resolve_body_model(flat, None) == flat / "SMPLX_NEUTRAL.npz"
    official = tmp_path / "models"
    (official / "smplx").mkdir(parents=True)
    (official / "smplx" / "SMPLX_MALE.npz").write_bytes(model_path.read_bytes())
    assert resolve_body_model(official, None) == official / "smplx" / "SMPLX_MALE.npz"
    assert resolve_body_model(str(model_path), None) == model_path
    with pytest.raises(BodyModelError, match="no SMPLX_"):
        resolve_body_model(_empty_dir(tmp_path), None)
    with pytest.raises(BodyModelError, match="work directory"):
        resolve_body_model("synthetic", None)


def _empty_dir(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


@pytest.fixture
def generator_calls(model_path, monkeypatch):
    """The seeds the synthetic model generator is called with; it writes a copy of the model."""
    calls = []

    def fake_write(folder, seed=0):
        calls.append(seed)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "SMPLX_NEUTRAL.npz").write_bytes(model_path.read_bytes())
        return folder / "SMPLX_NEUTRAL.npz"

    monkeypatch.setattr("fitting.synthetic_model.write_synthetic_model", fake_write)
    return calls


def test_resolve_synthetic_writes_once_and_rewrites_when_stale(tmp_path, generator_calls):
    calls = generator_calls
    work = tmp_path / "work"
    p = resolve_body_model("synthetic", work)
    assert p == work / "bodymodel" / "SMPLX_NEUTRAL.npz" and calls == [0]
    assert resolve_body_model("synthetic", work) == p and calls == [0]  # reused
    resolve_body_model("synthetic", work, seed=3)
    assert calls == [0, 3]  # another seed: stale
    p.write_bytes(b"corrupted")
    resolve_body_model("synthetic", work, seed=3)
    assert calls == [0, 3, 3]  # bytes changed: stale
    assert not list((work / "bodymodel").glob("*.tmp"))


def test_synthetic_model_comes_from_the_cache_across_work_dirs(tmp_path, model_path, generator_calls, monkeypatch):
    calls = generator_calls
    monkeypatch.setenv(bodymodel.CACHE_ENV, str(tmp_path / "cache"))
    first = resolve_body_model("synthetic", tmp_path / "a")
    second = resolve_body_model("synthetic", tmp_path / "b")
    assert calls == [0]  # generated once, then copied from the cache
    assert second.read_bytes() == first.read_bytes() == model_path.read_bytes()
    cached = bodymodel.synthetic_cache_dir(0) / "SMPLX_NEUTRAL.npz"
    cached.write_bytes(b"corrupted")  # a damaged cache copy is never used
    resolve_body_model("synthetic", tmp_path / "c")
    assert calls == [0, 0]
    monkeypatch.setenv(bodymodel.CACHE_ENV, "off")
    assert bodymodel.synthetic_cache_dir(0) is None
    resolve_body_model("synthetic", tmp_path / "d")
    assert calls == [0, 0, 0]
    assert not list(tmp_path.rglob("*.tmp"))


def test_load_body_model_options(model_path, arrays):
    model = load_body_model(model_path, dtype=torch.float64, batch_size=3)
    out = model()
    assert out.vertices.shape == (3, 10475, 3) and out.vertices.dtype == torch.float64
    assert out.joints.shape == (3, 144, 3)
    assert model.num_betas == 10 and model.num_expression_coeffs == 10
    assert model.left_hand_pose.shape == (3, 45)  # full axis-angle hands, no PCA
    np.testing.assert_allclose(model.left_hand_mean.numpy(), arrays["hands_meanl"])
    flat = load_body_model(model_path, flat_hand_mean=True, use_face_contour=False)
    assert flat.left_hand_mean.abs().max() == 0
    assert flat().joints.shape == (1, 127, 3)
    small = load_body_model(model_path, num_betas=5, num_expression_coeffs=3)
    assert small.betas.shape == (1, 5) and small.expression.shape == (1, 3)


def test_bodymodel_module_keeps_official_shapes():
    assert bodymodel.REQUIRED_KEYS["J_regressor"] == (55, 10475)
    assert bodymodel.CONTOUR_KEYS["dynamic_lmk_bary_coords"] == (79, 17, 3)


@pytest.mark.slow
def test_cli_body_model_synthetic_writes_the_same_bytes(tmp_path, model_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["body-model", "synthetic", str(out), "--seed", "0"])
    assert result.exit_code == 0, result.output
    written = out / "smplx" / "SMPLX_NEUTRAL.npz"  # the official layout: smplx.create(out, model_type="smplx")
    assert result.output.strip() == f"{written}  sha256={sha256_file(written)}"
    assert written.read_bytes() == model_path.read_bytes()
    model = smplx.create(str(out), model_type="smplx", gender="neutral", use_pca=False, num_betas=10,
                         num_expression_coeffs=10, use_face_contour=True)
    assert model().joints.shape == (1, 144, 3)


@pytest.mark.slow
def test_resolve_synthetic_for_real(tmp_path, model_path):
    p = resolve_body_model("synthetic", tmp_path)
    assert p.read_bytes() == model_path.read_bytes()
    mtime = p.stat().st_mtime_ns
    assert resolve_body_model("synthetic", tmp_path) == p and p.stat().st_mtime_ns == mtime
