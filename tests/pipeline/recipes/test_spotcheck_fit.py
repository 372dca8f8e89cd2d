"""spot-check's fit accuracy thresholds are mismatch-aware: the MPJPE p95 to the mocap is a
threshold only without a detected skeleton mismatch; the residual spread and PVE always are."""

from __future__ import annotations

import math

from pipeline.recipes.demo import DemoConfig
from pipeline.recipes.spotcheck import SpotCheckConfig, fit_accuracy_checks


def summary(p95=5.0, mismatch=False, spreads=(2.0, 4.0), pve=None):
    joints = {"Hips": {"spread_mm": spreads[0]}, "Head": {"spread_mm": spreads[1]}}
    plaus = {"mismatch": {"detected": mismatch, "subjects": {"S1": {"per_joint": joints}}}}
    if pve is not None:
        plaus["pve"] = {"mean_mm": pve, "p95_mm": 2 * pve}
    return {"overall": {"p95_mm": p95, "frames": 10}, "plausibility": plaus}


def by_name(checks):
    return {c.name: c for c in checks}


def test_without_a_mismatch_the_mpjpe_p95_is_a_threshold():
    assert by_name(fit_accuracy_checks(summary(p95=5.0), SpotCheckConfig()))["fit p95 MPJPE"].ok
    c = by_name(fit_accuracy_checks(summary(p95=25.0), SpotCheckConfig()))["fit p95 MPJPE"]
    assert not c.ok and "25.00 mm" in c.detail


def test_a_detected_mismatch_makes_the_mpjpe_a_warning_and_the_spread_decides():
    checks = by_name(fit_accuracy_checks(summary(p95=35.0, mismatch=True), SpotCheckConfig()))
    assert checks["fit p95 MPJPE"].ok and checks["fit p95 MPJPE"].warning
    spread = checks["fit residual spread"]
    assert spread.ok and f"{math.sqrt((2.0 ** 2 + 4.0 ** 2) / 2):.1f} mm" in spread.detail
    bad = by_name(fit_accuracy_checks(summary(p95=35.0, mismatch=True, spreads=(30.0, 25.0)), SpotCheckConfig()))
    assert not bad["fit residual spread"].ok


def test_pve_against_the_truth_is_checked_where_there_is_one():
    assert "fit PVE vs truth" not in by_name(fit_accuracy_checks(summary(), SpotCheckConfig()))
    assert by_name(fit_accuracy_checks(summary(pve=12.0), SpotCheckConfig()))["fit PVE vs truth"].ok
    assert not by_name(fit_accuracy_checks(summary(pve=31.0), SpotCheckConfig()))["fit PVE vs truth"].ok


def test_the_demo_fits_a_mismatched_noisy_skeleton_by_default():
    release = DemoConfig().release
    assert release.mocap_skeleton == "mismatched" and release.marker_noise_mm > 0
