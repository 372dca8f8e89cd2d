"""pipeline.release.metadata: read/write metadata.xml, the embedded facts, one-line errors."""

from __future__ import annotations

import json
import pickle
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import REFERENCE

from fitting.joint_sets import H36M32
from pipeline.errors import DataError
from pipeline.release.metadata import Metadata, default_metadata, read_metadata, write_metadata
from pipeline.release.quirks import CANONICAL_ACTIONS, canonical_action

REFERENCE_XML = REFERENCE / "h36m_metadata.xml"
REFERENCE_TABLES = REFERENCE / "h36m_metadata_tables.json"


def _small_metadata() -> Metadata:
    w0 = np.random.default_rng(0).normal(size=300) * 1000
    return Metadata(
        subjects=("S1", "S2"),
        mapping={(1, 1): {"S1": "_ALL 1", "S2": "_ALL"},
                 (2, 1): {"S1": "Directions 1", "S2": "Directions"},
                 (2, 2): {"S1": "Directions", "S2": "Directions 2"}},
        action_names={1: "Miscellaneous", 2: "Directions"},
        camera_ids=("11111111", "22222222", "33333333", "44444444"),
        w0=w0,
        joint_names=("Hips", "Leg", "Site"),
        joint_parents=(-1, 0, 1),
        train_subjects=("S1",),
        val_subjects=(),
        test_subjects=("S2",),
        resolution_hw={"S1": ((64, 48),) * 4, "S2": ((64, 48), (60, 48), (64, 48), (60, 48))},
        frames={"S1": {(2, 1): (5, 5, 6, 5, 20)}},
    )


def test_write_read_round_trip(tmp_path):
    meta = _small_metadata()
    path = write_metadata(tmp_path / "metadata.xml", meta)
    assert read_metadata(path) == meta
    assert not (tmp_path / "metadata.xml.tmp").exists()
    assert meta.basename("S2", 2, 2) == "Directions 2"
    unpickled = pickle.loads(pickle.dumps(meta))
    assert unpickled == meta and not unpickled.w0.flags.writeable


def test_default_metadata_round_trips_and_is_consistent(tmp_path):
    meta = default_metadata()
    assert read_metadata(write_metadata(tmp_path / "metadata.xml", meta)) == meta
    assert meta.subjects == tuple(f"S{i}" for i in range(1, 12))
    assert meta.camera_ids == ("54138969", "55011271", "58860488", "60457274")
    assert meta.w0.shape == (300,)
    assert meta.joint_parents == H36M32.parents
    assert {k: canonical_action(meta.action_names[k]) for k in CANONICAL_ACTIONS} == CANONICAL_ACTIONS
    assert meta.basename("S1", 4, 1) == "Eating 2"  # irregular: never built from the action name
    assert meta.basename("S5", 12, 2) == "Photo 2"
    cam = meta.camera("S1", 0)
    assert (cam.width, cam.height, cam.id) == (1000, 1002, "54138969")


def test_written_structure_matches_official_layout(tmp_path):
    path = write_metadata(tmp_path / "metadata.xml", default_metadata())
    root = ET.parse(path).getroot()
    assert root.tag == "a"
    header = [td.text for td in root.find("mapping")[0]]
    assert header[:3] == ["Action", "subaction", "S1"]
    assert [i.text for i in root.find("dbcameras/index2id")][0] == "54138969"
    assert root.find("w0").text.startswith("[") and len(root.find("w0").text[1:-1].split()) == 300
    assert len(root.findall("actionnames/item")) == 16
    assert root.find("train_subjects").text == "[1 7 8 9 11]"
    assert len(root.findall("skel_pos/tree/item")) == 32
    assert len(root.findall("frames/tr")) == 11
    assert len(root.find("frames/tr")) == 33  # empty first cell + one per mapping row


@pytest.mark.skipif(not REFERENCE_XML.exists(), reason="shared reference files absent")
def test_reads_the_real_metadata_file():
    meta = read_metadata(REFERENCE_XML)
    # the embedded facts leave out the actors' names, the real skeleton and measurements
    assert len(meta.actor_names) == 11 and len(meta.skel_angles_offsets_mm) == 32
    assert len(meta.subject_measurements["S1"]) == 87
    assert replace(meta, actor_names=(), skel_angles_offsets_mm=(), subject_measurements={}) == default_metadata()
    tables = json.loads(REFERENCE_TABLES.read_text())
    assert meta.to_json()["mapping"] == tables["sequence_basenames"]["data"]
    assert meta.to_json()["frames"] == tables["frames"]["data"]
    assert meta.frames["S5"][(13, 2)][:4] == (4857, 4866, 4866, 4857)
    assert meta.resolution_hw["S1"] == ((1002, 1000), (1000, 1000), (1000, 1000), (1002, 1000))


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "metadata.xml"
    path.write_text(text)
    return path


def _xml_with_w0(tmp_path, w0_text: str | None) -> Path:
    root = ET.parse(write_metadata(tmp_path / "metadata.xml", _small_metadata())).getroot()
    w0 = root.find("w0")
    if w0_text is None:
        root.remove(w0)
    else:
        w0.text = w0_text
    return _write(tmp_path, ET.tostring(root, encoding="unicode"))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope.xml", "metadata file not found"),
        (lambda p: _write(p, "this is not xml <"), "not valid XML"),
        (lambda p: _write(p, "<a><other/></a>"), "no <mapping> element"),
        (lambda p: _xml_with_w0(p, None), "no <w0> element"),
        (lambda p: _xml_with_w0(p, "[1 2 3]"), "holds 3 numbers, expected 300"),
        (lambda p: _xml_with_w0(p, "[" + "1 " * 299 + "x]"), "non-number"),
        (lambda p: _xml_with_w0(p, "[" + "1 " * 299 + "nan]"), "NaN or infinite"),
    ],
)
def test_errors_are_one_line_and_name_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError) as info:
        read_metadata(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def _element_paths(root) -> set[str]:
    paths = set()

    def walk(element, prefix):
        path = f"{prefix}/{element.tag}"
        paths.add(path)
        for child in element:
            walk(child, path)

    walk(root, "")
    return paths


@pytest.mark.skipif(not REFERENCE_XML.exists(), reason="shared reference files absent")
def test_every_element_path_of_the_real_file_is_written(tmp_path):
    """Each element path of the real metadata.xml (skel_angles, toffiles, projectionParams,
    subject_measurements, ...) exists in the file we write; so does the actors' header row."""
    import xml.etree.ElementTree as ET

    real = _element_paths(ET.parse(REFERENCE_XML).getroot())
    ours = _element_paths(ET.parse(write_metadata(tmp_path / "metadata.xml", default_metadata())).getroot())
    assert real - ours == set()
    real_root = ET.parse(REFERENCE_XML).getroot()
    our_root = ET.parse(tmp_path / "metadata.xml").getroot()
    for tag in ("skel_angles/tree/item", "skel_pos/tree/item", "dbcameras/projectionParams/item",
                "toffiles/tr", "mapping/tr"):
        assert len(our_root.findall(tag)) == len(real_root.findall(tag)), tag
    # the D3_Angles channel layout is the real one, item by item
    for real_item, our_item in zip(real_root.findall("skel_angles/tree/item"),
                                   our_root.findall("skel_angles/tree/item"), strict=True):
        for key in ("name", "parent", "rotInd", "posInd", "children", "order"):
            assert (real_item.findtext(key) or "").strip() == (our_item.findtext(key) or "").strip(), key
        assert [c.text for c in real_item.find("channels")] == [c.text for c in our_item.find("channels")]
