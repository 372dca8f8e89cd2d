"""H3WB splits, masks and metrics (pipeline/h3wb.py, pipeline/stages/h3wb.py, cli h3wb*)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.spatial.transform import Rotation

from fitting.joint_sets import COCOWB133, JOINT_SETS, SMPLX144, cocowb133_from_smplx144
from pipeline.errors import DataError
from pipeline.h3wb.format import (
    KEYPOINT_MASK_PROB,
    MASK_STRATEGIES,
    MASK_STRATEGY_PROBS,
    apply_mask,
    bbox_from_keypoints,
    draw_i2d_mask,
    h3wb_keypoints,
    sample_record,
    write_records_atomic,
)
from pipeline.h3wb.metrics import evaluate_files, h3wb_metrics
from pipeline.selection import Selection
from pipeline.stages.h3wb import H3WBConfig, build_h3wb

CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
SUBJECTS = {"S1": "train", "S8": "test"}
FIT_FRAMES = np.arange(0, 60, 5)  # the fit ran at stride 5 over 60 mocap frames


# --- a tiny work dir -------------------------------------------------------------------------------


def _look_at(centre, target=(0.0, 0.0, 0.9)):
    """cam_from_world (R, t) of an OpenCV camera at ``centre`` looking at ``target`` (z up world)."""
    centre, target = np.asarray(centre, float), np.asarray(target, float)
    z = target - centre
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ centre


def _cameras(subject_index: int) -> list[dict]:
    cams = []
    for i, cam_id in enumerate(CAMERA_IDS):
        angle = np.pi / 4 + i * np.pi / 2 + 0.05 * subject_index
        R, t = _look_at([4.5 * np.cos(angle), 4.5 * np.sin(angle), 1.5 + 0.05 * i])
        K = [[1145.0 + i, 0.0, 512.5 - i], [0.0, 1143.8 + i, 515.4 + i], [0.0, 0.0, 1.0]]
        cams.append({"id": cam_id, "width": 1000, "height": 1002 if i in (0, 3) else 1000, "K": K,
                     "dist": [-0.2, 0.24, -0.003, -0.001, -0.0014], "R": R.tolist(), "t": t.tolist()})
    return cams


def _fit_arrays(rng, count: int) -> dict:
    return {
        "betas": rng.normal(0, 0.5, 10).astype(np.float32),
        "global_orient": rng.normal(0, 0.3, (count, 3)).astype(np.float32),
        "body_pose": rng.normal(0, 0.1, (count, 63)).astype(np.float32),
        "transl": rng.normal([0, 0, 0.9], 0.3, (count, 3)).astype(np.float32),
        "left_hand_pose": rng.normal(0, 0.1, (count, 45)).astype(np.float32),
        "right_hand_pose": rng.normal(0, 0.1, (count, 45)).astype(np.float32),
        "jaw_pose": np.zeros((count, 3), np.float32),
        "leye_pose": np.zeros((count, 3), np.float32),
        "reye_pose": np.zeros((count, 3), np.float32),
        "expression": np.zeros((count, 10), np.float32),
        "frame_index": FIT_FRAMES[:count].astype(np.int64),
        "mpjpe_mm": rng.uniform(5, 30, count).astype(np.float32),
        "joint_err_mm": rng.uniform(5, 30, (count, 17)).astype(np.float32),
        "converged": np.ones(count, bool),
    }


def make_work(root: Path, missing_image=True) -> Path:
    """WORK with two subjects × two sequences: sequence.json, fit npz and JPEG frames.

    Images exist at stride 10 (frames 0, 10, …); one image of one camera is missing; one
    frame of S1/Walking_1 has a fit error of 80 mm.
    """
    import cv2

    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    rng = np.random.default_rng(7)
    for s_index, subject in enumerate(SUBJECTS):
        for sequence, action in (("Walking_1", "Walking"), ("Eating_2", "Eating")):
            seq_dir = root / "extract" / subject / sequence
            seq_dir.mkdir(parents=True)
            seq = {"name": sequence, "basename": sequence.replace("_", " "), "action": action,
                   "subaction": 1, "frames": 60, "cameras": _cameras(s_index)}
            (seq_dir / "sequence.json").write_text(json.dumps(seq))
            fit = _fit_arrays(rng, len(FIT_FRAMES))
            if (subject, sequence) == ("S1", "Walking_1"):
                fit["mpjpe_mm"][4] = 80.0  # frame 20
            (root / "fit" / subject).mkdir(parents=True, exist_ok=True)
            np.savez(root / "fit" / subject / f"{sequence}.npz", **fit)
            images = root / "images" / subject
            images.mkdir(parents=True, exist_ok=True)
            for frame in range(0, 60, 10):
                for cam in CAMERA_IDS:
                    if missing_image and (subject, sequence, frame, cam) == ("S8", "Eating_2", 30, CAMERA_IDS[2]):
                        continue
                    (images / f"{subject}_{sequence}.{cam}_{frame + 1:06d}.jpg").write_bytes(jpeg)
    return root


_BASE_JOINTS = np.random.default_rng(3).uniform([-0.3, -0.2, -0.9], [0.3, 0.2, 0.9], (144, 3))


def stand_in_joints(params: dict) -> np.ndarray:
    """144 joints moved rigidly by global_orient and transl: a body model stand-in (world, m)."""
    R = Rotation.from_rotvec(np.asarray(params["global_orient"], np.float64)).as_matrix()
    return np.einsum("nij,kj->nki", R, _BASE_JOINTS) + np.asarray(params["transl"], np.float64)[:, None]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = make_work(tmp_path_factory.mktemp("work"))
    config = H3WBConfig(train="S1", test="S8", max_fit_error_mm=50.0, seed=3)
    manifest = build_h3wb(work, config, joints_fn=stand_in_joints)
    return work, manifest


def _load(work, name):
    return json.loads((work / "h3wb" / name).read_text())


def _cameras_by_sample(work, manifest, split):
    """id → (camera dict from sequence.json, subject, sequence, frame) via the manifest's provenance."""
    prov = manifest["splits"][split]["provenance"]
    col = {c: i for i, c in enumerate(prov["columns"])}
    out = {}
    for row in prov["rows"]:
        seq = json.loads((work / "extract" / row[col["subject"]] / row[col["sequence"]] / "sequence.json").read_text())
        cam = next(c for c in seq["cameras"] if c["id"] == row[col["camera"]])
        out[row[col["id"]]] = (cam, row)
    return out


