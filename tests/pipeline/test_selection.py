"""Selections checked against what a release or a work dir holds (issue 17, item 3): an unknown
subject, action, sequence, camera or frame range is a usage error with "did you mean" and the
list of what exists, for every command that takes a selection."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from cli import main
from pipeline.errors import SelectionError
from pipeline.selection import Held, build_selection, check_selection

HELD = [Held("S1", "Walking_1", "Walking", ("54138969", "55011271"), 100),
        Held("S1", "Eating_2", "Eating", ("54138969", "55011271"), 80),
        Held("S8", "Walking_1", "Walking", ("54138969",), 100),
        Held("S11", "Walking_1", "Walking", ("54138969",), 100)]


def check(**kw):
    return check_selection(build_selection(**kw), HELD, "WORK/fit")


def error(**kw) -> str:
    with pytest.raises(SelectionError) as e:
        check(**kw)
    return str(e.value)


def test_subject_ids_are_case_insensitive_and_names_take_the_held_spelling():
    sel = check(subjects="s1,S8", actions="walking,eating 2")
    assert sel.subjects == ("S1", "S8") and sel.actions == ("Walking", "Eating_2")
    assert check().subjects is None  # no selection: nothing to check


def test_suggested_subjects_are_the_releases():
    from pipeline.release.h36m import SUBJECTS_WITH_DATA
    from pipeline.selection import H36M_SUBJECTS

    assert H36M_SUBJECTS == SUBJECTS_WITH_DATA


def test_unknown_subject_suggests_and_lists():
    assert error(subjects="S1,S88") == ("--subjects: unknown subject 'S88' in WORK/fit; did you mean S8? "
                                        "it holds S1, S8, S11")
    assert "did you mean S1 or S11?" in error(subjects="S1l")
    assert "unknown subject 'S19'" in error(subjects="S19")


def test_unknown_action_is_checked_among_the_selected_subjects():
    message = error(actions="Walkng")
    assert "--actions: unknown action or sequence 'Walkng' in WORK/fit; did you mean Walking" in message
    assert "it holds Eating, Walking, Eating_2, Walking_1" in message
    assert "unknown action or sequence 'Eating' in WORK/fit (S8)" in error(subjects="S8", actions="Eating")


def test_unknown_camera_and_a_frame_range_past_every_end():
    assert error(subjects="S8", cameras="55011271") == (
        "--cameras: unknown camera '55011271' in WORK/fit (S8); it holds 54138969")
    assert error(cameras="123") == "--cameras: unknown camera '123' in WORK/fit; it holds 54138969, 55011271"
    assert error(subjects="S1", frames="100:200") == (
        "--frames 100:200: every selected sequence ends before frame 100 (the longest, S1/Walking_1, has "
        "100 frames)")
    assert check(subjects="S1", frames="99:").frames == (99, None)


# --------------------------------------------------------------------------- through the commands


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, tiny_release):
    work = tmp_path_factory.mktemp("extracted")
    result = CliRunner().invoke(main, ["extract", "--h36m", str(tiny_release), "--out", str(work),
                                       "--stride", "6", "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    return work


def usage_error(args) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_extract_and_inspect_check_against_the_release(tiny_release):
    out = usage_error(["extract", "--h36m", str(tiny_release), "--out", "unused", "--subjects", "S1,S88",
                       "--dry-run"])
    assert f"--subjects: unknown subject 'S88' in the release {tiny_release}; it holds S1" in out
    out = usage_error(["inspect", str(tiny_release), "--actions", "Walkng"])
    assert "did you mean Walking" in out and "it holds Eating, Walking, Eating_2, Walking_1" in out
    out = usage_error(["inspect", str(tiny_release), "--frames", "50:60"])
    assert "every selected sequence ends before frame 50 (the longest, S1/Walking_1, has 12 frames)" in out
    result = CliRunner().invoke(main, ["inspect", str(tiny_release), "--subjects", "s1", "--no-count"])
    assert result.exit_code == 0 and "Walking" in result.output, result.output


def test_work_dir_stages_check_against_what_it_holds(extracted, tmp_path):
    out = usage_error(["fit", "--out", str(extracted), "--subjects", "S19", "--dry-run"])
    assert f"--subjects: unknown subject 'S19' in {extracted / 'extract'}; did you mean S1? it holds S1" in out
    out = usage_error(["fit", "--out", str(extracted), "--cameras", "5413896", "--dry-run"])
    assert "did you mean 54138969?" in out
    # sample and h3wb select among the fitted sequences: fit files of S1 Walking_1 only
    work = tmp_path / "work"
    shutil.copytree(extracted, work)
    (work / "fit" / "S1").mkdir(parents=True)
    (work / "fit" / "S1" / "Walking_1.npz").write_bytes(b"")
    for stage in ("sample", "h3wb"):
        out = usage_error([stage, "--out", str(work), "--actions", "Eating", "--dry-run"])
        assert f"unknown action or sequence 'Eating' in {work / 'fit'}; it holds Walking, Walking_1" in out


def test_documented_environment_variable_selects_for_every_command(tiny_release, monkeypatch):
    monkeypatch.setenv("H36M_NVF_SUBJECTS", "S88")
    out = usage_error(["extract", "--h36m", str(tiny_release), "--out", "unused", "--dry-run"])
    assert "unknown subject 'S88'" in out
    monkeypatch.setenv("H36M_NVF_EXTRACT_SUBJECTS", "s1")  # the command's own variable wins
    result = CliRunner().invoke(main, ["extract", "--h36m", str(tiny_release), "--out", "unused", "--dry-run"])
    assert result.exit_code == 0, result.output


def test_a_chain_whose_extract_stride_cannot_serve_sample_fails_before_anything_runs(tiny_release, tmp_path):
    # by default extract also keeps every 64th frame: protocol 1's test stride is served
    result = CliRunner().invoke(main, ["run", "--h36m", str(tiny_release), "--out", str(tmp_path / "w"), "--dry-run"])
    assert "extract: 10 units, 10 would run" in result.output and "multiples of" not in result.output
    out = usage_error(["run", "--h36m", str(tiny_release), "--out", str(tmp_path / "w"), "--dry-run",
                       "--also-every", "0"])
    assert ("sample: the test part takes every 64th frame (protocol1's test stride 64), but extract keeps "
            "every 5th frame (--stride 5): only multiples of 320 could be sampled") in out
    result = CliRunner().invoke(main, ["run", "--h36m", str(tiny_release), "--out", str(tmp_path / "w"),
                                       "--dry-run", "--test-stride", "10", "--also-every", "0"])
    assert "extract: 10 units, 10 would run" in result.output and "multiples of" not in result.output
