"""Registry text written in more than one way (issue 9, normalisation): HTML entities, unicode comparators,
full-width punctuation, "--" bullets, exclusion lead-ins without the word. The rules read one spelling;
evidence stays exact in the registry's own text."""

from __future__ import annotations

import asyncio

import pytest

from extract.backend import assemble
from extract.rules import RulesBackend
from extract.text import reading, segment
from schemas import Source, Trial, TrialFacts, iter_evidence


def trial(text: str) -> Trial:
    source = Source(registry="test", retrieved_at="2026-01-01T00:00:00Z", content_sha256="0" * 64)
    return Trial(nct_id="NCT00000001", source=source, trial=TrialFacts(), eligibility_text=text)


def record(text: str):
    backend, criteria = RulesBackend(), segment(text)
    return assemble(trial(text), criteria, asyncio.run(backend.extract(trial(text), criteria)), backend)


@pytest.mark.parametrize(
    "written, read",
    [
        ("ANC &gt;= 1.5", "ANC >= 1.5"),
        ("ANC &amp;gt;= 1.5 &amp;amp; Hb", "ANC >= 1.5 & Hb"),  # decoded until nothing changes
        ("age &#8805; 18, &#39;adult&#39;", "age >= 18, 'adult'"),
        ("Hb ≥ 9, PLT ≧ 100, ALT ≤ 2.5, AST ⩽ 3", "Hb >= 9, PLT >= 100, ALT <= 2.5, AST <= 3"),
        ("ECOG＜2，KPS＞70；（ULN）、1。", "ECOG<2,KPS>70;(ULN),1."),
        ("AT&T &bogus; plain", "AT&T &bogus; plain"),
    ],
)
def test_the_rules_read_one_spelling(written, read):
    assert reading(written).text == read


def test_every_span_read_maps_back_to_the_words_written():
    written = "x &amp;lt; 3 and y ≥ 2，z"
    read = reading(written)
    assert read.text == "x < 3 and y >= 2,z"
    assert read.quote_in_original("< 3") == "&amp;lt; 3"
    assert read.quote_in_original("y >= 2,z") == "y ≥ 2，z"
    assert read.quote_in_original("and") == "and"
    plain = reading("nothing to change")
    assert plain.text is plain.original and plain.quote_in_original("to") == "to"


ESCAPED = """Inclusion Criteria:
* Absolute neutrophil count &gt;= 1.5 x 10^9/L
* Hemoglobin ≥ 9 g/dL
* ECOG performance status ＜ 2

Exclusion Criteria:
* Prior pembrolizumab &amp;amp; nivolumab"""

PLAIN = """Inclusion Criteria:
* Absolute neutrophil count >= 1.5 x 10^9/L
* Hemoglobin >= 9 g/dL
* ECOG performance status < 2

Exclusion Criteria:
* Prior pembrolizumab & nivolumab"""


def without_evidence(value):
    if isinstance(value, dict):
        return {k: without_evidence(v) for k, v in value.items() if k not in ("evidence", "origins")}
    if isinstance(value, list):
        return [without_evidence(v) for v in value]
    return value


def test_escaped_text_gives_the_items_of_plain_text_with_exact_evidence_in_the_escaped_text():
    escaped, plain = record(ESCAPED), record(PLAIN)
    found = without_evidence(escaped.model_dump(mode="json")["eligibility"])
    found.pop("other"), without_evidence(plain.model_dump(mode="json")["eligibility"]).pop("other")
    expected = without_evidence(plain.model_dump(mode="json")["eligibility"])
    expected.pop("other")
    assert found == expected
    assert {lab["analyte"] for lab in found["labs"]} == {"anc", "hemoglobin"}
    assert found["performance_status"] and len(found["prior_therapies"]) == 2
    quotes = list(iter_evidence(escaped.eligibility))
    assert quotes and escaped.extraction.ungrounded_items == 0
    for evidence in quotes:
        assert ESCAPED[evidence.start : evidence.end] == evidence.quote
    assert any("&gt;=" in e.quote for e in quotes) and any("≥" in e.quote for e in quotes)


def test_double_dash_bullets_are_criteria_of_their_own():
    criteria = segment("Exclusion Criteria:\n--No prior chemotherapy\n--Organ function:\n  --ANC < 1.5\n--Not pregnant")
    assert [(c.kind, c.text) for c in criteria] == [
        ("exclusion", "No prior chemotherapy"), ("exclusion", "Organ function:\n  --ANC < 1.5"), ("exclusion", "Not pregnant"),
    ]  # fmt: skip (a nested one stays with its criterion, as with any bullet)


@pytest.mark.parametrize(
    "lead_in",
    [
        "Participants who meet any of the following will be disqualified:",
        "Patients are not eligible if any of the following apply:",
        "Participants will be excluded from the study if any of the following criteria apply:",
        "An individual who meets any of the following criteria will be excluded from participation in this study:",
    ],
)
def test_a_lead_in_that_excludes_opens_the_exclusions(lead_in):
    criteria = segment(f"Inclusion Criteria:\n* Age >= 18\n\n{lead_in}\n* Prior pembrolizumab\n* Active hepatitis B")
    assert [(c.id, c.text) for c in criteria] == [
        ("inc-1", "Age >= 18"), ("exc-1", "Prior pembrolizumab"), ("exc-2", "Active hepatitis B"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        "Patients will be eligible for part 1, but will not be eligible for part 2 if any of the following apply:",
        "* Patients are not eligible if there is a serious illness including, but not limited to, the following:",
        "Patients must meet all of the following:",
    ],
)
def test_other_lead_ins_stay_criteria(line):
    criteria = segment(f"Inclusion Criteria:\n* Age >= 18\n\n{line}\n  * heart failure")
    assert all(c.kind == "inclusion" for c in criteria)
