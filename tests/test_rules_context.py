"""The context layer: each modifier of context.tsv on synthetic sentences, in scope and out of it."""

from __future__ import annotations

import pytest

from extract.rules import context
from extract.rules.context import annotate
from extract.rules.polarity import cohort_specific, negated, requirement, scoped_to_cohort, stated_requirement
from schemas import Criterion


def _span(text: str, words: str) -> tuple[int, int]:
    start = text.index(words)
    return start, start + len(words)


def _is(kind: str, text: str, words: str) -> bool:
    return annotate(text).is_(kind, *_span(text, words))


def _criterion(text: str, kind: str = "inclusion") -> Criterion:
    return Criterion(id="inc-1" if kind == "inclusion" else "exc-1", kind=kind, text=text, start=0, end=len(text))


def test_every_rule_of_the_data_file_loads() -> None:
    kinds = {rule.kind for rule in context.rules()}
    assert kinds == set(context.KINDS)


@pytest.mark.parametrize(
    ("text", "words", "expected"),
    [
        ("No prior trastuzumab", "trastuzumab", True),
        ("Prior trastuzumab", "trastuzumab", False),
        ("Patients without EGFR mutation", "EGFR", True),
        ("Patients with EGFR mutation", "EGFR", False),
        # the clause ends the scope: ". ", "; ", "but", "except"
        ("No brain metastases; EGFR mutation", "EGFR", False),
        ("Never smoked but EGFR mutation", "EGFR", False),
        # after the term
        ("Trastuzumab-naive", "Trastuzumab", True),
        ("Trastuzumab naïve", "Trastuzumab", True),
        ("Trastuzumab given, then naive", "Trastuzumab", False),
        ("Patients with HER2-positive disease are excluded", "HER2", True),
        ("Patients with HER2-positive disease are included", "HER2", False),
        # a negation in a closed aside reaches only inside it
        ("Advanced (not amenable to surgery) or metastatic", "metastatic", False),
        ("Advanced (not amenable to surgery) or metastatic", "surgery", True),
        # pseudo-negations negate nothing
        ("Tumours including but not limited to melanoma", "melanoma", False),
        ("Tumours not including melanoma", "melanoma", True),
        ("Patients are not required to have prior fulvestrant", "fulvestrant", False),
    ],
)
def test_negation(text: str, words: str, expected: bool) -> None:
    assert negated(text, *_span(text, words)) is expected


def test_a_negation_inside_the_term_negates_it_unless_asked_not_to() -> None:
    text = "KRAS not mutated"
    assert negated(text, 0, len(text))
    assert not negated(text, 0, len(text), inside=False)


@pytest.mark.parametrize(
    ("text", "kind", "words", "expected"),
    [
        ("Must not have received trastuzumab", "inclusion", "trastuzumab", "excluded"),
        ("Must not have received trastuzumab", "exclusion", "trastuzumab", "excluded"),  # restates the exclusion
        ("Patients who have not received platinum", "exclusion", "platinum", "required"),
        ("Patients with RET fusions are excluded", "exclusion", "RET", "excluded"),
        ("Patients with RET fusions are excluded", "inclusion", "RET", "excluded"),
        ("Prior platinum", "exclusion", "platinum", "excluded"),
    ],
)
def test_prohibitions_restate_an_exclusion(text: str, kind: str, words: str, expected: str) -> None:
    assert stated_requirement(_criterion(text, kind), *_span(text, words)) == expected


def test_requirement_flips_on_a_prohibition_in_either_section() -> None:
    text = "Must not have received trastuzumab"
    assert requirement(_criterion(text, "exclusion"), *_span(text, "trastuzumab")) == "required"


@pytest.mark.parametrize(
    ("text", "words", "expected"),
    [
        ("Cohort B: HER2-positive breast cancer", "HER2", True),
        ("Cohort A (HER2-positive): prior trastuzumab", "HER2", True),
        ("PHASE I: any solid tumour", "solid", True),
        ("In the dose escalation part, ECOG 0-2", "ECOG", True),
        ("Breast cancer\n* Cohort A1: HER2-low\n* All patients: ECOG 0-1", "HER2", True),
        ("Breast cancer\n* Cohort A1: HER2-low\n* All patients: ECOG 0-1", "ECOG", False),
        ("ECOG 0-1 in cohort 2 only. HER2-positive", "ECOG", True),
        ("ECOG 0-1 in cohort 2 only. HER2-positive", "HER2", False),
        ("HER2-positive breast cancer", "HER2", False),
        ("Subjects in the combination cohort must:\n1. have had venetoclax", "venetoclax", True),
    ],
)
def test_cohort_scope(text: str, words: str, expected: bool) -> None:
    assert scoped_to_cohort(text, _span(text, words)[0]) is expected


def test_a_criterion_stated_for_one_cohort() -> None:
    assert cohort_specific("Cohort B: HER2-positive breast cancer")
    assert not cohort_specific("HER2-positive breast cancer (all cohorts)")


