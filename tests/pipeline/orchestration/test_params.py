"""WORK/params.yaml (issue 17, item 4): every stage option of the last run, read back by each
stage command so that a plain rerun reproduces it; a flag overrides one value and the file
says so."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from cli import main
from pipeline.errors import DataError
from pipeline.store import Params, WorkDir, format_params, read_params, write_params


def test_params_file_round_trips_and_is_plain_yaml(tmp_path):
    work = WorkDir(tmp_path)
    params = Params(h36m="/data/h36m 'x'", stages={
        "sample": {"crop": 128, "radius": 0.3, "train_stride": None, "split": "protocol1", "flag": True},
        "extract": {"stride": 5}},
        set_by={"sample": {"crop": "--crop on `h36m-nvf sample`, 2026-12-01 23:50"}})
    write_params(work, params)
    assert read_params(work) == params
    text = work.params_file.read_text()
    assert "    crop: 128  # --crop on `h36m-nvf sample`, 2026-12-01 23:50\n" in text
    assert yaml.safe_load(text)["stages"]["sample"]["radius"] == 0.3  # any YAML reader agrees
    assert format_params(read_params(work)) == text  # deterministic
    assert read_params(WorkDir(tmp_path / "none")) == Params()


@pytest.mark.parametrize("text", ["stages: [1, 2]\n", "stages: {sample: 3}\n", "bogus: 1\n", "a: [\n"])
def test_a_malformed_params_file_is_one_line_naming_it(tmp_path, text):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(DataError, match=r"params\.yaml: "):
        read_params(WorkDir(tmp_path))


def extract(*args):
    return CliRunner().invoke(main, ["extract", *map(str, args), "--workers", "1", "--no-progress"])


def test_a_plain_rerun_reproduces_the_last_run_and_a_flag_overrides_one_value(tiny_release, tmp_path):
    work = tmp_path / "work"
    result = extract("--h36m", tiny_release, "--out", work, "--stride", "6", "--jpeg-quality", "80")
    assert result.exit_code == 0, result.output
    saved = read_params(WorkDir(work))
    assert saved.h36m == str(tiny_release)
    assert saved.stages["extract"] == {"stride": 6, "jpeg_quality": 80, "also_every": 64}
    assert saved.set_by["extract"]["stride"].startswith("--stride on `h36m-nvf extract`")

    # no --h36m, no options: the last run's, and nothing to do
    result = extract("--out", work)
    assert result.exit_code == 0, result.output
    assert "extract: as last time" in result.output and "jpeg_quality 80, stride 6" in result.output
    assert " 0 done, " in result.output

    result = extract("--out", work, "--jpeg-quality", "70", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "stale (options changed: jpeg_quality 80→70)" in result.output
    assert read_params(WorkDir(work)) == saved  # a dry run writes nothing

    result = extract("--out", work, "--jpeg-quality", "70")
    assert result.exit_code == 0, result.output
    after = read_params(WorkDir(work))
    assert after.stages["extract"] == {"stride": 6, "jpeg_quality": 70, "also_every": 64}
    assert after.set_by["extract"]["stride"] == saved.set_by["extract"]["stride"]  # kept from the first run
    assert after.set_by["extract"]["jpeg_quality"].startswith("--jpeg-quality on `h36m-nvf extract`")


def test_stage_sections_are_kept_and_a_bad_edited_value_names_the_file(tiny_release, tmp_path):
    work = tmp_path / "work"
    assert extract("--h36m", tiny_release, "--out", work, "--stride", "6", "--dry-run").exit_code == 0
    assert not (work / "params.yaml").exists()
    write_params(WorkDir(work), Params(h36m=str(tiny_release), stages={
        "extract": {"stride": "six"}, "sample": {"crop": 64}}))
    result = extract("--out", work, "--dry-run")
    assert result.exit_code == 2
    assert f"{work / 'params.yaml'}: extract.stride: 'six' is not a valid value" in result.output
    write_params(WorkDir(work), Params(h36m=str(tiny_release), stages={"extract": {"stride": 12},
                                                                       "sample": {"crop": 64}}))
    result = extract("--out", work)
    assert result.exit_code == 0, result.output
    assert read_params(WorkDir(work)).stages == {"extract": {"stride": 12, "jpeg_quality": 95, "also_every": 64},
                                                 "sample": {"crop": 64}}


def test_stride_on_the_command_line_replaces_saved_part_strides():
    from pipeline.orchestration.api import stage_values
    from pipeline.stages import get_stage

    sample = get_stage("sample")
    saved = Params(stages={"sample": {"train_stride": 10, "test_stride": 20, "crop": 128, "stride": None}},
                   set_by={"sample": {"crop": "`h36m-nvf demo`"}})
    values, set_by, reused = stage_values(sample, {}, saved, "{flag} here", "P")
    assert (values["train_stride"], values["test_stride"], values["crop"], values["points"]) == (10, 20, 128, 4096)
    assert set_by == {"crop": "`h36m-nvf demo`"} and reused == {"train_stride": 10, "test_stride": 20, "crop": 128}
    values, set_by, _ = stage_values(sample, {"stride": 2}, saved, "{flag} here", "P")
    assert (values["stride"], values["train_stride"], values["test_stride"]) == (2, None, None)
    assert set_by["stride"] == "--stride here"
