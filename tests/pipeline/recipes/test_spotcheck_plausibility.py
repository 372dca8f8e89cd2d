"""spot-check's plausibility thresholds on the audit's summary: failures, and a mismatch that
warns unless the user asks it to fail."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pipeline.recipes.spotcheck import (
    SpotCheckConfig,
    format_verdict,
    junit_xml,
    plausibility_checks,
)


def summary(over_pi=0, beyond=0, betas=(1.0, 2.0), mismatch=()):
    per_joint = {"left_wrist": {"frames_beyond": beyond, "max_deg": 40.0, "mean_excess_deg": 20.0}} if beyond else {}
    return {
        "frames": 10,
        "rotvec": {"frames_over_pi": over_pi, "max_deg": 200.0 if over_pi else 90.0},
        "joint_limits": {"tolerance_deg": 1.0, "frames_beyond": beyond, "max_deg": 40.0 if beyond else 0.0,
                         "per_joint": per_joint},
        "betas": {f"S{i + 1}": {"norm": b, "max_abs": b} for i, b in enumerate(betas)},
        "self_intersection": {"depth_mm": {"max": 1.0}},
        "mismatch": {"detected": bool(mismatch), "joints": list(mismatch),
                     "hint": f"the mocap joints {', '.join(mismatch)} ... `--joint-regressor FILE`"},
    }


def by_name(checks):
    return {c.name: c for c in checks}


def test_plausible_fit_passes():
    checks = by_name(plausibility_checks(summary(), SpotCheckConfig()))
    assert all(c.ok and not c.warning for c in checks.values())


def test_frames_beyond_limits_or_past_pi_fail():
    for s in (summary(over_pi=1), summary(beyond=2)):
        c = by_name(plausibility_checks(s, SpotCheckConfig()))["fit plausibility"]
        assert not c.ok
    assert by_name(plausibility_checks(summary(beyond=2), SpotCheckConfig(max_implausible_frames=2)))[
        "fit plausibility"].ok
    assert "left_wrist 40°" in by_name(plausibility_checks(summary(beyond=2), SpotCheckConfig()))[
        "fit plausibility"].detail


def test_beta_norm_above_three_fails():
    c = by_name(plausibility_checks(summary(betas=(1.0, 3.2)), SpotCheckConfig()))["fit shape |β|"]
    assert not c.ok and "S2 3.20" in c.detail


def test_mismatch_warns_unless_asked_to_fail():
    checks = plausibility_checks(summary(mismatch=("Head", "RightLeg")), SpotCheckConfig())
    c = by_name(checks)["skeleton mismatch"]
    assert c.ok and c.warning and "--joint-regressor" in c.detail
    text = format_verdict(checks)
    assert "WARN  skeleton mismatch" in text and "PASSED" in text
    suite = ET.fromstring(junit_xml(checks))
    assert suite.get("failures") == "0"
    assert any("WARNING" in (case.findtext("system-out") or "") for case in suite)
    strict = by_name(plausibility_checks(summary(mismatch=("Head",)), SpotCheckConfig(fail_on_mismatch=True)))
    assert not strict["skeleton mismatch"].ok


def test_silhouette_threshold():
    from pipeline.recipes.spotcheck import silhouette_check

    sil = {"checked": True, "mean": 0.74, "min": 0.61, "frames": 40,
           "worst": [{"subject": "S9", "sequence": "Walking_1", "camera": "54138969", "frame": 3, "iou": 0.61}]}
    assert silhouette_check(sil, SpotCheckConfig()).ok
    failed = silhouette_check(sil, SpotCheckConfig(min_silhouette_iou=0.8))
    assert not failed.ok and "mean 0.740" in failed.detail and "limit 0.8" in failed.detail
    missing = silhouette_check({"checked": False, "reason": "no ground_truth_bs masks"}, SpotCheckConfig())
    assert missing.ok and missing.warning and "not checked: no ground_truth_bs masks" in missing.detail
