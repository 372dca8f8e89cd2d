"""spot-check on a release whose mocap skeleton is defined differently from the fitter's
correspondence (as real mocap is): the mismatch is reported, and the fit is judged by its
residual spread and PVE against the true mesh, not by its MPJPE to the offset mocap."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import main


@pytest.mark.slow
def test_spot_check_on_a_mismatched_skeleton_warns_and_passes(model_cache, tmp_path):
    release = tmp_path / "release"
    made = CliRunner().invoke(main, [
        "demo-data", str(release), "--subjects", "S9", "--sequences", "14-1", "--frames", "12",
        "--scale", "0.1", "--workers", "1", "--model-cache", str(model_cache), "--mocap-skeleton", "mismatched"])
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(main, ["spot-check", "--h36m", str(release), "--frames-per-sequence", "8",
                                       "--workers", "1",
                                       "--body-model", str(model_cache / "bodymodel" / "SMPLX_NEUTRAL.npz")])
    assert result.exit_code == 0, result.output
    lines = {line.split("  ")[1].strip(): line for line in result.output.splitlines()
             if line.startswith(("PASS", "WARN", "FAIL"))}
    assert lines["skeleton mismatch"].startswith("WARN") and "--joint-regressor" in lines["skeleton mismatch"]
    assert lines["fit p95 MPJPE"].startswith("WARN")
    assert lines["fit residual spread"].startswith("PASS")
    assert lines["fit PVE vs truth"].startswith("PASS")
