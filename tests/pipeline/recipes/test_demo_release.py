"""The demo's view of its own synthetic release: no "release problems" for the metadata rows of
sequences it chose not to write."""

from __future__ import annotations

from pipeline.recipes.demo import written_selection
from pipeline.release.h36m import format_release_table, read_release
from pipeline.synthetic.release import SyntheticReleaseConfig


def test_demo_reads_only_the_sequences_it_wrote(synthetic_release):
    config = SyntheticReleaseConfig(subjects=("S9",), sequences=((14, 1),))
    everything = read_release(synthetic_release, count_frames=False)
    assert everything.problems  # metadata.xml lists S9's other 29 sequences: absent here
    mine = read_release(synthetic_release, written_selection(config), count_frames=False)
    assert mine.problems == () and [s.name for s in mine.sequences] == ["Walking_1"]
    assert "problem" not in format_release_table(mine)


def test_written_selection_covers_irregular_basenames():
    """S1's (Eating, 1) is "Eating 2" in metadata.xml; S9's is "Eating 1": both selected."""
    selection = written_selection(SyntheticReleaseConfig(subjects=("S1", "S9"), sequences=((4, 1),)))
    assert selection.wants_sequence("Eating", "Eating_2") and selection.wants_sequence("Eating", "Eating_1")
    assert not selection.wants_sequence("Eating", "Eating")