@pytest.mark.parametrize(
    ("text", "words", "expected"),
    [
        ("For patients with EGFR mutation, prior osimertinib", "EGFR", True),
        ("If EGFR mutated, prior osimertinib. HER2-negative", "EGFR", True),
        ("If EGFR mutated, prior osimertinib. HER2-negative", "HER2", False),
        ("Patients with EGFR mutation must have received a TKI", "EGFR", True),
        ("Patients with EGFR mutation must have received a TKI", "TKI", False),
        ("Patients must have EGFR mutation", "EGFR", False),
        ("Patients with brain metastases are eligible if measurable disease", "measurable", True),
        ("Patients with ifosfamide-refractory disease", "ifosfamide", False),
    ],
)
def test_conditional(text: str, words: str, expected: bool) -> None:
    assert _is("conditional", text, words) is expected


@pytest.mark.parametrize(
    ("text", "words", "expected"),
    [
        ("Prior trastuzumab is allowed", "trastuzumab", True),
        ("Prior trastuzumab is not allowed", "trastuzumab", False),
        ("Patients with RET fusions are eligible", "RET", True),
        ("Patients with RET fusions are not eligible", "RET", False),
        ("Patients may have received trastuzumab", "trastuzumab", True),
        ("Patients with RET fusions. Prior therapy is allowed", "RET", False),
        ("Patients are not required to have prior fulvestrant", "fulvestrant", True),
        ("Prior fulvestrant is required", "fulvestrant", False),
    ],
)
def test_permitted(text: str, words: str, expected: bool) -> None:
    assert _is("permitted", text, words) is expected


@pytest.mark.parametrize(
    ("text", "words", "expected"),
    [
        ("Prior chemotherapy except capecitabine", "capecitabine", True),
        ("Prior chemotherapy except capecitabine", "chemotherapy", False),
        ("Other malignancy unless treated with curative intent", "curative", True),
        ("Other malignancy unless treated with curative intent", "malignancy", False),
    ],
)
def test_exception(text: str, words: str, expected: bool) -> None:
    assert _is("exception", text, words) is expected


@pytest.mark.parametrize(
    ("text", "words", "expected"),
    [
        ("Chemotherapy within 4 weeks before the first dose", "Chemotherapy", True),
        ("Radiotherapy 14 days prior to enrolment", "Radiotherapy", True),
        ("A washout of 5 half-lives for any TKI", "TKI", True),
        ("Prior chemotherapy for metastatic disease", "chemotherapy", False),
        ("Chemotherapy. Surgery within 4 weeks", "Chemotherapy", False),
    ],
)
def test_window(text: str, words: str, expected: bool) -> None:
    assert _is("window", text, words) is expected


@pytest.mark.parametrize(
    ("kind", "text", "words", "expected"),
    [
        ("historical", "History of myocardial infarction", "myocardial", True),
        ("historical", "Prior trastuzumab", "trastuzumab", True),
        ("historical", "Trastuzumab prior to surgery", "Trastuzumab", False),
        ("historical", "Active myocardial infarction", "myocardial", False),
        ("planned", "Planned radiotherapy to the chest", "radiotherapy", True),
        ("planned", "Concurrent use of warfarin", "warfarin", True),
        ("planned", "Prior radiotherapy to the chest", "radiotherapy", False),
        ("planned", "Must not be receiving any other investigational agents", "investigational", True),
        ("planned", "Must not have received any other investigational agents", "investigational", False),
    ],
)
def test_historical_and_planned(kind: str, text: str, words: str, expected: bool) -> None:
    assert _is(kind, text, words) is expected


def test_each_modifier_keeps_its_trigger_and_scope() -> None:
    text = "No prior trastuzumab; ECOG 0-1"
    (negation,) = annotate(text).triggers("negated")
    assert text[negation.trigger_start : negation.trigger_end] == "No"
    assert text[negation.scope_start : negation.scope_end] == " prior trastuzumab"


def test_a_malformed_rule_names_its_line(tmp_path, monkeypatch) -> None:
    rules = tmp_path / "context.tsv"
    rules.write_text("# comment\nnegated\tforward\tclause\n", encoding="utf-8")
    monkeypatch.setattr(context, "RULES_FILE", rules)
    context.rules.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"context.tsv:2:"):
            context.rules()
    finally:
        context.rules.cache_clear()


def test_the_gates_skip_no_match_of_their_patterns() -> None:
    """A gate only saves time: on real criteria every rule finds with its gate what it finds without."""
    import json
    from pathlib import Path

    shared = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ctgov-2026" / "trials.jsonl"
    if not shared.exists():
        pytest.skip("../shared/data is not here")
    texts = []
    with shared.open(encoding="utf-8") as lines:
        for line, _ in zip(lines, range(150)):
            texts += (json.loads(line).get("eligibility") or {}).get("raw_text", "").split("\n")
    texts += ["Chemonaive", "Cohort A: ...", "CANNOT HAVE RECEIVED", "Within 28days", "Prior priority"]
    for rule in context.rules():
        for text in texts:
            ungated = [m.span() for m in rule.pattern.finditer(text)]
            assert [m.span() for m in rule.finditer(text, context.words_of(text), text.lower())] == ungated, (rule, text)