# --- joint sets and the mapping ---------------------------------------------------------------------


def test_smplx144_names_are_smplx_output_order():
    from smplx.joint_names import JOINT_NAMES

    assert list(SMPLX144.names) == list(JOINT_NAMES)
    assert JOINT_SETS["smplx144"] is SMPLX144 and JOINT_SETS["cocowb133"] is COCOWB133
    assert len(COCOWB133) == 133 and len(set(COCOWB133.names)) == 133


def _expected_smplx_name(coco_name: str) -> str:
    """COCO-WholeBody body / feet / hand name → smplx joint name (written out independently)."""
    fingers = {"thumb": "thumb", "forefinger": "index", "middle_finger": "middle",
               "ring_finger": "ring", "pinky_finger": "pinky"}
    side, _, rest = coco_name.partition("_")
    if rest == "hand_root":
        return f"{side}_wrist"
    for coco, smplx_finger in fingers.items():
        if rest.startswith(coco) and rest[len(coco):].isdigit():
            k = int(rest[len(coco):])
            return f"{side}_{smplx_finger}{k}" if k < 4 else f"{side}_{smplx_finger}"
    return coco_name


def test_cocowb133_mapping_agrees_with_smplx_names():
    from smplx.joint_names import JOINT_NAMES

    index = cocowb133_from_smplx144()
    assert index.shape == (133,) and not index.flags.writeable
    for k in [*range(0, 23), *range(91, 133)]:
        assert JOINT_NAMES[index[k]] == _expected_smplx_name(COCOWB133.names[k]), k
    # spot checks named in the brief
    name = lambda k: JOINT_NAMES[index[k]]  # noqa: E731
    assert (name(0), name(9), name(17), name(20)) == ("nose", "left_wrist", "left_big_toe", "right_big_toe")
    assert (name(91), name(112)) == ("left_wrist", "right_wrist")
    # face: iBUG-68 = 17 jaw-contour points, then smplx's 51 landmarks in order
    assert [JOINT_NAMES[i] for i in index[23:40]] == list(JOINT_NAMES[127:144])
    assert list(index[40:91]) == list(range(76, 127))


