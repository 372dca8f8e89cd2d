"""The SMPL-X fitter: subset skinning against smplx, fitting accuracy on exact ground truth,
angle limits, the user-regressor and GMM paths, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fitting.bodymodel import load_body_model
from fitting.correspondence import correspondence_vertex_ids, h36m32_from_smplx
from fitting.errors import BodyModelError
from fitting.joint_sets import H36M17_FROM_H36M32
from fitting.lbs_subset import (
    pose_subset,
    pose_subset_with_jacobian,
    rest_joints,
    rest_vertices,
    skinner_from_smplx,
)
from fitting.losses import neighbour_mean
from fitting.priors import ANGLE_LIMIT_INDEX, ANGLE_LIMIT_SIGN, load_gmm_prior
from fitting.smplify import FitConfig, Fitter, kabsch, load_joint_regressor, matrix_to_rotvec

FAST = FitConfig(device="cpu", shape_frames=32)


def model_path(model_cache):
    return model_cache / "bodymodel" / "SMPLX_NEUTRAL.npz"


def load(model_cache, dtype=torch.float32, batch_size=1):
    return load_body_model(model_path(model_cache), dtype=dtype, batch_size=batch_size, num_betas=10,
                           num_expression_coeffs=10, use_face_contour=False, flat_hand_mean=False)


def smplx_forward(model, betas, pose55, transl):
    """smplx's own forward: (T, 55, 3) joints, (T, V, 3) vertices (the reference)."""
    t = pose55.shape[0]
    z = lambda n: torch.zeros(t, n, dtype=pose55.dtype)  # noqa: E731
    out = model(betas=betas.expand(t, -1), global_orient=pose55[:, 0], body_pose=pose55[:, 1:22].reshape(t, 63),
                jaw_pose=pose55[:, 22], leye_pose=pose55[:, 23], reye_pose=pose55[:, 24],
                left_hand_pose=pose55[:, 25:40].reshape(t, 45), right_hand_pose=pose55[:, 40:].reshape(t, 45),
                transl=transl, expression=z(10))
    return out.joints[:, :55], out.vertices


@pytest.fixture(scope="module")
def models(model_cache):
    return {torch.float32: load(model_cache, torch.float32, 6), torch.float64: load(model_cache, torch.float64, 6)}


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-7)])  # smplx perturbs angles by 1e-8
def test_subset_skinning_matches_smplx(models, dtype, tol):
    model = models[dtype]
    g = torch.Generator().manual_seed(0)
    betas = torch.randn(1, 10, generator=g, dtype=dtype)
    pose = 0.5 * torch.randn(6, 55, 3, generator=g, dtype=dtype)
    transl = torch.randn(6, 3, generator=g, dtype=dtype)
    ids = correspondence_vertex_ids()
    sk = skinner_from_smplx(model, ids)
    joints, verts = pose_subset(sk, pose, transl, betas=betas[0])
    ref_j, ref_v = smplx_forward(model, betas, pose, transl)
    assert (joints - ref_j).abs().max() < tol
    assert (verts - ref_v[:, ids]).abs().max() < tol


def test_subset_skinning_gradients_and_exact_jacobian(models):
    model = models[torch.float64]
    sk = skinner_from_smplx(model, correspondence_vertex_ids())
    g = torch.Generator().manual_seed(1)
    betas = torch.randn(10, generator=g, dtype=torch.float64)
    pose = (0.6 * torch.randn(2, 55, 3, generator=g, dtype=torch.float64)).requires_grad_()
    transl = torch.zeros(2, 3, dtype=torch.float64)
    joints, verts = pose_subset(sk, pose, transl, betas=betas)
    (joints.sum() + verts.sum()).backward()
    assert torch.isfinite(pose.grad).all() and pose.grad[:, :22].abs().sum() > 0

    jr, vr = rest_joints(sk, betas), rest_vertices(sk, betas)
    base = pose.detach()
    _, _, dj, dv = pose_subset_with_jacobian(sk, base, transl, jr, vr)

    def f(p22):
        return pose_subset(sk, torch.cat([p22, base[:, 22:]], 1), transl, joints_rest=jr, verts_rest=vr)

    jac_j, jac_v = torch.autograd.functional.jacobian(f, base[:, :22])
    for b in range(2):  # frames are independent: keep the diagonal blocks
        assert torch.allclose(jac_j[b, :, :, b], dj[b], atol=1e-10)
        assert torch.allclose(jac_v[b, :, :, b], dv[b], atol=1e-10)


