"""Bad input, tried on purpose: importers and segmentation never crash and never write outside."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from extract.importer import Summary, store
from extract.sources import RawRecord, RecordError, parse_document
from extract.store import Workspace
from extract.text import normalise, segment
from schemas import normalise_nct_id

FILE_NAMES = st.sampled_from(["a.json", "a.jsonl", "a.xml", "a.csv", "a.txt"])
BULLETS = st.sampled_from(["* ", "- ", "• ", "1. ", "a) ", "(2) ", "  * ", "    1. ", ""])
WORDS = st.text(alphabet=string.ascii_letters + string.digits + " ≥≤<>=.,;:()/%\\-", min_size=0, max_size=60)
HEADINGS = st.sampled_from(["Inclusion Criteria:", "EXCLUSION CRITERIA", "Key Exclusion Criteria:", "DISEASE CHARACTERISTICS:", ""])
LINES = st.one_of(HEADINGS, st.builds(lambda b, w: b + w, BULLETS, WORDS))
CRITERIA_TEXT = st.lists(LINES, max_size=30).map("\n".join)
NASTY_IDS = st.one_of(
    st.sampled_from(["../../etc/passwd", "NCT1", "NCT123456789", "nct01234567", "NCT0123456/", "", "NCT01234567\n"]),
    st.text(max_size=20),
)


@given(data=st.binary(max_size=2000), name=FILE_NAMES)
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_records_or_one_line_errors(data, name):
    for parsed in parse_document(data, name):
        assert isinstance(parsed, (RawRecord, RecordError))
        if isinstance(parsed, RecordError):
            assert parsed.reason and "\n" not in parsed.reason


@given(nct_id=NASTY_IDS, text=st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_hostile_ids_never_reach_the_file_system(nct_id, text):
    document = {"protocolSection": {"identificationModule": {"nctId": nct_id},
                                    "eligibilityModule": {"eligibilityCriteria": text}}}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        workspace = Workspace(root)
        summary = Summary()
        for parsed in parse_document(json.dumps(document).encode(), "x.json"):
            store(workspace, parsed, "x.json", summary)
        workspace.close()
        stored = [p for p in root.rglob("*") if p.is_file() and p.suffix == ".json"]
        assert all(p.resolve().is_relative_to(root.resolve()) for p in root.rglob("*"))
        valid = normalise_nct_id(nct_id)  # white space trimmed and `nct` upper-cased, nothing else forgiven
        assert [p.stem for p in stored] == ([valid] if valid else [])
        assert len(summary.failures) == (0 if valid else 1)


@given(text=CRITERIA_TEXT)
@settings(max_examples=400, deadline=None)
def test_segmentation_spans_are_exact_for_any_list_shaped_text(text):
    normalised = normalise(text)
    criteria = segment(normalised)
    for criterion in criteria:
        assert normalised[criterion.start : criterion.end] == criterion.text != ""
    spans = [(c.start, c.end) for c in criteria]
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


@given(text=st.text(max_size=500))
@settings(max_examples=300, deadline=None)
def test_segmentation_of_arbitrary_unicode_is_exact(text):
    normalised = normalise(text)
    for criterion in segment(normalised):
        assert normalised[criterion.start : criterion.end] == criterion.text


def test_empty_and_one_megabyte_criteria_texts():
    assert segment(normalise("")) == []
    line = "* Absolute neutrophil count ≥ 1.5 x 10^9/L and platelets ≥ 100 x 10^9/L\n"
    huge = normalise("Inclusion Criteria:\n" + line * (1_000_000 // len(line)))
    criteria = segment(huge)
    assert len(criteria) == 1_000_000 // len(line)
    assert huge[criteria[-1].start : criteria[-1].end] == criteria[-1].text
