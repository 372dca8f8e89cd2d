"""``h36m-nvf demo-data`` refuses to overwrite what OUT already holds unless --force."""

from __future__ import annotations

from click.testing import CliRunner

from cli import main


def test_demo_data_refuses_an_existing_release_without_force(tmp_path, model_cache):
    out = tmp_path / "release"
    out.mkdir()
    (out / "metadata.xml").write_text("<mine/>")
    args = ["demo-data", str(out), "--subjects", "S9", "--sequences", "Walking-1", "--frames", "2",
            "--scale", "0.05", "--workers", "1", "--model-cache", str(model_cache)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "already holds a release (metadata.xml)" in refused.output
    assert "--force" in refused.output and (out / "metadata.xml").read_text() == "<mine/>"
    forced = CliRunner().invoke(main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "metadata.xml").read_text() != "<mine/>" and (out / "S9").is_dir()
