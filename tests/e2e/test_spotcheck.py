"""spot-check: the whole pipeline on a subset, a verdict and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from click.testing import CliRunner

from cli import main
from pipeline.recipes.spotcheck import Check, format_verdict, junit_xml


def test_spot_check_passes_on_the_synthetic_release(synthetic_release, model_cache, tmp_path):
    junit = tmp_path / "spot.xml"
    result = CliRunner().invoke(main, ["spot-check", "--h36m", str(synthetic_release), "--frames-per-sequence", "4",
                                       "--junit", str(junit), "--workers", "1",
                                       "--body-model", str(model_cache / "bodymodel" / "SMPLX_NEUTRAL.npz")])
    assert result.exit_code == 0, result.output
    assert "spot-check: PASSED" in result.output
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 7
    names = [c.get("name") for c in suite]
    assert {"stage fit", "fit p95 MPJPE", "validate shards", "h3wb files", "silhouette IoU"} <= set(names)
    assert "PASS  silhouette IoU" in result.output and "not checked" not in result.output


def test_verdict_and_junit_report_failures():
    checks = [Check("stage fit", True, "3 units ok", 1.5), Check("fit p95 MPJPE", False, "31.00 mm (limit 20 mm)")]
    text = format_verdict(checks)
    assert "FAIL  fit p95 MPJPE" in text and "spot-check: FAILED (1/2 checks)" in text
    suite = ET.fromstring(junit_xml(checks))
    assert suite.get("failures") == "1"
    assert suite[1].find("failure").get("message") == "31.00 mm (limit 20 mm)"


def test_h3wb_splits_of_the_checked_subjects_never_overlap():
    from pipeline.recipes.spotcheck import h3wb_split_options

    assert h3wb_split_options(("S1", "S8", "S9")) == {"train": "S1,S9", "test": "S8"}
    assert h3wb_split_options(("S9",)) == {"train": "S9", "test": ""}
    assert h3wb_split_options(("S8",)) == {"train": "", "test": "S8"}


def test_shape_frames_below_one_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["fit", "--out", str(tmp_path), "--shape-frames", "0", "--no-progress"])
    assert result.exit_code == 2 and "--shape-frames must be at least 1" in result.output
