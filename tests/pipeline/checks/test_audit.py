"""The fit-quality audit: its numbers against an independent recomputation from the npz files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import true_fit_work

from cli import main
from fitting.joint_sets import H36M17


@pytest.fixture(scope="module")
def audited_work(tmp_path_factory, synthetic_release, model_cache):
    work, path, data = true_fit_work(tmp_path_factory, "audit_work", synthetic_release, model_cache)
    # Known, uneven per-frame errors so that every statistic is distinguishable.
    rng = np.random.default_rng(0)
    data["joint_err_mm"] = rng.gamma(2.0, 3.0, size=data["joint_err_mm"].shape)
    data["mpjpe_mm"] = data["joint_err_mm"].mean(axis=1)
    data["converged"] = data["mpjpe_mm"] < 7
    np.savez(path, **data)
    result = CliRunner().invoke(main, ["audit", "--out", str(work), "--worst", "3"])
    assert result.exit_code == 0, result.output
    return work, data


def test_summary_equals_independent_recomputation(audited_work):
    work, data = audited_work
    summary = json.loads((work / "audit" / "summary.json").read_text())
    e = data["mpjpe_mm"]
    o = summary["overall"]
    assert o["frames"] == len(e)
    assert o["mean_mm"] == pytest.approx(e.sum() / len(e))
    s, n = np.sort(e), len(e)
    assert n % 2 == 0 and o["median_mm"] == pytest.approx((s[n // 2 - 1] + s[n // 2]) / 2)
    # p95 by linear interpolation between order statistics (numpy's default definition).
    pos = 0.95 * (n - 1)
    assert o["p95_mm"] == pytest.approx(s[int(pos)] + (pos - int(pos)) * (s[int(pos) + 1] - s[int(pos)]))
    assert o["max_mm"] == pytest.approx(max(e))
    assert o["converged_share"] == pytest.approx(np.count_nonzero(data["converged"]) / len(e))
    per_joint = data["joint_err_mm"].sum(axis=0) / len(e)
    by_name = summary["per_joint_mm"]
    assert [by_name[n] for n in H36M17.names] == pytest.approx(per_joint.tolist())
    worst = [w["frame"] for w in summary["worst"]]
    assert worst == [int(i) for i in np.argsort(-e)[:3]]


def test_page_links_existing_plots_and_overlays(audited_work):
    work, data = audited_work
    page = (work / "audit" / "index.html").read_text()
    links = re.findall(r"src='([^']+)'", page)
    assert any(x.startswith("worst_") for x in links)
    for link in links:
        assert (work / "audit" / link).is_file(), link
    # Overlays are drawn only on frames that have an extracted image (stride 2: even frames).
    for link in (x for x in links if x.startswith("worst_")):
        assert int(link.rsplit("_", 1)[1].split(".")[0]) % 2 == 0


def test_show_fit_draws_one_overlay(audited_work, tmp_path):
    import cv2

    work, _ = audited_work
    out = tmp_path / "fit.png"
    result = CliRunner().invoke(main, ["show-fit", "S9", "Walking_1", "--frame", "4", "--camera", "54138969",
                                       "--out", str(work), "-o", str(out)])
    assert result.exit_code == 0, result.output
    overlay = cv2.imread(str(out))
    source = cv2.imread(str(work / "images" / "S9" / "S9_Walking_1.54138969_000005.jpg"))
    assert overlay.shape == source.shape
    assert (np.abs(overlay.astype(int) - source.astype(int)).sum(axis=-1) > 30).mean() > 0.005


def test_show_fit_without_image_is_a_clear_error(audited_work, tmp_path):
    work, _ = audited_work
    result = CliRunner().invoke(main, ["show-fit", "S9", "Walking_1", "--frame", "3", "--camera", "54138969",
                                       "--out", str(work), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert "no extracted image" in result.output and "Traceback" not in result.output


def show_fit(work, *args, output=None):
    return CliRunner().invoke(main, ["show-fit", *[str(a) for a in args], "--out", str(work),
                                     "-o", str(output or work / "unused.png")])


@pytest.mark.parametrize("args,needle", [
    (("S9", "Walking", "--frame", "4", "--camera", "54138969"), "sequence Walking: not fitted for S9; give the subaction: Walking_1"),
    (("S9", "Walking_1", "--frame", "4", "--camera", "123"), "--camera 123: not a camera of S9 Walking_1 (cameras: 54138969"),
    (("S19", "Walking_1", "--frame", "4", "--camera", "54138969"), "subject S19: not fitted"),
    (("S9", "Walking_1", "--frame", "100000", "--camera", "54138969"), "--frame 100000: past the end of S9 Walking_1 (frames 0 to"),
], ids=["missing subaction", "bad camera", "unknown subject", "frame past the end"])
def test_show_fit_mistakes_each_get_their_own_message(audited_work, args, needle):
    work, _ = audited_work
    result = show_fit(work, *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "stride that keeps it" not in result.output and "WARN" not in result.output
    assert "Traceback" not in result.output


def test_show_fit_writes_the_format_of_the_suffix(audited_work, tmp_path):
    work, _ = audited_work
    args = ("S9", "Walking_1", "--frame", "4", "--camera", "54138969")
    for name, magic in (("fit.jpg", b"\xff\xd8\xff"), ("fit.JPEG", b"\xff\xd8\xff"), ("fit.png", b"\x89PNG")):
        assert show_fit(work, *args, output=tmp_path / name).exit_code == 0
        assert (tmp_path / name).read_bytes()[:len(magic)] == magic, name
    bad = show_fit(work, *args, output=tmp_path / "fit.bmp")
    assert bad.exit_code == 2 and "unknown image format .bmp" in bad.output
    assert not (tmp_path / "fit.bmp").exists()


def test_mocap_joints_stay_visible_over_the_fitted_ones(audited_work, tmp_path):
    """The fit is the truth (fitted ≈ mocap joints): at each mocap joint the pixel is red,
    3 px beside it the fitted joint's green ring shows."""
    import cv2

    from fitting.joint_sets import H36M17_FROM_H36M32
    from pipeline.artifacts import read_joints_world
    from pipeline.checks.overlays import load_cameras
    from pipeline.store import WorkDir

    work, _ = audited_work
    out = tmp_path / "fit.png"
    assert show_fit(work, "S9", "Walking_1", "--frame", "4", "--camera", "54138969", output=out).exit_code == 0
    image = cv2.imread(str(out)).astype(int)
    camera = next(c for c in load_cameras(WorkDir(work), "S9", "Walking_1") if c.id == "54138969")
    mocap = read_joints_world(work / "extract" / "S9" / "Walking_1" / "joints_world.npy")[4][H36M17_FROM_H36M32]
    uv = np.rint(np.asarray(camera.project(mocap))).astype(int)
    red = [image[v, u, 2] > 150 and image[v, u, 1] < 120 for u, v in uv]
    green = [any(image[v + dv, u + du, 1] > 150 and image[v + dv, u + du, 2] < 120
                 for du, dv in ((3, 0), (-3, 0), (0, 3), (0, -3))) for u, v in uv]
    assert np.mean(red) > 0.8 and np.mean(green) > 0.8, (red, green)


def test_audit_rejects_an_unknown_camera(audited_work):
    work, _ = audited_work
    result = CliRunner().invoke(main, ["audit", "--out", str(work), "--camera", "123", "--worst", "0"])
    assert result.exit_code == 2, result.output
    assert "--camera 123: not a camera of the fitted sequences; known: 54138969" in result.output


def test_audit_takes_the_read_side_of_the_lock(audited_work):
    from pipeline.store import WorkDir

    work, _ = audited_work
    with WorkDir(work).lock():  # a run holds WORK
        busy = CliRunner().invoke(main, ["audit", "--out", str(work), "--worst", "0"])
    assert busy.exit_code == 1 and "another run holds this work dir" in busy.output, busy.output
    with WorkDir(work).lock(shared=True):  # another reader does not block it
        assert CliRunner().invoke(main, ["audit", "--out", str(work), "--worst", "0"]).exit_code == 0