def test_smoothness_anchor_is_half_the_second_difference_and_spares_constant_velocity():
    t = torch.arange(7, dtype=torch.float64)[:, None]
    linear = 0.3 + 2.0 * t * torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    assert torch.allclose(linear - neighbour_mean(linear), torch.zeros_like(linear), atol=1e-12)  # ends included
    x = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = x - neighbour_mean(x)
    second = x[:-2] - 2 * x[1:-1] + x[2:]  # independent: second differences
    assert torch.allclose(r[1:-1], -0.5 * second, atol=1e-12)
    assert torch.allclose(r[0], 0.5 * second[0], atol=1e-12) and torch.allclose(r[-1], 0.5 * second[-1], atol=1e-12)
    short = torch.randn(2, 3)
    assert torch.equal(neighbour_mean(short), short)


def test_rotvec_round_trip_and_kabsch():
    g = torch.Generator().manual_seed(2)
    axis = torch.nn.functional.normalize(torch.randn(64, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.linspace(0.0, np.pi - 1e-6, 64, dtype=torch.float64)[:, None]
    from fitting.lbs_subset import rodrigues

    r = rodrigues(axis * angle)
    back = rodrigues(matrix_to_rotvec(r))
    assert torch.allclose(back, r, atol=1e-6)
    src = torch.randn(8, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0.1, -2.0, 0.5], dtype=torch.float64)
    rot, trans = kabsch(src, src @ r[40].T + t)
    assert torch.allclose(rot, r[40], atol=1e-9) and torch.allclose(trans, t, atol=1e-9)


# --------------------------------------------------------------------------- fitting accuracy


def make_truth(model64, betas, action, frames, seed):
    """True smplx params of a plausible motion (pipeline.synthetic.motion), its mocap through the named
    correspondence, and the true mesh — made with smplx's own forward."""
    from common.rng import rng_for
    from pipeline.synthetic.motion import BodyDims, make_motion

    b = torch.as_tensor(betas, dtype=torch.float64)[None]
    zero = torch.zeros(1, 55, 3, dtype=torch.float64)
    rest_j, rest_v = smplx_forward(model64, b, zero, torch.zeros(1, 3, dtype=torch.float64))
    dims = BodyDims.from_rest(rest_j[0].detach().numpy(), rest_v[0].detach().numpy())
    motion = make_motion(action, frames, 50.0, dims, rng_for(seed, "test-motion", action))
    pose = torch.zeros(frames, 55, 3, dtype=torch.float64)
    pose[:, 0] = torch.as_tensor(motion.global_orient)
    pose[:, 1:22] = torch.as_tensor(motion.body_pose).reshape(frames, 21, 3)
    transl = torch.as_tensor(motion.pelvis) - rest_j[0, 0]
    joints, verts = smplx_forward(model64, b, pose, transl)
    mocap = h36m32_from_smplx(joints, verts[:, correspondence_vertex_ids()])
    return mocap.detach().numpy(), verts.detach().numpy()


def fitted_mesh(model64, betas, fit):
    t = len(fit.transl)
    pose = torch.zeros(t, 55, 3, dtype=torch.float64)
    pose[:, 0] = torch.as_tensor(fit.global_orient, dtype=torch.float64)
    pose[:, 1:22] = torch.as_tensor(fit.body_pose, dtype=torch.float64).reshape(t, 21, 3)
    b = torch.as_tensor(betas, dtype=torch.float64)[None]
    return smplx_forward(model64, b, pose, torch.as_tensor(fit.transl, dtype=torch.float64))


@pytest.fixture(scope="module")
def truth(model_cache):
    model64 = load(model_cache, torch.float64, 1)
    betas = np.clip(np.random.default_rng(3).normal(0.0, 0.8, 10), -2, 2)
    seqs = [make_truth(model64, betas, a, 40, i) for i, a in enumerate(("Walking", "SittingDown"))]
    return model64, betas, seqs


@pytest.fixture(scope="module")
def exact_fit(model_cache, truth):
    model64, betas, seqs = truth
    fitter = Fitter(load(model_cache), FAST)
    fitted_betas, info = fitter.fit_shape([m for m, _ in seqs])
    fits = [fitter.fit_sequence(m, fitted_betas) for m, _ in seqs]
    return fitted_betas, info, fits


def test_exact_markers_mpjpe_below_2mm_and_pve_below_25mm(truth, exact_fit):
    model64, _, seqs = truth
    fitted_betas, info, fits = exact_fit
    assert info["mpjpe_mm"].mean() < 2.0
    for (mocap, true_verts), fit in zip(seqs, fits, strict=True):
        assert fit.mpjpe_mm.max() <= 2.0, fit.mpjpe_mm.max()
        assert fit.joint_err_mm.shape == (len(mocap), 17)
        assert fit.converged.mean() > 0.5
        _, verts = fitted_mesh(model64, fitted_betas, fit)
        pve = np.linalg.norm(verts.detach().numpy() - true_verts, axis=-1).mean(-1) * 1000
        assert pve.mean() <= 25.0 and pve.max() <= 35.0, (pve.mean(), pve.max())


def test_recorded_mpjpe_matches_an_independent_smplx_recomputation(truth, exact_fit):
    model64, _, seqs = truth
    fitted_betas, _, fits = exact_fit
    mocap, _ = seqs[0]
    joints, verts = fitted_mesh(model64, fitted_betas, fits[0])
    pred = h36m32_from_smplx(joints, verts[:, correspondence_vertex_ids()]).detach().numpy()
    err = np.linalg.norm(pred - mocap, axis=-1)[:, H36M17_FROM_H36M32] * 1000
    np.testing.assert_allclose(err, fits[0].joint_err_mm, atol=0.05)
    np.testing.assert_allclose(err.mean(-1), fits[0].mpjpe_mm, atol=0.05)


def test_knees_and_elbows_never_hyperextend(exact_fit):
    for fit in exact_fit[2]:
        bent_wrong = fit.body_pose[:, list(ANGLE_LIMIT_INDEX)] * np.array(ANGLE_LIMIT_SIGN)
        assert bent_wrong.max() < 0.02


def test_noisy_markers_mpjpe_below_12mm(model_cache, truth):
    _, betas, seqs = truth
    mocap = seqs[0][0] + np.random.default_rng(4).normal(0.0, 0.010, seqs[0][0].shape)  # 10 mm per coordinate
    fitter = Fitter(load(model_cache), FAST)
    fitted_betas, _ = fitter.fit_shape([mocap])
    fit = fitter.fit_sequence(mocap, fitted_betas)
    assert fit.mpjpe_mm.mean() <= 12.0, fit.mpjpe_mm.mean()


# --------------------------------------------------------------------------- user files


def test_user_regressor_replaces_the_named_correspondence(model_cache, truth, tmp_path):
    model64, betas, _ = truth
    v = 10475
    rng = np.random.default_rng(5)
    # like published regressors: each of 17 rows a convex combination of the 8 rest vertices
    # nearest to an SMPL-X body joint
    rest = model64.v_template.detach().numpy()
    centres = (model64.J_regressor.detach().numpy() @ rest)
    body_joints = [0, 2, 5, 8, 1, 4, 7, 3, 9, 12, 15, 16, 18, 20, 17, 19, 21]
    reg = np.zeros((17, v))
    for row, j in enumerate(body_joints):
        ids = np.argsort(np.linalg.norm(rest - centres[j], axis=1))[:8]
        reg[row, ids] = rng.dirichlet(np.ones(8))
    path = tmp_path / "regressor.npy"
    np.save(path, reg)
    loaded = load_joint_regressor(path, v)
    mocap, true_verts = make_truth(model64, betas, "Greeting", 12, 7)
    regressed = np.einsum("jv,tvc->tjc", reg, true_verts)
    targets = np.zeros((12, 32, 3))
    targets[:, H36M17_FROM_H36M32] = regressed
    fitter = Fitter(load(model_cache), FAST, regressor=loaded)
    fit = fitter.fit_sequence(targets, betas.astype(np.float32))
    # 17 interior-vertex targets constrain less than the 32-joint mapping (no toe, thumb or
    # hand-end points), and FAST has few iterations: the frame cap is looser than the 2 mm
    # that the named-correspondence tests above hold on every frame.
    assert fit.mpjpe_mm.mean() < 2.0 and fit.mpjpe_mm.max() < 5.0, fit.mpjpe_mm


@pytest.mark.parametrize("content", ["shape", "garbage"])
def test_bad_regressor_file_names_the_file(tmp_path, content):
    path = tmp_path / "bad_regressor.npy"
    if content == "shape":
        np.save(path, np.zeros((24, 10475)))
    else:
        path.write_bytes(b"not numpy")
    with pytest.raises(BodyModelError, match="bad_regressor.npy"):
        load_joint_regressor(path, 10475)


def test_gmm_prior_file(tmp_path):
    rng = np.random.default_rng(6)
    means = rng.normal(0, 0.1, (2, 69))
    a = rng.normal(0, 0.1, (69, 69))
    covars = np.stack([a @ a.T + 0.01 * np.eye(69)] * 2)  # equal constants: best = nearest
    np.savez(tmp_path / "gmm.npz", means=means, covars=covars, weights=np.array([0.5, 0.5]))
    gmm = load_gmm_prior(tmp_path / "gmm.npz")
    x = torch.as_tensor(means[1, :63] + 0.01)
    r = gmm.residual(x)
    maha = [float((x - means[k, :63]) @ np.linalg.inv(covars[k, :63, :63]) @ (x - means[k, :63]).numpy())
            for k in range(2)]
    assert abs(float((r * r).sum()) - min(maha)) < 1e-6 * max(1.0, min(maha))
    np.savez(tmp_path / "bad.npz", means=means)
    with pytest.raises(BodyModelError, match="bad.npz"):
        load_gmm_prior(tmp_path / "bad.npz")
