"""spot-check: the whole pipeline on a subset, a verdict and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from click.testing import CliRunner

from cli import main
from pipeline.spotcheck import Check, format_verdict, junit_xml


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
    assert {"stage fit", "fit p95 MPJPE", "validate shards", "h3wb files"} <= set(names)


def test_verdict_and_junit_report_failures():
    checks = [Check("stage fit", True, "3 units ok", 1.5), Check("fit p95 MPJPE", False, "31.00 mm (limit 20 mm)")]
    text = format_verdict(checks)
    assert "FAIL  fit p95 MPJPE" in text and "spot-check: FAILED (1/2 checks)" in text
    suite = ET.fromstring(junit_xml(checks))
    assert suite.get("failures") == "1"
    assert suite[1].find("failure").get("message") == "31.00 mm (limit 20 mm)"
