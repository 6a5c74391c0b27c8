"""The rules backend on hostile sizes: linear in criterion length, and a time budget per trial."""

from __future__ import annotations

import asyncio
import pytest

from extract.errors import InputError
from extract.pipeline import run_extraction
from extract.rules import RulesBackend
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
