"""The demo's surface line: what the audit measured of the body, and what it could not."""

from pipeline.recipes.demo import surface_figures, surface_line


def test_surface_line_reports_pve_silhouette_and_mismatch():
    summary = {"plausibility": {"pve": {"mean_mm": 23.44, "p95_mm": 45.9}, "mismatch": {"detected": True}},
               "silhouette": {"checked": True, "mean": 0.9512, "frames": 480}}
    line = surface_line(surface_figures(summary))
    assert "PVE vs the true mesh mean 23.4 mm, p95 45.9 mm" in line
    assert "silhouette IoU mean 0.951 over 480 (frame, camera) pairs" in line
    assert "skeleton mismatch detected" in line


def test_surface_line_says_what_was_not_checked():
    line = surface_line(surface_figures({"plausibility": {}, "silhouette": {"checked": False, "reason": "no masks"}}))
    assert "not measured (no groundtruth/)" in line and "silhouette not checked" in line
    assert "mismatch not checked" in line
