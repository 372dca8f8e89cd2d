"""Fuzzing the parsers users feed directly: no crash other than the clear one-line error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from pipeline.errors import DataError, SelectionError
from pipeline.release.metadata import read_metadata
from pipeline.selection import build_selection, parse_frames

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.text(max_size=20))
def test_frames_parser_accepts_or_raises_selection_error(text):
    try:
        start, stop = parse_frames(text)
    except SelectionError as e:
        assert "--frames" in str(e) and "\n" not in str(e)
    else:
        assert start >= 0 and (stop is None or stop > start)


@FUZZ
@given(st.text(max_size=30), st.text(max_size=30), st.integers(-3, 10))
def test_selection_builder_accepts_or_raises_selection_error(subjects, cameras, stride):
    try:
        sel = build_selection(subjects=subjects, cameras=cameras, stride=stride)
    except SelectionError as e:
        assert str(e).startswith("--") and "\n" not in str(e)
    else:
        assert sel.stride >= 1
        assert sel.subjects is None or all(s.startswith("S") for s in sel.subjects)


def test_bad_selection_is_a_usage_error_without_traceback(tmp_path):
    result = CliRunner().invoke(main, ["extract", "--h36m", str(tmp_path), "--out", str(tmp_path / "w"),
                                       "--frames", "9:3"])
    assert result.exit_code == 2
    assert "--frames" in result.output and "Traceback" not in result.output


@FUZZ
@given(st.one_of(
    st.text(max_size=200),
    st.builds(lambda w0: f"<a><w0>[{w0}]</w0></a>", st.text(alphabet="0123456789.,- e", max_size=80)),
    st.builds(lambda body: f"<a>{body}</a>", st.text(max_size=80)),
))
def test_metadata_parser_raises_only_data_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("meta") / "metadata.xml"
    path.write_text(text)
    try:
        read_metadata(path)
    except DataError as e:
        assert str(path) in str(e) and "\n" not in str(e)


keypoint = st.fixed_dictionaries({"x": st.floats(-1e4, 1e4), "y": st.floats(-1e4, 1e4), "z": st.floats(-1e4, 1e4)})


def h3wb_file(n_ids: int, n_kp: int) -> dict:
    return {str(i): {"keypoints_3d": {str(k): {"x": float(k), "y": 2.0 * k, "z": 1000.0 + i} for k in range(n_kp)}}
            for i in range(n_ids)}


@FUZZ
@given(st.one_of(
    st.text(max_size=100),
    st.builds(json.dumps, st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)),
    st.builds(lambda n: json.dumps(h3wb_file(2, n)), st.integers(0, 140)),
    st.builds(lambda d: json.dumps({"0": {"keypoints_3d": d}}),
              st.dictionaries(st.sampled_from([str(i) for i in range(133)]), keypoint, max_size=5)),
))
def test_h3wb_eval_rejects_bad_predictions_with_one_line(tmp_path_factory, pred_text):
    d = tmp_path_factory.mktemp("h3wb")
    (d / "gt.json").write_text(json.dumps(h3wb_file(2, 133)))
    (d / "pred.json").write_text(pred_text)
    result = CliRunner().invoke(main, ["h3wb-eval", "--pred", str(d / "pred.json"), "--gt", str(d / "gt.json")])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 1:
        assert "pred.json" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip", b"\x00" * 100])
def test_bad_body_model_file_is_one_line(tmp_path, content):
    model = tmp_path / "SMPLX_NEUTRAL.npz"
    model.write_bytes(content)
    result = CliRunner().invoke(main, ["body-model", "check", str(model)])
    assert result.exit_code == 1
    assert str(model) in result.output and "Traceback" not in result.output
