"""Baselines beside the model's numbers, decoder diagnostics and pickle-free checkpoints.

Every baseline of ``evaluate`` is checked against a computation written here separately, in
numpy float64 straight from the shard files (h5py), not through nvf/.
"""

import json

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from nvf.config import apply_overrides, preset_config
from nvf.errors import NVFError
from nvf.evaluate import evaluate, verdict
from nvf.synthetic import write_synthetic_split
from nvf.train import CHECKPOINT, load_model, train
from sampling.shards import ShardConfig

SHARDS = ShardConfig(radius=0.2, num_points=256, image_size=32)
TINY = {"model": {"width": 8, "levels": 1, "mlp": [16, 16]}, "points": 32, "batch_size": 2,
        "device": "cpu", "epochs": 1}


def _h5_arrays(split_dir, name):
    files = sorted(split_dir.glob("shard-*.h5"))
    return np.concatenate([h5py.File(f, "r")[name][...] for f in files]).astype(np.float64)


def _pa_errors(pred, gt):
    """Similarity Procrustes per sample (column-vector Umeyama), float64: (S, J) errors.
    A pred with all joints at one point lands on gt's centroid."""
    out = []
    for X, Y in zip(pred, gt, strict=True):
        A, B = (X - X.mean(0)).T, (Y - Y.mean(0)).T
        if not np.any(A):
            out.append(np.linalg.norm(Y - Y.mean(0), axis=1))
            continue
        U, S, Vt = np.linalg.svd(B @ A.T)
        D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
        R = U @ D @ Vt
        s = np.trace(np.diag(S) @ D) / (A**2).sum()
        out.append(np.linalg.norm((s * R @ A).T + Y.mean(0) - Y, axis=1))
    return np.array(out)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baselines")
    train_dir = write_synthetic_split(tmp, "train", 6, SHARDS, samples_per_shard=4, seed=1)
    test_dir = write_synthetic_split(tmp, "test", 5, SHARDS, samples_per_shard=2, seed=2)
    config = apply_overrides(preset_config("tiny"), TINY)
    train(train_dir, tmp / "run", config, progress=False)
    report = evaluate(tmp / "run", test_dir, device="cpu", progress=False)
    return tmp, train_dir, test_dir, report


def test_zero_and_mean_pose_baselines_match_numpy(evaluated):
    _, train_dir, test_dir, report = evaluated
    gt = _h5_arrays(test_dir, "joints")  # (S, J, 3)
    gt_rel = gt - gt[:, :1]
    zero = report["baselines"]["zero"]
    assert zero["mpjpe_mm"] == pytest.approx(np.linalg.norm(gt_rel, axis=-1).mean() * 1000, rel=1e-9)
    centred = gt - gt.mean(1, keepdims=True)
    assert zero["pa_mpjpe_mm"] == pytest.approx(np.linalg.norm(centred, axis=-1).mean() * 1000, rel=1e-9)

    train_joints = _h5_arrays(train_dir, "joints")
    mean_rel = (train_joints - train_joints[:, :1]).mean(0)  # the TRAINING split's mean pose
    mean = report["baselines"]["mean_pose"]
    assert mean["mpjpe_mm"] == pytest.approx(np.linalg.norm(mean_rel - gt_rel, axis=-1).mean() * 1000, rel=1e-9)
    pred = gt[:, :1] + mean_rel
    assert mean["pa_mpjpe_mm"] == pytest.approx(_pa_errors(pred, gt).mean() * 1000, rel=1e-9)
    # the test split's own mean would score differently: the baseline really is the training one
    own = (gt_rel.mean(0))
    assert abs(np.linalg.norm(own - gt_rel, axis=-1).mean() * 1000 - mean["mpjpe_mm"]) > 0.1


def test_model_numbers_are_on_the_same_samples(evaluated):
    _, _, test_dir, report = evaluated
    assert report["samples"] == len(_h5_arrays(test_dir, "frame")) == 5
    assert set(report["baselines"]) == {"zero", "mean_pose", "oracle"}