def test_lazy_module_attribute():
    import fitting.joint_sets as js

    assert np.array_equal(js.COCOWB133_FROM_SMPLX144, cocowb133_from_smplx144())
    with pytest.raises(AttributeError):
        js.NO_SUCH_THING  # noqa: B018


# --- geometry --------------------------------------------------------------------------------------


def test_h3wb_keypoints_batched_against_float64_loop():
    rng = np.random.default_rng(0)
    cams = _cameras(0)
    R = np.array([c["R"] for c in cams])
    t = np.array([c["t"] for c in cams])
    K = np.array([c["K"] for c in cams])
    X = rng.normal([0, 0, 1], 0.5, (2, 1, 133, 3))
    kp3d, kp2d = h3wb_keypoints(X, R, t, K)
    assert kp3d.shape == (2, 4, 133, 3) and kp2d.shape == (2, 4, 133, 2)
    for b in range(2):
        for c in range(4):
            for j in (0, 50, 132):
                cam = R[c] @ X[b, 0, j] + t[c]
                assert np.allclose(kp3d[b, c, j], 1000 * (R[c] @ X[b, 0, j]), atol=1e-9)
                u = K[c] @ (cam / cam[2])
                assert np.allclose(kp2d[b, c, j], u[:2], atol=1e-9)


def test_h3wb_keypoints_torch():
    torch = pytest.importorskip("torch")
    cams = _cameras(0)
    R, t, K = (torch.tensor([c[k] for c in cams], dtype=torch.float64) for k in ("R", "t", "K"))
    X = torch.randn(1, 133, 3, dtype=torch.float64, requires_grad=True)
    kp3d, kp2d = h3wb_keypoints(X, R, t, K)
    kp2d.sum().backward()
    assert kp3d.shape == (4, 133, 3) and torch.isfinite(X.grad).all()


def test_bbox_is_int_and_clipped():
    kp = np.array([[10.2, 20.7], [300.5, 400.1], [-5.0, 1200.0]])
    assert bbox_from_keypoints(kp, 1000, 1002).tolist() == [0, 20, 301, 1001]
    assert bbox_from_keypoints(kp[:2], 1000, 1002).tolist() == [10, 20, 301, 401]


# --- masks -----------------------------------------------------------------------------------------


def test_mask_rates_over_100k_draws():
    n = 100_000
    strategies = []
    random_masked = 0
    random_count = 0
    for i in range(n):
        visible, strategy = draw_i2d_mask(11, i)
        strategies.append(strategy)
        if strategy == "random":
            random_masked += int((~visible).sum())
            random_count += 1
        elif i < 2000:  # whole parts, exactly
            part = {"face": range(23, 91), "left_hand": range(91, 112), "right_hand": range(112, 133)}[strategy]
            assert set(np.flatnonzero(~visible)) == set(part)
    for strategy, p in zip(MASK_STRATEGIES, MASK_STRATEGY_PROBS, strict=True):
        assert abs(strategies.count(strategy) / n - p) < 0.01, strategy
    assert abs(random_masked / (random_count * 133) - KEYPOINT_MASK_PROB) < 0.01


def test_masks_deterministic_per_seed_and_id():
    a, sa = draw_i2d_mask(5, 1234)
    b, sb = draw_i2d_mask(5, 1234)
    assert sa == sb and np.array_equal(a, b)
    draws = {(draw_i2d_mask(s, 1234)[1], draw_i2d_mask(s, 1234)[0].tobytes()) for s in range(20)}
    assert len(draws) > 3
    kp = np.ones((133, 2))
    masked = apply_mask(kp, a)
    assert np.all(masked[~a] == 0) and np.all(masked[a] == 1)


# --- the build -----------------------------------------------------------------------------------


