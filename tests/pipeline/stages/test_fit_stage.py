"""The fit stage end to end: extract → fit on the synthetic release, outputs checked with
smplx's own forward against the mocap and the release's ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import install_model

from cli import main
from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx
from fitting.joint_sets import H36M17_FROM_H36M32
from pipeline.orchestration.api import run_stages

SMPLX_KWARGS = ("betas", "global_orient", "body_pose", "transl", "left_hand_pose", "right_hand_pose",
                "jaw_pose", "leye_pose", "reye_pose", "expression")


@pytest.fixture(scope="module")
def fitted_work(tmp_path_factory, synthetic_release, model_cache):
    work = tmp_path_factory.mktemp("fitwork")
    install_model(model_cache, work)
    reports = run_stages(["extract", "fit"], work, h36m=synthetic_release, stride=1, workers=1, progress=False,
                         options={"device": "cpu"})
    for report in reports:
        assert not report.failed, report.format()
    return work


def smplx_model(work, batch_size):
    import smplx

    return smplx.create(str(work / "bodymodel" / "SMPLX_NEUTRAL.npz"), model_type="smplx", use_pca=False,
                        num_betas=10, num_expression_coeffs=10, flat_hand_mean=False, batch_size=batch_size,
                        dtype=torch.float64)


def forward(model, params):
    kw = {k: torch.as_tensor(np.asarray(params[k]), dtype=torch.float64) for k in SMPLX_KWARGS}
    kw["betas"] = kw["betas"].reshape(1, -1).expand(kw["transl"].shape[0], -1)
    with torch.no_grad():
        return model(**kw)


def test_outputs_are_smplx_kwargs_that_reproduce_the_recorded_errors(fitted_work):
    fit_path = fitted_work / "fit" / "S9" / "Walking_1.npz"
    joints_world = np.load(fitted_work / "extract" / "S9" / "Walking_1" / "joints_world.npy").astype(np.float64)
    with np.load(fit_path) as z:
        fit = {k: z[k] for k in z.files}
    t = len(joints_world)
    np.testing.assert_array_equal(fit["frame_index"], np.arange(t))
    shapes = {"betas": (10,), "global_orient": (t, 3), "body_pose": (t, 63), "transl": (t, 3),
              "left_hand_pose": (t, 45), "right_hand_pose": (t, 45), "jaw_pose": (t, 3), "expression": (t, 10),
              "mpjpe_mm": (t,), "joint_err_mm": (t, 17), "converged": (t,), "energy_pose_prior": (t,)}
    for key, shape in shapes.items():
        assert fit[key].shape == shape, key
    assert len(str(fit["body_model_sha256"])) == 64
    with np.load(fitted_work / "fit" / "S9" / "shape.npz") as z:
        np.testing.assert_array_equal(z["betas"], fit["betas"])

    out = forward(smplx_model(fitted_work, t), fit)
    pred = h36m32_from_smplx(out.joints[:, :55], out.vertices[:, correspondence_vertex_ids()]).numpy()
    err = np.linalg.norm(pred - joints_world, axis=-1)[:, H36M17_FROM_H36M32] * 1000
    np.testing.assert_allclose(err, fit["joint_err_mm"], atol=0.05)
    assert err.mean(-1).max() <= 2.0


def test_fitted_mesh_is_close_to_the_true_mesh(fitted_work, synthetic_release):
    with np.load(fitted_work / "fit" / "S9" / "Walking_1.npz") as z:
        fit = {k: z[k] for k in z.files}
    with np.load(synthetic_release / "groundtruth" / "S9" / "Walking 1.npz") as z:
        truth = {k: z[k] for k in z.files}
    model = smplx_model(fitted_work, len(fit["transl"]))
    pve = np.linalg.norm(forward(model, fit).vertices.numpy() - forward(model, truth).vertices.numpy(), axis=-1)
    assert pve.mean() * 1000 <= 25.0


def test_a_second_run_skips_the_done_subject(fitted_work):
    reports = run_stages(["fit"], fitted_work, stride=1, workers=1, progress=False, options={"device": "cpu"})
    assert [(o.key, o.result) for o in reports[0].outcomes] == [("S9", "skipped")]


def test_gpu_units_ask_for_a_gpu(fitted_work):
    from pipeline.selection import Selection
    from pipeline.stages.fit import FitStageConfig, plan
    from pipeline.store import WorkDir

    units = plan(FitStageConfig(selection=Selection(), device="cuda"), WorkDir(fitted_work))
    assert [u.key for u in units] == ["S9"] and units[0].resources == {"GPU": 1}
    units = plan(FitStageConfig(selection=Selection(), device="cpu"), WorkDir(fitted_work))
    assert units[0].resources is None


def test_cli_bad_regressor_is_a_one_line_error(fitted_work, tmp_path):
    bad = tmp_path / "my_regressor.npy"
    np.save(bad, np.zeros((5, 7)))
    result = CliRunner().invoke(main, ["fit", "--out", str(fitted_work), "--device", "cpu",
                                       "--joint-regressor", str(bad), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "my_regressor.npy" in result.output and "Traceback" not in result.output
