"""The audit's plausibility figures against an independent recomputation from the npz files.

The reference side uses only the fit/ground-truth npz files, the model file, ``smplx.create``
(float64) and scipy's rotations; the limit table is read as data (fitting.joint_limits).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import extract_with_true_fit, true_fit_work
from scipy.spatial.transform import Rotation

from cli import main
from fitting.joint_limits import BODY_JOINT_NAMES, BONE_CHILD, JOINT_LIMITS
from fitting.joint_sets import SMPLX55

PARAM_KEYS = ("global_orient", "body_pose", "transl", "left_hand_pose", "right_hand_pose", "jaw_pose",
              "leye_pose", "reye_pose", "expression")


def smplx_model(path):
    import smplx
    import torch

    return smplx.create(str(path), model_type="smplx", gender="neutral", ext="npz", use_pca=False, num_betas=10,
                        num_expression_coeffs=10, use_face_contour=False, flat_hand_mean=False,
                        dtype=torch.float64)


def forward(model, params, rows):
    import torch

    kw = {k: torch.as_tensor(params[k][rows], dtype=torch.float64) for k in PARAM_KEYS}
    kw["betas"] = torch.as_tensor(params["betas"], dtype=torch.float64)[None].expand(len(rows), -1)
    with torch.no_grad():
        out = model(**kw)
    return out.vertices.numpy(), out.joints[:, :55].numpy()


def reference_axes(model, betas):
    """(21, 3) unit rest bone axes: joint -> child (BONE_CHILD), leaves: parent -> joint."""
    zero = {k: np.zeros((1, n)) for k, n in zip(PARAM_KEYS, (3, 63, 3, 45, 45, 3, 3, 3, 10))}
    _, joints = forward(model, {**zero, "betas": betas}, np.array([0]))
    j = joints[0]
    axes = []
    for name in BODY_JOINT_NAMES:
        i = SMPLX55.index(name)
        child = BONE_CHILD[name]
        a, b = (SMPLX55.parents[i], i) if child is None else (i, SMPLX55.index(child))
        axes.append((j[b] - j[a]) / np.linalg.norm(j[b] - j[a]))
    return np.array(axes)


def reference_violation_deg(rotvec, axis, limit):
    """Degrees beyond one joint's limit, from the definition in fitting.joint_limits' docstring."""
    q = Rotation.from_rotvec(rotvec).as_quat()  # x, y, z, w
    if q[3] < 0:
        q = -q
    twist = 2 * math.atan2(q[:3] @ axis, q[3])
    swing = (Rotation.from_rotvec(rotvec) * Rotation.from_rotvec(-twist * axis)).as_rotvec()
    ref = np.array([1.0, 0, 0]) if limit.swing_ref == "x" else np.array([0, 1.0, 0])
    u = ref - (ref @ axis) * axis
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    su, sv = swing @ u, swing @ v
    lu = limit.u_range[1] if su >= 0 else -limit.u_range[0]
    lv = limit.v_range[1] if sv >= 0 else -limit.v_range[0]
    rho = math.hypot(su / math.radians(lu), sv / math.radians(lv))
    swing_ex = math.hypot(su, sv) * (1 - 1 / rho) if rho > 1 else 0.0
    lo, hi = (math.radians(x) for x in limit.twist_range)
    twist_ex = max(0.0, twist - hi, lo - twist)
    return math.degrees(max(swing_ex, twist_ex)), math.degrees(twist)


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory, synthetic_release, model_cache):
    """The true fit of S9 Walking_1 (10 frames) with implausible frames written into it."""
    work, path, data = true_fit_work(tmp_path_factory, "plausibility_work", synthetic_release, model_cache)
    pose = data["body_pose"].reshape(-1, 21, 3)
    j = BODY_JOINT_NAMES.index
    pose[1, j("left_shoulder")] = [2.2, 0.0, 0.0]  # 126° twist about the arm's axis (limit 70/-90)
    wrist = np.array([0.3, 0.2, 0.0])  # the same rotation as a vector longer than pi
    pose[2, j("right_wrist")] = wrist * (1 - 2 * math.pi / np.linalg.norm(wrist))
    pose[3, j("left_elbow")] = [0.0, -2.9, 0.0]  # forearm folded into the upper arm (166° flexion)
    pose[5, j("right_knee")] = [-0.6, 0.0, 0.0]  # knee bent 34° the wrong way
    data["body_pose"] = pose.reshape(-1, 63)
    data["betas"] = data["betas"] * 1.6
    np.savez(path, **data)
    result = CliRunner().invoke(main, ["audit", "--out", str(work), "--worst", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((work / "audit" / "summary.json").read_text())
    return work, data, summary, result.output


def test_plausibility_equals_independent_recomputation(perturbed, synthetic_release, model_cache):
    work, data, summary, _ = perturbed
    model = smplx_model(model_cache / "bodymodel" / "SMPLX_NEUTRAL.npz")
    p = summary["plausibility"]
    (seq,) = summary["sequences"]
    per_frame = seq["per_frame"]
    frames = np.arange(len(data["transl"]))
    assert per_frame["frame"] == frames.tolist()

    # rotation-vector norms
    rot = np.linalg.norm(np.concatenate([data["global_orient"][:, None], data["body_pose"].reshape(-1, 21, 3)], 1),
                         axis=-1)
    assert p["rotvec"]["frames_over_pi"] == int((rot > math.pi).any(-1).sum()) == 1
    assert per_frame["max_rotvec_deg"] == pytest.approx(np.degrees(rot.max(-1)).tolist(), abs=1e-9)

    # joint limits and twist, from scipy's rotations and the table's numbers
    axes = reference_axes(model, np.zeros_like(data["betas"]))  # the limits are in the mean shape's bone frames
    viol = np.zeros((len(frames), 21))
    twist = np.zeros((len(frames), 21))
    for t in frames:
        for k, name in enumerate(BODY_JOINT_NAMES):
            viol[t, k], twist[t, k] = reference_violation_deg(data["body_pose"][t, 3 * k:3 * k + 3], axes[k],
                                                              JOINT_LIMITS[name])
    assert per_frame["max_limit_violation_deg"] == pytest.approx(viol.max(-1).tolist(), abs=1e-6)
    beyond = viol > p["joint_limits"]["tolerance_deg"]
    assert p["joint_limits"]["frames_beyond"] == int(beyond.any(-1).sum())
    assert set(p["joint_limits"]["per_joint"]) == {BODY_JOINT_NAMES[k] for k in np.flatnonzero(beyond.any(0))}
    assert {"left_shoulder", "left_elbow", "right_knee"} <= set(p["joint_limits"]["per_joint"])
    for name, v in p["joint_limits"]["per_joint"].items():
        assert v["max_deg"] == pytest.approx(viol[:, BODY_JOINT_NAMES.index(name)].max(), abs=1e-6)
    assert per_frame["worst_limit_joint"][1] == "left_shoulder"
    limbs = {"left_upper_arm": "left_shoulder", "right_forearm": "right_elbow", "left_shin": "left_knee"}
    for limb, joint in limbs.items():
        tw = twist[:, BODY_JOINT_NAMES.index(joint)]
        assert p["twist_deg"][limb]["max_abs"] == pytest.approx(np.abs(tw).max(), abs=1e-6)
        assert p["twist_deg"][limb]["mean_abs"] == pytest.approx(np.abs(tw).mean(), abs=1e-6)

    # shape
    assert p["betas"]["S9"]["norm"] == pytest.approx(float(np.sqrt((data["betas"] ** 2).sum())))
    assert p["betas"]["S9"]["max_abs"] == pytest.approx(float(np.abs(data["betas"]).max()))

    # PVE against the release's true meshes, by skinning region
    with np.load(synthetic_release / "groundtruth" / "S9" / "Walking 1.npz") as z:
        truth = {k: z[k] for k in z.files}
    fit_v, _ = forward(model, data, frames)
    true_v, _ = forward(model, truth, frames)
    err = np.sqrt(((fit_v - true_v) ** 2).sum(-1)) * 1000
    assert p["pve"]["mean_mm"] == pytest.approx(err.mean(), rel=1e-6)
    assert p["pve"]["p95_mm"] == pytest.approx(np.percentile(err, 95), rel=1e-4)
    assert per_frame["pve_mm"] == pytest.approx(err.mean(-1).tolist(), rel=1e-6)
    with np.load(model_cache / "bodymodel" / "SMPLX_NEUTRAL.npz", allow_pickle=True) as z:
        dominant = z["weights"].argmax(1)
    arms = np.isin(dominant, [SMPLX55.index("left_shoulder"), SMPLX55.index("right_shoulder")])
    assert p["pve"]["regions_mm"]["upper_arms"] == pytest.approx(err[:, arms].mean(), rel=1e-5)
    assert err.mean() > 5  # the scaled betas change the body: the figures are not all zero

    # self-intersection: the folded elbow, none in the true walking poses (checked away from it)
    depth = per_frame["self_intersection_mm"]
    assert depth[3] > 10
    assert max(depth[t] for t in (0, 4, 6, 7, 8, 9)) < 2
    assert p["self_intersection"]["frames_beyond_truth"] >= 1  # the folded elbow; the truth is not folded


def test_audit_output_names_the_implausible_frames(perturbed):
    work, _, summary, output = perturbed
    assert "1 frames with a rotation vector > 180°" in output
    assert summary["worst_limits"][0]["frame"] in (1, 3)
    page = (work / "audit" / "index.html").read_text()
    assert "Plausibility" in page and "Converged</i> means" in page
    for img in ("plausibility.png", "mismatch.png", "time_S9_Walking_1.png"):
        assert (work / "audit" / img).is_file()


def _bone_rotations(params):
    """(T, 22, 3, 3) world rotations of smplx joints 0..21, composed with scipy."""
    go = Rotation.from_rotvec(params["global_orient"])
    local = [Rotation.from_rotvec(params["body_pose"][:, 3 * k:3 * k + 3]) for k in range(21)]
    world = [go]
    for j in range(1, 22):
        world.append(world[SMPLX55.parents[j]] * local[j - 1])
    return np.stack([w.as_matrix() for w in world], 1)


OFFSETS_M = {  # h36m32 joint -> (its parent bone's smplx joint, offset in that bone's frame)
    "RightLeg": ("right_hip", (0.012, -0.02, 0.015)),
    "LeftForeArm": ("left_shoulder", (0.03, 0.01, -0.02)),
    "Head": ("neck", (0.0, 0.025, 0.02)),
}


@pytest.mark.parametrize("mismatched", [False, True])
def test_mismatch_detector(tmp_path, synthetic_release, model_cache, mismatched):
    from fitting.joint_sets import H36M32

    work = tmp_path / "work"
    extract_with_true_fit(work, synthetic_release, model_cache, stride=5, workers=1)
    mocap_path = work / "extract" / "S9" / "Walking_1" / "joints_world.npy"
    mocap = np.load(mocap_path).astype(np.float64)
    if mismatched:
        with np.load(work / "fit" / "S9" / "Walking_1.npz") as z:
            rot = _bone_rotations({k: z[k] for k in ("global_orient", "body_pose")})
        for name, (bone, offset) in OFFSETS_M.items():
            mocap[:, H36M32.index(name)] += rot[:, SMPLX55.index(bone)] @ np.array(offset)
        mocap += np.random.default_rng(1).normal(0.0, 0.002, mocap.shape)  # 2 mm marker noise
        np.save(mocap_path, mocap.astype(np.float32))
    result = CliRunner().invoke(main, ["audit", "--out", str(work), "--worst", "0", "--intersection-stride", "10"])
    assert result.exit_code == 0, result.output
    mm = json.loads((work / "audit" / "summary.json").read_text())["plausibility"]["mismatch"]
    if not mismatched:
        assert mm["joints"] == [] and not mm["detected"] and "WARNING" not in result.output
        return
    assert mm["joints"] == sorted(OFFSETS_M)
    assert "--joint-regressor" in mm["hint"] and "WARNING skeleton mismatch" in result.output
    for name, (_, offset) in OFFSETS_M.items():
        row = mm["subjects"]["S9"]["per_joint"][name]
        assert row["mean_mm"] == pytest.approx(np.array(offset) * 1000, abs=2.0)


def test_self_intersection_depth_of_two_overlapping_spheres():
    """Two unit-sphere meshes 1.7 apart (overlapping by 0.3): the vertices of each inside the other lie at
    depth (1 - distance to the other centre); the rest are not intruding."""
    import trimesh

    from pipeline.checks.plausibility import self_intersection_depth

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    va = np.asarray(sphere.vertices)
    f = np.asarray(sphere.faces)
    centre_b = np.array([1.7, 0.0, 0.0])
    vertices = np.concatenate([va, va + centre_b])
    faces = np.concatenate([f, f + len(va)])
    # "rest pose": the spheres apart, so each sphere is its own vertices' neighbourhood
    rest = np.concatenate([va, va + np.array([10.0, 0, 0])])
    depth = self_intersection_depth(vertices, faces, rest, neighbourhood_m=0.5, cap_m=0.5)
    to_other_centre = np.concatenate([np.linalg.norm(va - centre_b, axis=1), np.linalg.norm(va + centre_b, axis=1)])
    expected = np.clip(1 - to_other_centre, 0, None)
    clear = np.abs(expected) > 0.01  # away from the intersection curve (the probe is 1 mm out)
    np.testing.assert_allclose(depth[clear], expected[clear], atol=3e-3)  # facets: chord error of the mesh
    assert np.count_nonzero(depth > 0.01) == np.count_nonzero(expected > 0.01)
    assert depth.max() == pytest.approx(0.3, abs=3e-3)  # A's pole (1, 0, 0) is 0.7 from B's centre


@pytest.fixture(scope="module")
def mismatched_release(tmp_path_factory, model_cache):
    """S9 "Walking 1", 10 frames, mocap through the "mismatched" skeleton (1-4 cm offsets in the
    bone frames) plus 5 mm marker noise."""
    from pipeline.synthetic.release import SyntheticReleaseConfig, write_synthetic_release

    root = tmp_path_factory.mktemp("mismatched_release")
    config = SyntheticReleaseConfig(subjects=("S9",), sequences=((14, 1),), frames=10, scale=0.1,
                                    mocap_skeleton="mismatched", marker_noise_mm=5.0, model_cache=str(model_cache))
    return write_synthetic_release(root, config)


def test_mismatch_detector_on_the_mismatched_synthetic_skeleton(tmp_path, mismatched_release, model_cache):
    """The true body against the mismatched mocap: every joint sits at its release offset."""
    from fitting.joint_sets import H36M32

    work = tmp_path / "work"
    extract_with_true_fit(work, mismatched_release, model_cache, stride=5, workers=1)
    result = CliRunner().invoke(main, ["audit", "--out", str(work), "--worst", "0", "--intersection-stride", "10"])
    assert result.exit_code == 0, result.output
    assert "WARNING skeleton mismatch" in result.output and "--joint-regressor" in result.output
    mm = json.loads((work / "audit" / "summary.json").read_text())["plausibility"]["mismatch"]
    with np.load(mismatched_release / "groundtruth" / "S9" / "Walking 1.npz") as z:
        offsets_mm = z["mocap_offsets_m"] * 1000
    assert np.linalg.norm(offsets_mm, axis=-1).min() >= 10
    assert mm["joints"] == sorted(H36M32.names)
    rows = mm["subjects"]["S9"]["per_joint"]
    found = np.array([rows[n]["mean_mm"] for n in H36M32.names])
    # the mean of 10 frames of 5 mm noise per coordinate: within 4 standard errors
    assert np.abs(found - offsets_mm).max() < 4 * 5 / np.sqrt(10)
    spread = np.array([rows[n]["spread_mm"] for n in H36M32.names])
    assert spread.max() < 15  # the noise's, sqrt(3) x 5 mm, not the offsets'
