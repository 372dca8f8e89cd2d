"""pipeline.checks.silhouette: the fitted mesh's silhouette IoU against ground_truth_bs, checked
against an independent recomputation, the true mesh (IoU 1), a mesh moved by 10 mm (IoU
falls), and the audit's report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import true_fit_work

from fitting.bodymodel import cached_body_model_f64
from pipeline.store import WorkDir


@pytest.fixture(scope="module")
def work(tmp_path_factory, synthetic_release, model_cache):
    return WorkDir(true_fit_work(tmp_path_factory, "silhouette", synthetic_release, model_cache)[0])


@pytest.fixture(scope="module")
def model(work):
    return cached_body_model_f64(str(work.root / "bodymodel" / "SMPLX_NEUTRAL.npz"))


def _independent_silhouette(vertices, faces, camera) -> np.ndarray:
    """Pixel centres inside a projected triangle, by sign tests per triangle (float64, plain
    numpy), projection written out from the Human3.6M ProjectPointRadial formula."""
    Xc = vertices @ camera.R.T + camera.t
    x, y = Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2]
    k1, k2, k3, pA, pB = camera.dist
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tan = pA * y + pB * x
    xd, yd = x * (radial + tan) + pB * r2, y * (radial + tan) + pA * r2
    u = camera.K[0, 0] * xd + camera.K[0, 1] * yd + camera.K[0, 2]
    v = camera.K[1, 1] * yd + camera.K[1, 2]
    mask = np.zeros((camera.height, camera.width), bool)
    for a, b, c in faces:
        us, vs = u[[a, b, c]], v[[a, b, c]]
        x0, x1 = max(int(np.ceil(us.min())), 0), min(int(np.floor(us.max())), camera.width - 1)
        y0, y1 = max(int(np.ceil(vs.min())), 0), min(int(np.floor(vs.max())), camera.height - 1)
        if x1 < x0 or y1 < y0:
            continue
        px, py = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
        edges = [(us[i], vs[i], us[(i + 1) % 3], vs[(i + 1) % 3]) for i in range(3)]
        side = [(bx - ax) * (py - ay) - (by - ay) * (px - ax) for ax, ay, bx, by in edges]
        inside = (np.all([s >= 0 for s in side], 0) | np.all([s <= 0 for s in side], 0))
        mask[py[inside], px[inside]] = True
    return mask


def test_true_mesh_has_iou_one_and_a_10mm_shift_lowers_it(work, model):
    from pipeline.checks.silhouette import sequence_silhouettes

    exact = sequence_silhouettes(work, "S9", "Walking_1", model)
    assert len(exact) == 4 and all(len(r.iou) == 10 for r in exact)
    assert min(r.iou.min() for r in exact) > 0.99
    moved = sequence_silhouettes(work, "S9", "Walking_1", model, vertex_offset_m=(0.01, 0.0, 0.0))
    for a, b in zip(exact, moved, strict=True):
        assert b.iou.mean() < a.iou.mean() - 0.01, (a.camera, a.iou.mean(), b.iou.mean())


def test_iou_equals_an_independent_recomputation(work, model):
    from pipeline.artifacts import read_fit_sequence, read_sequence_info
    from pipeline.checks.plausibility import posed_bodies
    from pipeline.checks.silhouette import sequence_silhouettes

    shift = np.array([0.0, 0.02, 0.01])  # a fit that is off, so the IoU is not trivially 1
    ours = {r.camera: r for r in sequence_silhouettes(work, "S9", "Walking_1", model, stride=4,
                                                      cameras=("55011271",), vertex_offset_m=shift)}
    info = read_sequence_info(work.sequence_json("S9", "Walking_1"))
    fit = read_fit_sequence(work.fit_sequence("S9", "Walking_1"))
    camera = info.camera("55011271")
    mask_file = info.mask("ground_truth_bs", "55011271")
    faces = np.asarray(model.faces, dtype=np.int64)
    r = ours["55011271"]
    assert list(r.frame_index) == [0, 4, 8]
    for frame, value in zip(r.frame_index[:2], r.iou[:2], strict=False):
        params = {k: np.asarray(v, dtype=np.float64) for k, v in fit.smplx_kwargs([fit.row_of(frame)]).items()}
        params["betas"] = np.asarray(fit.betas, dtype=np.float64)
        vertices = posed_bodies(model, params)[0][0] + shift
        import h5py  # the mask as a third-party reader opens it
        with h5py.File(mask_file.path, "r") as f:
            observed = f[f["Masks"][frame, 0]][()].T == 1
        theirs = _independent_silhouette(vertices, faces, camera)
        expected = (theirs & observed).sum() / (theirs | observed).sum()
        assert value == pytest.approx(expected, abs=2e-3)
        assert value < 0.95


def test_audit_reports_silhouette_iou(work):
    from pipeline.checks.audit import AuditConfig, audit_headline, write_audit

    index = write_audit(work, AuditConfig(intersection_stride=5, silhouette_stride=3, worst=3),
                        work.root / "bodymodel" / "SMPLX_NEUTRAL.npz")
    summary = json.loads((index.parent / "summary.json").read_text())
    sil = summary["silhouette"]
    assert sil["checked"] and sil["frames"] == 4 * 4 and sil["min"] > 0.99
    assert sil["sequences"][0]["per_frame"]["54138969"]["frame"] == [0, 3, 6, 9]
    assert len(sil["worst"]) == 3
    text = index.read_text()
    assert "Silhouette against ground_truth_bs" in text and "silhouette.png" in text
    assert (index.parent / "silhouette.png").is_file()
    assert any(p.name.startswith("silhouette_S9_Walking_1_") for p in index.parent.iterdir())
    assert any("silhouette IoU" in line for line in audit_headline(summary))