def test_file_set_and_shapes(built):
    work, manifest = built
    names = sorted(p.name for p in (work / "h3wb").iterdir() if not p.name.startswith("."))
    assert names == sorted([
        "2Dto3D_train.json", "RGBto3D_train.json", "2Dto3D_test_2d.json", "I2Dto3D_test_2d.json",
        "RGBto3D_test_img.json", "2Dto3D_test_3d.json", "I2Dto3D_test_3d.json", "RGBto3D_test_3d.json",
        "manifest.json", "manifest_train.json", "manifest_test.json", "videopose3d_train.npz",
        "videopose3d_test.npz"])
    train2d, train_rgb = _load(work, "2Dto3D_train.json"), _load(work, "RGBto3D_train.json")
    assert list(train2d) == list(train_rgb) == [str(i) for i in range(len(train2d))]
    sample = train2d["0"]
    assert set(sample) == {"keypoints_2d", "keypoints_3d"}
    assert list(sample["keypoints_3d"]) == [str(j) for j in range(133)]
    assert set(sample["keypoints_3d"]["5"]) == {"x", "y", "z"} and set(sample["keypoints_2d"]["5"]) == {"x", "y"}
    assert set(train_rgb["0"]) == {"image_path", "bbox", "keypoints_3d"}
    assert all(isinstance(v, int) for v in train_rgb["0"]["bbox"].values())
    assert train_rgb["0"]["keypoints_3d"] == sample["keypoints_3d"]


def test_counts_filters_and_provenance(built):
    work, manifest = built
    train = manifest["splits"]["train"]
    # S1: 2 sequences × frames 0,10,…,50 (images at stride 10) = 12, minus frame 20 of Walking_1 (80 mm)
    assert train["counts"]["poses"] == 11 and train["counts"]["samples"] == 44
    assert train["counts"]["excluded_fit_error"] == 1
    assert manifest["counts"]["train"]["frames_fitted"] == 24
    test = manifest["splits"]["test"]
    # S8: 12 frames with images, minus frame 30 of Eating_2 (one camera's image missing)
    assert test["counts"]["poses"] == 11 and test["counts"]["frames_without_images"] == 13
    rows = train["provenance"]["rows"]
    frames = [r[4] for r in rows if r[2] == "Walking_1"]
    assert 20 not in frames and frames[:8] == [0, 0, 0, 0, 10, 10, 10, 10]
    # samples 4k..4k+3 are one pose in the four cameras
    for k in range(0, len(rows), 4):
        group = rows[k : k + 4]
        assert [r[3] for r in group] == list(CAMERA_IDS)
        assert len({(r[1], r[2], r[4]) for r in group}) == 1


def test_2d_is_projection_of_3d_plus_t(built):
    """K · (keypoints_3d / 1000 + t) reproduces keypoints_2d within 0.01 px (float64)."""
    work, manifest = built
    for split, name in (("train", "2Dto3D_train.json"), ("test", "2Dto3D_test_3d.json"),
                        ("test", "I2Dto3D_test_3d.json")):
        data = _load(work, name)
        cams = _cameras_by_sample(work, manifest, split)
        worst = 0.0
        for sample_id, sample in data.items():
            cam, _ = cams[sample_id]
            K, t = np.array(cam["K"], np.float64), np.array(cam["t"], np.float64)
            X = np.array([[p["x"], p["y"], p["z"]] for p in sample["keypoints_3d"].values()]) / 1000 + t
            uv = (X @ K.T)[:, :2] / X[:, 2:3]
            got = np.array([[p["x"], p["y"]] for p in sample["keypoints_2d"].values()])
            worst = max(worst, np.abs(uv - got).max())
        assert worst < 0.01, (name, worst)


def test_3d_is_rotated_world_keypoints(built):
    """keypoints_3d = R · X_world (mm), X_world = the stand-in model's joints at the mapped indices."""
    work, manifest = built
    data = _load(work, "RGBto3D_train.json")
    cams = _cameras_by_sample(work, manifest, "train")
    index = cocowb133_from_smplx144()
    for sample_id in ("0", "5", str(len(data) - 1)):
        cam, row = cams[sample_id]
        fit = np.load(work / "fit" / row[1] / f"{row[2]}.npz")
        t_row = int(np.flatnonzero(fit["frame_index"] == row[4])[0])
        joints = stand_in_joints({"global_orient": fit["global_orient"][t_row : t_row + 1],
                                  "transl": fit["transl"][t_row : t_row + 1]})[0, index]
        expect = joints @ np.array(cam["R"]).T * 1000
        got = np.array([[p["x"], p["y"], p["z"]] for p in data[sample_id]["keypoints_3d"].values()])
        assert np.abs(got - expect).max() < 1e-3


