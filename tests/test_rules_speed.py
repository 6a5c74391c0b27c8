"""The rules backend on hostile sizes: linear in criterion length, and a time budget per trial."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extract.errors import InputError
from extract.pipeline import run_extraction
from extract.rules import RulesBackend, polarity
from extract.store import Workspace
from extract.text import segment
from schemas import Source, Trial, TrialFacts

# A real-looking exclusion, with a therapy, a lab, a marker, a stage and a performance scale in it.
SENTENCE = (
    "No prior treatment with an EGFR inhibitor or pembrolizumab; ANC >= 1.5 x 10^9/L. "
    "Patients with KRAS mutation, stage IV disease and ECOG 0-1 are excluded; "
)
SMALL = "Inclusion Criteria:\n* Age >= 18 years\n* ECOG performance status 0-1\n\nExclusion Criteria:\n* Prior pembrolizumab"


def trial(nct_id: str, text: str) -> Trial:
    source = Source(registry="test", retrieved_at="2026-01-01T00:00:00Z", content_sha256="0" * 64)
    return Trial(nct_id=nct_id, source=source, trial=TrialFacts(), eligibility_text=text)


def hostile(size: int) -> str:
    """One exclusion criterion of about `size` characters (a whole protocol pasted into one bullet)."""
    return "Exclusion Criteria:\n* " + SENTENCE * (size // len(SENTENCE) + 1)


def extract(backend: RulesBackend, record: Trial):
    return asyncio.run(backend.extract(record, segment(record.eligibility_text)))

# Break-heavy text: the characters and words the clause and sentence breaks are made of.
PIECES = st.sampled_from(["a", "b", " ", ".", ";", ":", "\n", "but", "except", "unless", "butter", "EGFR", "x."])
TEXTS = st.lists(PIECES, max_size=60).map("".join)


def rescanned_bounds(pattern: re.Pattern, text: str, start: int, end: int) -> tuple[int, int]:
    """The bounds as they were first written: text[:start] scanned again from its beginning."""
    before = [m.end() for m in pattern.finditer(text, 0, start)]
    after = pattern.search(text, end)
    return (before[-1] if before else 0), (after.start() if after else len(text))


@settings(max_examples=400, deadline=None)
@given(TEXTS, st.data())
def test_bounds_are_those_of_a_rescan_from_the_start(text, data):
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    for pattern in (polarity._CLAUSE_BREAK, polarity._SENTENCE_BREAK):
        assert polarity._bounds(pattern, text, start, end) == rescanned_bounds(pattern, text, start, end)


def test_bounds_far_into_a_long_text_are_those_of_a_rescan():
    text = ("No prior EGFR inhibitor, but KRAS-mutant; ANC >= 1.5 except in arm B.\n" * 300) + "tail without breaks"
    for start in range(0, len(text), 97):
        end = min(len(text), start + 5)
        for pattern in (polarity._CLAUSE_BREAK, polarity._SENTENCE_BREAK):
            assert polarity._bounds(pattern, text, start, end) == rescanned_bounds(pattern, text, start, end)


def rescanned_scope(text: str, start: int) -> bool:
    """scoped_to_cohort as first written: the term's line searched again for every term."""
    if polarity.cohort_specific(text) or polarity._PHASE_OPENER.match(text):
        return True
    line_start = text.rfind("\n", 0, start) + 1
    if polarity.cohort_specific(text[line_start:start]) or polarity._PHASE_OPENER.match(text, line_start):
        return True
    return bool(polarity._INLINE_COHORT_LABEL.search(text, line_start, start))


LABEL_PIECES = st.sampled_from(
    ["Cohort A", "cohort 2", "Arm 3", "Part 2A", "EXP-1", "phase I", "Phase 2", ":", " ", "\n", "x", "ROS1+", ",", "only"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(LABEL_PIECES, max_size=30).map("".join), st.data())
def test_cohort_scope_is_that_of_a_rescan_of_the_line(text, data):
    start = data.draw(st.integers(0, len(text)))
    assert polarity.scoped_to_cohort(text, start) == rescanned_scope(text, start)


def test_a_criterion_of_a_quarter_megabyte_is_extracted(monkeypatch):
    """It took three minutes when every term rescanned the criterion from its start (now a few seconds)."""
    monkeypatch.setenv("ELIGEX_RULES_BUDGET", "3600")  # this test is about finishing, not about the budget
    record = trial("NCT00000001", hostile(256 * 1024))
    draft = extract(RulesBackend(), record)
    assert draft.eligibility["prior_therapies"] and draft.eligibility["biomarkers"]


def test_a_trial_over_its_time_budget_is_an_error_row_and_the_others_are_stored(tmp_path, monkeypatch):
    # Far more work than the budget allows for the hostile trial, far less for the small ones.
    monkeypatch.setenv("ELIGEX_RULES_BUDGET", "0.2")
    backend = RulesBackend()
    extract(backend, trial("NCT00000009", SMALL))  # vocabularies loaded before the run, as in a long run
    trials = [trial("NCT00000001", SMALL), trial("NCT00000002", hostile(1024 * 1024)), trial("NCT00000003", SMALL)]
    workspace = Workspace(tmp_path)
    try:
        summary = asyncio.run(run_extraction(workspace, backend, trials))
        rows = dict(workspace.db.execute("SELECT nct_id, status FROM extractions").fetchall())
        reason = workspace.db.execute("SELECT error FROM extractions WHERE nct_id = 'NCT00000002'").fetchone()[0]
    finally:
        workspace.close()
    assert summary.extracted == 2 and list(summary.failures) == ["NCT00000002"]
    assert rows == {"NCT00000001": "ok", "NCT00000002": "error", "NCT00000003": "ok"}
    assert "\n" not in reason and "time budget of 0.2 s" in reason and "ELIGEX_RULES_BUDGET" in reason


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_budget_that_is_no_positive_number_is_refused(monkeypatch, value):
    monkeypatch.setenv("ELIGEX_RULES_BUDGET", value)
    with pytest.raises(InputError, match="ELIGEX_RULES_BUDGET"):
        RulesBackend()
