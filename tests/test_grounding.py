"""The one aligner: exact offsets or nothing, and every criterion accounted for."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from extract.backend import Draft, assemble
from extract.grounding import ground, locate, unaccounted
from extract.text import normalise, segment
from schemas import EligibilityRecord, Source, Trial, TrialFacts

TEXT = normalise(
    "Inclusion Criteria:\n\n* Cohort A: ECOG 0-1\n* Cohort B: ECOG 0-1 and  HER2-positive\n"
    "* Age 18 to 70 years\n\nExclusion Criteria:\n\n* Known brain metastases\n* Pregnancy"
)
CRITERIA = segment(TEXT)


class NamedBackend:
    """A real object with the Backend attributes; assemble() only reads them."""

    name, model, prompt_version = "rules", None, "test"


def trial(**registry) -> Trial:
    return Trial(
        nct_id="NCT01234567",
        source=Source(registry="clinicaltrials.gov", retrieved_at=datetime.now(timezone.utc), content_sha256="0" * 64),
        trial=TrialFacts(title="t"),
        eligibility_text=TEXT,
        **registry,
    )


def test_exact_quote_in_the_named_criterion_wins_over_an_earlier_occurrence():
    start, end = locate(TEXT, "ECOG 0-1", CRITERIA, "inc-2")
    assert TEXT[start:end] == "ECOG 0-1"
    assert CRITERIA[1].start <= start < CRITERIA[1].end


def test_without_a_criterion_the_first_occurrence_is_taken():
    start, _ = locate(TEXT, "ECOG 0-1", CRITERIA)
    assert CRITERIA[0].start <= start < CRITERIA[0].end


def test_case_and_white_space_differences_are_tolerated_and_the_real_text_is_quoted():
    grounded = ground({"biomarkers": [{"evidence": {"quote": "ecog 0-1 AND her2-positive"}}]}, TEXT, CRITERIA)
    evidence = grounded.eligibility["biomarkers"][0]["evidence"]
    assert evidence["quote"] == "ECOG 0-1 and  HER2-positive" == TEXT[evidence["start"] : evidence["end"]]
    assert evidence["criterion_id"] == "inc-2"


def test_markdown_escapes_in_a_quote_are_undone_before_searching():
    text = normalise("Inclusion Criteria:\n* ANC \\>= 1500/mm3")
    assert locate(text, "ANC \\>= 1500/mm3", segment(text)) is not None


def test_an_invented_quote_is_dropped_with_a_warning_and_counted():
    grounded = ground(
        {"labs": [{"analyte": "anc", "evidence": {"quote": "ANC >= 1.5"}}], "stage": {"evidence": {"quote": "stage IV"}}},
        TEXT,
        CRITERIA,
    )
    assert grounded.eligibility["labs"] == [] and grounded.eligibility["stage"] is None
    assert grounded.ungrounded == 2
    assert grounded.warnings[0] == "labs: dropped an item whose quote is not in the text: 'ANC >= 1.5'"


def test_a_wrong_criterion_id_is_corrected_to_where_the_quote_is():
    grounded = ground({"brain_metastases": {"status": "excluded", "evidence": {"quote": "brain metastases", "criterion_id": "inc-1"}}}, TEXT, CRITERIA)
    assert grounded.eligibility["brain_metastases"]["evidence"]["criterion_id"] == "exc-1"


def test_every_criterion_is_captured_or_in_other_after_assembly():
    draft = Draft({"performance_status": [{"scale": "ECOG", "min": 0, "max": 1, "evidence": {"quote": "ECOG 0-1"}}]})
    record = assemble(trial(), CRITERIA, draft, NamedBackend())
    other = [entry.criterion_id for entry in record.eligibility.other]
    assert other == ["inc-2", "inc-3", "exc-1", "exc-2"]
    assert unaccounted(record.eligibility.model_dump(), CRITERIA) == []


def test_registry_ages_unless_the_text_is_stricter():
    age = {"criterion_id": "inc-3", "quote": "Age 18 to 70 years"}
    draft = Draft({"min_age_years": 18, "max_age_years": 70,
                   "origins": {"min_age_years": {"origin": "text", "evidence": age},
                               "max_age_years": {"origin": "text", "evidence": age}}})  # fmt: skip
    record = assemble(trial(sex="ALL", min_age_years=21, max_age_years=None), CRITERIA, draft, NamedBackend())
    eligibility = record.eligibility
    assert (eligibility.min_age_years, eligibility.origins["min_age_years"].origin) == (21, "registry")
    assert (eligibility.max_age_years, eligibility.origins["max_age_years"].origin) == (70, "text")
    assert eligibility.origins["max_age_years"].evidence.quote == "Age 18 to 70 years"
    assert eligibility.sex == "ALL" and eligibility.origins["sex"].origin == "registry"


def test_a_record_with_offsets_that_do_not_match_is_invalid():
    record = assemble(trial(), CRITERIA, Draft({}), NamedBackend()).model_dump()
    record["criteria"][0]["start"] += 1
    with pytest.raises(ValidationError, match="does not match eligibility_text"):
        EligibilityRecord.model_validate(record)