def test_image_paths_exist_and_bboxes_hold_keypoints(built):
    work, manifest = built
    for name in ("RGBto3D_train.json", "RGBto3D_test_img.json", "RGBto3D_test_3d.json"):
        for sample in _load(work, name).values():
            subject = sample["image_path"].split("_")[0]
            assert (work / "images" / subject / sample["image_path"]).is_file()
    train2d, rgb = _load(work, "2Dto3D_train.json"), _load(work, "RGBto3D_train.json")
    for i, sample in train2d.items():
        uv = np.array([[p["x"], p["y"]] for p in sample["keypoints_2d"].values()])
        box = rgb[i]["bbox"]
        inside = uv.clip([0, 0], [999, 999])
        assert box["x_min"] <= inside[:, 0].min() and inside[:, 0].max() <= box["x_max"]


def test_test_split_ids_follow_h3wb(built):
    """2D task: ids 8k..8k+3, I2D task: ids 8k+4..8k+7 (official test_leaderboard.py), RGB: all."""
    work, manifest = built
    ids_2d = [int(i) for i in _load(work, "2Dto3D_test_2d.json")]
    ids_i2d = [int(i) for i in _load(work, "I2Dto3D_test_2d.json")]
    ids_rgb = [int(i) for i in _load(work, "RGBto3D_test_img.json")]
    assert ids_2d == [(i // 4) * 8 + i % 4 for i in range(len(ids_2d))]
    assert ids_i2d == [(i // 4) * 8 + i % 4 + 4 for i in range(len(ids_i2d))]
    assert sorted(ids_2d + ids_i2d) == ids_rgb == list(range(44))
    assert list(_load(work, "2Dto3D_test_3d.json")) == [str(i) for i in ids_2d]
    assert list(_load(work, "I2Dto3D_test_3d.json")) == [str(i) for i in ids_i2d]
    assert set(_load(work, "2Dto3D_test_2d.json")["0"]) == {"keypoints_2d"}
    assert set(_load(work, "RGBto3D_test_img.json")["0"]) == {"image_path", "bbox"}


def test_i2d_inputs_masked_as_drawn(built):
    work, manifest = built
    masked, truth = _load(work, "I2Dto3D_test_2d.json"), _load(work, "I2Dto3D_test_3d.json")
    strategies = {r[0]: r[6] for r in manifest["splits"]["test"]["provenance"]["rows"]}
    for sample_id, sample in masked.items():
        visible, strategy = draw_i2d_mask(3, int(sample_id))
        assert strategies[sample_id] == strategy
        assert sample["visibility"] == visible.astype(int).tolist()
        for j in range(133):
            p, q = sample["keypoints_2d"][str(j)], truth[sample_id]["keypoints_2d"][str(j)]
            assert (p == q) if visible[j] else (p == {"x": 0.0, "y": 0.0})


def test_videopose3d_npz(built):
    work, manifest = built
    npz = np.load(work / "h3wb" / "videopose3d_train.npz", allow_pickle=True)
    data, meta = npz["train_data"].item(), npz["metadata"].item()
    action = data["S1"]["Walking 1"]
    # every fitted frame within the error threshold (frame 20's 80 mm is out), images or not
    expected_frames = [f for f in FIT_FRAMES if f != 20]
    assert action["global_3d"].shape == (len(expected_frames), 133, 3)
    assert list(action["frame_id"]) == expected_frames
    assert manifest["splits"]["train"]["videopose3d"]["frames"] == 2 * len(FIT_FRAMES) - 1
    train2d = _load(work, "2Dto3D_train.json")
    cam = meta["S1"][CAMERA_IDS[1]]
    uv = action[CAMERA_IDS[1]]["pose_2d"][0]  # frame 0, also the JSON's first Walking_1 sample
    first = next(r[0] for r in manifest["splits"]["train"]["provenance"]["rows"]
                 if r[2] == "Walking_1" and r[3] == CAMERA_IDS[1])
    expect = np.array([[p["x"], p["y"]] for p in train2d[first]["keypoints_2d"].values()])
    assert np.abs(uv - expect).max() < 1e-3
    # the npz's frames carry the same keypoints as the JSON's samples of those frames
    cam3d = action[CAMERA_IDS[1]]["camera_3d"][0]
    assert np.allclose(cam3d, action["global_3d"][0] @ np.array(cam["R"]).T + cam["t"], atol=1e-5)
    assert 9 in meta["left_side"] and 10 in meta["right_side"] and meta["face"] == list(range(23, 91))


def test_build_is_byte_identical(built, tmp_path):
    work, _ = built
    other = make_work(tmp_path / "work")
    build_h3wb(other, H3WBConfig(train="S1", test="S8", max_fit_error_mm=50.0, seed=3),
               joints_fn=stand_in_joints)

    def digests(root):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "h3wb").iterdir())}

    assert digests(work) == digests(other)
    assert not list((other / "h3wb").glob("*.tmp"))


def test_selection_and_errors(tmp_path):
    work = make_work(tmp_path / "work", missing_image=False)
    config = H3WBConfig(train="S1", test="", selection=Selection(actions=("Eating",), stride=2,
                                                                  cameras=CAMERA_IDS[:2]))
    manifest = build_h3wb(work, config, joints_fn=stand_in_joints)
    rows = manifest["splits"]["train"]["provenance"]["rows"]
    assert {r[2] for r in rows} == {"Eating_2"} and {r[3] for r in rows} == set(CAMERA_IDS[:2])
    assert sorted({r[4] for r in rows}) == [0, 20, 40]
    with pytest.raises(DataError, match="both train and test"):
        build_h3wb(work, H3WBConfig(train="S1", test="S1"), joints_fn=stand_in_joints)
    with pytest.raises(DataError, match="no usable pose"):
        build_h3wb(work, H3WBConfig(train="S1", test="", max_fit_error_mm=1.0), joints_fn=stand_in_joints)
    with pytest.raises(DataError, match="S9"):
        build_h3wb(work, H3WBConfig(train="S9", test=""), joints_fn=stand_in_joints)


# --- metrics ---------------------------------------------------------------------------------------


def _write(path: Path, keypoints_3d: np.ndarray) -> Path:
    write_records_atomic(path, ((str(i), sample_record(keypoints_3d=kp)) for i, kp in enumerate(keypoints_3d)))
    return path


def _reference_metrics(pred, gt):
    """The official formulas written out per sample and keypoint (float64 loops)."""
    n = len(pred)
    acc = {"all": [], "body": [], "face": [], "left": [], "right": []}
    for s in range(n):
        d = pred[s] - gt[s]
        pelvis = (d[11] + d[12]) / 2
        for j in range(133):
            e = np.sqrt(np.sum((d[j] - pelvis) ** 2))
            acc["all"].append(e)
            if j < 23:
                acc["body"].append(e)
            if 23 <= j < 91:
                acc["face"].append(np.sqrt(np.sum((d[j] - d[0]) ** 2)))
            if 91 <= j < 112:
                acc["left"].append(np.sqrt(np.sum((d[j] - d[91]) ** 2)))
            if j >= 112:
                acc["right"].append(np.sqrt(np.sum((d[j] - d[112]) ** 2)))
    return {"all": np.mean(acc["all"]), "body": np.mean(acc["body"]), "face": np.mean(acc["face"]),
            "hands": (np.mean(acc["left"]) + np.mean(acc["right"])) / 2}


def test_metrics_zero_on_itself_and_analytic_perturbations():
    rng = np.random.default_rng(1)
    gt = rng.normal(0, 300, (6, 133, 3))
    assert all(v == 0 for v in h3wb_metrics(gt, gt).values())
    assert max(h3wb_metrics(gt + [10.0, -4.0, 2.0], gt).values()) < 1e-9  # translation
    pred = gt.copy()
    pred[:, 11] += [6.0, 8.0, 0.0]  # left hip by 10 mm: the pelvis moves 5 mm
    m = h3wb_metrics(pred, gt)
    assert m["all"] == pytest.approx(5.0) and m["body"] == pytest.approx(5.0)
    assert m["face"] == pytest.approx(0.0, abs=1e-9) and m["hands"] == pytest.approx(0.0, abs=1e-9)
    pred = gt.copy()
    pred[:, 100] += [0.0, 3.0, 4.0]  # one left-hand keypoint by 5 mm
    m = h3wb_metrics(pred, gt)
    assert m["all"] == pytest.approx(5 / 133) and m["hands"] == pytest.approx(5 / 21 / 2)
    assert m["body"] == 0 and m["face"] == 0


def test_metrics_match_reference_loops():
    rng = np.random.default_rng(2)
    gt = rng.normal(0, 300, (5, 133, 3))
    pred = gt + rng.normal(0, 20, gt.shape)
    m, ref = h3wb_metrics(pred, gt), _reference_metrics(pred, gt)
    for k in ref:
        assert m[k] == pytest.approx(ref[k], rel=1e-12)


def test_evaluate_files_and_errors(tmp_path):
    rng = np.random.default_rng(4)
    gt = rng.normal(0, 300, (8, 133, 3))
    pred = gt + rng.normal(0, 15, gt.shape)
    gt_path, pred_path = _write(tmp_path / "gt.json", gt), _write(tmp_path / "pred.json", pred)
    result = evaluate_files(pred_path, gt_path)
    ref = _reference_metrics(np.round(pred, 4), np.round(gt, 4))
    assert result["samples"] == 8
    for k in ref:
        assert result["mpjpe_mm"][k] == pytest.approx(ref[k], rel=1e-9)
    assert evaluate_files(gt_path, gt_path)["mpjpe_mm"]["all"] == 0
    _write(tmp_path / "short.json", pred[:7])
    with pytest.raises(DataError, match=r"short\.json.*'7'"):
        evaluate_files(tmp_path / "short.json", gt_path)
    bad = json.loads(pred_path.read_text())
    del bad["3"]["keypoints_3d"]["132"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"bad\.json.*132 keypoints_3d, expected 133"):
        evaluate_files(tmp_path / "bad.json", gt_path)
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(DataError, match=r"garbage\.json: not a JSON file"):
        evaluate_files(tmp_path / "garbage.json", gt_path)


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_h3wb_eval(built, tmp_path):
    from cli import main

    work, _ = built
    gt = work / "h3wb" / "2Dto3D_test_3d.json"
    data = json.loads(gt.read_text())
    for sample in data.values():
        sample["keypoints_3d"]["100"]["y"] += 3.0
        sample["keypoints_3d"]["100"]["z"] += 4.0
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(data))
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(main, ["h3wb-eval", "--pred", str(pred), "--gt", str(gt), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "nose-aligned" in result.output
    metrics = json.loads(out.read_text())["mpjpe_mm"]
    assert metrics["all"] == pytest.approx(5 / 133, rel=1e-6) and metrics["body"] == 0
    (tmp_path / "bad.json").write_text("[1, 2]")
    result = CliRunner().invoke(main, ["h3wb-eval", "--pred", str(tmp_path / "bad.json"), "--gt", str(gt)])
    assert result.exit_code == 1 and "bad.json" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_h3wb_stage_with_smplx(tmp_path):
    """``h36m-nvf h3wb`` through the runner with the synthetic SMPL-X model; keypoints checked
    against smplx's own joints picked by name."""
    bodymodel = pytest.importorskip("fitting.bodymodel")
    import torch
    from smplx.joint_names import JOINT_NAMES

    from cli import main

    work = make_work(tmp_path / "work")
    args = ["h3wb", "--out", str(work), "--train", "S1", "--test", "S8", "--seed", "3",
            "--workers", "1", "--no-progress", "--body-model", "synthetic", "--stride", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = _load(work, "manifest.json")
    assert set(manifest["splits"]) == {"train", "test"}
    rows = manifest["splits"]["train"]["provenance"]["rows"]
    assert sorted({r[4] for r in rows if r[2] == "Eating_2"}) == [0, 20, 40]

    data = _load(work, "RGBto3D_train.json")
    cams = _cameras_by_sample(work, manifest, "train")
    model = bodymodel.load_body_model(bodymodel.resolve_body_model("synthetic", work),
                                      dtype=torch.float64, use_face_contour=True)
    for sample_id in ("0", "7"):
        cam, row = cams[sample_id]
        fit = np.load(work / "fit" / row[1] / f"{row[2]}.npz")
        t = int(np.flatnonzero(fit["frame_index"] == row[4])[0])
        kwargs = {k: torch.tensor(fit[k][t : t + 1], dtype=torch.float64)
                  for k in ("global_orient", "body_pose", "transl", "left_hand_pose", "right_hand_pose",
                            "jaw_pose", "leye_pose", "reye_pose", "expression")}
        with torch.no_grad():
            joints = model(betas=torch.tensor(fit["betas"][None], dtype=torch.float64), **kwargs).joints[0].numpy()
        assert joints.shape == (144, 3)
        got = data[sample_id]["keypoints_3d"]
        for coco, smplx_name in ((0, "nose"), (9, "left_wrist"), (91, "left_wrist"),
                                 (112, "right_wrist"), (20, "right_big_toe"), (132, "right_pinky")):
            expect = np.array(cam["R"]) @ joints[JOINT_NAMES.index(smplx_name)] * 1000
            assert np.allclose([got[str(coco)][a] for a in "xyz"], expect, atol=0.05), (coco, smplx_name)


def test_stride_help_and_behaviour_agree():
    """--stride counts frames that have images (help says so); here images every 5th frame,
    --stride 2: every 10th mocap frame."""
    from types import SimpleNamespace

    from cli import main
    from pipeline.stages.h3wb import STAGE, select_frames

    result = CliRunner().invoke(main, ["h3wb", "--help"])
    assert "every N-th of the fitted frames that have an extracted image" in " ".join(result.output.split())
    fit = SimpleNamespace(frame_index=np.arange(40), mpjpe_mm=np.zeros(40))
    cameras = [SimpleNamespace(id="54138969")]
    images = {f"S1_Walking_1.54138969_{f + 1:06d}.jpg" for f in range(0, 40, 5)}
    rows, counts = select_frames(fit, cameras, images, "S1", "Walking_1", Selection(stride=2), 50.0)
    assert fit.frame_index[rows].tolist() == [0, 10, 20, 30]
    assert counts["with_images"] == 8 and counts["strided"] == 4
    assert STAGE.default_stride == 1


def test_videopose3d_test_file_loads_as_h3wb_loader_reads_it(built):
    """H3WB's Human3WBDataset (utils/prepare_data_h3wb.py) reads ``['train_data']`` and
    ``['metadata']`` of any file, then for each subject and action ``global_3d`` and, per
    camera id in the fixed order, ``camera_3d``, ``pose_2d`` and ``metadata[subject][cam]``."""
    work, _ = built
    check_data = np.load(work / "h3wb" / "videopose3d_test.npz", allow_pickle=True)
    assert set(check_data.files) == {"metadata", "train_data"}
    metadata, data = check_data["metadata"].item(), check_data["train_data"].item()
    assert set(data) == {"S8"}  # the test subject only
    for subject, actions in data.items():
        assert [metadata[subject][cam] for cam in CAMERA_IDS]
        for act in actions.values():
            frames = len(act["global_3d"])
            assert act["global_3d"].shape == (frames, 133, 3)
            for cam in CAMERA_IDS:
                assert act[cam]["camera_3d"].shape == (frames, 133, 3)
                assert act[cam]["pose_2d"].shape == (frames, 133, 2)


def test_h3wb_eval_detects_predictions_in_metres(built, tmp_path):
    """The ground truth itself written in metres: refused with the flag to pass; converted with
    --pred-units m (then every error is 0); a unit that is neither is refused too."""
    from cli import main

    work, _ = built
    gt = work / "h3wb" / "2Dto3D_test_3d.json"
    data = json.loads(gt.read_text())

    def scaled(factor, name):
        copy = json.loads(json.dumps(data))
        for sample in copy.values():
            for p in sample["keypoints_3d"].values():
                for axis in ("x", "y", "z"):
                    p[axis] *= factor
        path = tmp_path / name
        path.write_text(json.dumps(copy))
        return str(path)

    metres = scaled(1e-3, "pred_m.json")
    refused = CliRunner().invoke(main, ["h3wb-eval", "--pred", metres, "--gt", str(gt)])
    assert refused.exit_code == 1 and "look like metres" in refused.output and "--pred-units m" in refused.output
    out = tmp_path / "m.json"
    converted = CliRunner().invoke(main, ["h3wb-eval", "--pred", metres, "--gt", str(gt), "--pred-units", "m",
                                          "--json", str(out)])
    assert converted.exit_code == 0, converted.output
    result = json.loads(out.read_text())
    assert result["pred_units"] == "m" and max(result["mpjpe_mm"].values()) < 1e-6
    cm = CliRunner().invoke(main, ["h3wb-eval", "--pred", scaled(0.1, "pred_cm.json"), "--gt", str(gt)])
    assert cm.exit_code == 1 and "neither millimetres nor metres" in cm.output