def test_oracle_below_one_mm_and_decoder_counts(evaluated):
    tmp, _, test_dir, report = evaluated
    assert report["baselines"]["oracle"]["mpjpe_mm"] < 1.0
    assert report["baselines"]["oracle"]["pa_mpjpe_mm"] < 1.0
    sdf = _h5_arrays(test_dir, "sdf")
    threshold = load_model(tmp / "run", torch.device("cpu"))[1].vote_sdf_threshold
    od = report["oracle_decoder"]
    passed = (np.abs(sdf) < threshold).sum(1)
    assert od["passed_mean"] == pytest.approx(passed.mean()) and od["passed_min"] == passed.min()
    assert od["points_per_sample"] == sdf.shape[1]
    for name, d in od["per_joint"].items():  # GT votes: estimates agree to float16 precision
        assert d["voters"] >= 1 and d["spread_mm"] < 1.0, name
    d = report["decoder"]
    assert 0 <= d["passed_min"] <= d["passed_mean"] <= d["points_per_sample"]
    assert set(d["per_joint"]) == set(od["per_joint"])


def test_verdict_says_worse_in_words():
    base = {"zero": {"mpjpe_mm": 450.0, "pa_mpjpe_mm": 300.0},
            "mean_pose": {"mpjpe_mm": 200.0, "pa_mpjpe_mm": 150.0}}
    worse = verdict({"mpjpe_mm": 400.0, "pa_mpjpe_mm": 120.0, "baselines": base})
    assert "WORSE than the mean-pose baseline" in worse and "MPJPE 400.0 vs 200.0" in worse
    assert "PA-MPJPE" not in worse.split("(")[1].split(")")[0]  # only the number that is worse
    assert "worse even than the zero baseline" not in worse
    assert "worse even than the zero" in verdict({"mpjpe_mm": 460.0, "pa_mpjpe_mm": 320.0, "baselines": base})
    better = verdict({"mpjpe_mm": 100.0, "pa_mpjpe_mm": 80.0, "baselines": base})
    assert better.startswith("the model beats the mean-pose baseline") and "0.50x" in better


def test_checkpoint_loads_without_pickle(evaluated, tmp_path):
    tmp = evaluated[0]
    ckpt = torch.load(tmp / "run" / CHECKPOINT, map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "epoch", "train_stats", "joint_names"} <= set(ckpt)
    stats = json.loads((tmp / "run" / "train_stats.json").read_text())
    assert stats == ckpt["train_stats"] and stats["samples"] == 6
    # a checkpoint that needs pickle to run code is refused with a one-line error, not executed
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "config.json").write_text((tmp / "run" / "config.json").read_text())
    torch.save({"model": ckpt["model"], "evil": _Unpicklable()}, bad / CHECKPOINT)
    with pytest.raises(NVFError, match="checkpoint.pt: not a loadable checkpoint"):
        load_model(bad, torch.device("cpu"))


class _Unpicklable:
    """An arbitrary class: loading it needs pickle's global lookup (refused by weights_only)."""


def test_cli_evaluate_prints_baselines(evaluated):
    tmp, _, test_dir, _ = evaluated
    r = CliRunner().invoke(main, ["evaluate", "--run", str(tmp / "run"), "--shards", str(test_dir),
                                  "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    for words in ("zero (all joints at the root)", "mean pose of train", "oracle", "verdict:",
                  "passed |SDF| <", "vote spread"):
        assert words in r.output, words


def test_demo_summary_line_names_the_baselines_and_the_verdict(evaluated):
    from pipeline.recipes.demo import nvf_summary

    report = evaluated[3]
    line = nvf_summary({**report, "epochs": 1})
    for words in ("mean pose of the training split", "zero (all joints at the root)", "oracle",
                  f"{report['baselines']['mean_pose']['mpjpe_mm']:.1f}", report["verdict"]):
        assert words in line, words
    assert ("WORSE than the mean-pose baseline" in line) != ("beats the mean-pose baseline" in line)
