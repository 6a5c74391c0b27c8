"""The scoring core against hand-made gold / extraction pairs, one matching rule at a time."""

from __future__ import annotations

import pytest

from extract.evaluate.scoring import compare, lab_threshold, prf, score_trial, summarise

TEXT = "Inclusion Criteria:\n\n* HER2-positive\n* ECOG 0-1"


def record(eligibility: dict, ungrounded_items: int = 0, text: str = TEXT, **usage) -> dict:
    """A record as plain data, with one criterion covering the whole text."""
    return {
        "eligibility_text": text,
        "criteria": [{"id": "inc-1", "kind": "inclusion", "text": text, "start": 0, "end": len(text)}],
        "eligibility": eligibility,
        "extraction": {"ungrounded_items": ungrounded_items, **usage},
    }


def ev(quote: str = "HER2-positive", text: str = TEXT) -> dict:
    start = text.find(quote)
    return {"criterion_id": "inc-1", "quote": quote, "start": start, "end": start + len(quote)}


def counts(gold: dict, extracted: dict, field: str) -> tuple[int, int, int]:
    scored = score_trial("NCT00000001", gold, record(extracted))["fields"][field]
    return scored["tp"], scored["fp"], scored["fn"]


def rule(requirement: str, *tests: tuple) -> dict:
    return {
        "requirement": requirement,
        "any_of": [{"marker": m, "status": s, "variant": v} for m, s, v in tests],
        "evidence": ev(),
    }


def lab(analyte, comparator, value=None, unit=None, uln=None, condition=None) -> dict:
    return {"analyte": analyte, "comparator": comparator, "value": value, "unit": unit,
            "uln_multiple": uln, "condition": condition, "evidence": ev()}  # fmt: skip


# -- registry facts --------------------------------------------------------------------------------


def test_sex_and_ages_exact_with_ages_to_a_hundredth_of_a_year():
    gold = {"sex": "FEMALE", "min_age_years": 18, "max_age_years": 0.5}
    assert counts(gold, {"sex": "FEMALE", "min_age_years": 18.005, "max_age_years": 0.5}, "min_age_years") == (1, 0, 0)
    assert counts(gold, {"sex": "ALL", "min_age_years": 18.02}, "min_age_years") == (0, 1, 1)
    assert counts(gold, {"sex": "ALL"}, "sex") == (0, 1, 1)
    assert counts(gold, {"sex": "FEMALE"}, "max_age_years") == (0, 0, 1)


def test_null_in_both_is_no_fact():
    empty = {"sex": None, "min_age_years": None, "stage": None, "brain_metastases": None, "measurable_disease": None}
    trial = score_trial("NCT00000001", empty, record(dict(empty)))
    assert all(c == {"tp": 0, "fp": 0, "fn": 0} for c in trial["fields"].values())
    assert summarise([trial], resamples=10)["micro"] == {
        "tp": 0, "fp": 0, "fn": 0, "precision": None, "recall": None, "f1": None,
        "ci": {"precision": None, "recall": None, "f1": None},
    }  # fmt: skip
    # A value where gold says null is spurious; null where gold has a value is a miss.
    assert counts({"max_age_years": None}, {"max_age_years": 75}, "max_age_years") == (0, 1, 0)
    assert counts({"brain_metastases": {"status": "excluded"}}, {"brain_metastases": None}, "brain_metastases") == (0, 0, 1)


# -- biomarkers ------------------------------------------------------------------------------------


def test_biomarker_facts_are_marker_and_must_be():
    gold = {"biomarkers": [rule("required", ("ERBB2", "positive", None)), rule("excluded", ("EGFR", "positive", None))]}
    # An excluded EGFR-positive rule means EGFR must be negative: the same fact as a required negative one.
    extracted = {"biomarkers": [rule("required", ("ERBB2", "positive", None), ("EGFR", "negative", None))]}
    assert counts(gold, extracted, "biomarkers") == (2, 0, 0)


def test_tests_saying_the_same_thing_score_as_one_fact():
    gold = {"biomarkers": [rule("required", ("MSI", "positive", None), ("MSI", "positive", None))]}
    assert counts(gold, {"biomarkers": [rule("required", ("MSI", "positive", None))]}, "biomarkers") == (1, 0, 0)


def test_the_strict_biomarker_view_adds_the_variant():
    gold = {"biomarkers": [rule("required", ("BRAF", "positive", "V600E"))]}
    extracted = {"biomarkers": [rule("required", ("BRAF", "positive", None))]}
    assert counts(gold, extracted, "biomarkers") == (1, 0, 0)
    assert counts(gold, extracted, "biomarkers_strict") == (0, 1, 1)
    assert counts(gold, {"biomarkers": [rule("required", ("BRAF", "positive", "v600e"))]}, "biomarkers_strict") == (1, 0, 0)


def test_polarity_errors_are_facts_right_but_for_their_requirement():
    gold = {
        "biomarkers": [rule("excluded", ("EGFR", "positive", None))],
        "prior_therapies": [{"requirement": "excluded", "therapy": "taxane", "evidence": ev()}],
    }
    extracted = {
        "biomarkers": [rule("required", ("EGFR", "positive", None))],
        "prior_therapies": [{"requirement": "required", "therapy": "Taxane", "evidence": ev()}],
    }
    trial = score_trial("NCT00000001", gold, record(extracted))
    assert [(e["field"], e["extracted"], e["gold"]) for e in trial["polarity_errors"]] == [
        ("biomarkers", "EGFR must be positive", "EGFR must be negative"),
        ("prior_therapies", "required taxane", "excluded taxane"),
    ]
    assert trial["fields"]["biomarkers"] == {"tp": 0, "fp": 1, "fn": 1}
    assert summarise([trial], resamples=10)["polarity_errors"] == 2


# -- stage, performance, therapies, brain metastases, measurable disease ---------------------------


def test_stage_members_of_groups_and_settings():
    gold = {"stage": {"groups": ["III", "IV"], "settings": ["metastatic"], "evidence": {"quote": "x"}}}
    extracted = {"stage": {"groups": ["IV"], "settings": ["metastatic", "recurrent"], "evidence": ev()}}
    assert counts(gold, extracted, "stage") == (2, 1, 1)


def test_performance_status_is_scale_min_max():
    gold = {"performance_status": [{"scale": "ECOG", "min": 0, "max": 1}, {"scale": "KARNOFSKY", "min": 70, "max": None}]}
    extracted = {"performance_status": [{"scale": "ECOG", "min": 0, "max": 2, "evidence": ev()},
                                        {"scale": "KARNOFSKY", "min": 70, "max": None, "evidence": ev()}]}  # fmt: skip
    assert counts(gold, extracted, "performance_status") == (1, 1, 1)


def test_prior_therapies_are_requirement_and_therapy_lower_cased():
    gold = {"prior_therapies": [{"requirement": "required", "therapy": "anti-her2 therapy", "drugs": ["trastuzumab"]}]}
    extracted = {"prior_therapies": [{"requirement": "required", "therapy": "Anti-HER2 therapy", "drugs": [],
                                      "evidence": ev()}]}  # fmt: skip
    assert counts(gold, extracted, "prior_therapies") == (1, 0, 0)


def test_brain_metastases_status_and_measurable_disease_required():
    gold = {"brain_metastases": {"status": "allowed_if_stable"}, "measurable_disease": {"required": True}}
    extracted = {"brain_metastases": {"status": "excluded", "evidence": ev()},
                 "measurable_disease": {"required": True, "standard": None, "evidence": ev()}}  # fmt: skip
    assert counts(gold, extracted, "brain_metastases") == (0, 1, 1)
    assert counts(gold, extracted, "measurable_disease") == (1, 0, 0)
    assert counts({"measurable_disease": {"required": False}}, extracted, "measurable_disease") == (0, 1, 1)


# -- labs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "expected"),
    [
        ("anc", 1500, "/mm3", (1.5, "10^9/L")),
        ("anc", 1500, "cells/mm3", (1.5, "10^9/L")),
        ("platelets", 100000, "/µL", (100, "10^9/L")),
        ("platelets", 100000, "/uL", (100, "10^9/L")),
        ("platelets", 100000, "/mcL", (100, "10^9/L")),
        ("anc", 1.5, "x10^9/L", (1.5, "10^9/L")),
        ("anc", 1.5, "x 10^9/L", (1.5, "10^9/L")),
        ("anc", 1.5, "10^9/L", (1.5, "10^9/L")),
        ("anc", 1.5, "G/L", (1.5, "10^9/L")),
        ("anc", 1.5, "x10^3/uL", (1.5, "10^9/L")),
        ("hemoglobin", 90, "g/L", (9, "g/dL")),
        ("hemoglobin", 9, "g/dL", (9, "g/dL")),
        ("creatinine", 132.6, "umol/L", (1.5, "mg/dL")),
        ("total_bilirubin", 25.65, "µmol/L", (1.5, "mg/dL")),
        ("creatinine", 1.5, "mg/dL", (1.5, "mg/dL")),
        ("creatinine_clearance", 60, "mL/min", (60, "ml/min")),
    ],
)
def test_lab_units_convert_to_canonical(analyte, value, unit, expected):
    number, canonical = lab_threshold(analyte, value, unit, None)
    assert canonical == expected[1]
    assert number == pytest.approx(expected[0])


def test_lab_facts_match_across_units_within_a_tenth_of_a_percent():
    gold = {"labs": [lab("anc", ">=", 1.5, "x10^9/L"), lab("creatinine", "<=", 1.5, "mg/dL"),
                     lab("ast", "<=", uln=2.5), lab("ast", "<=", uln=5, condition="liver metastases"),
                     lab("organ_function", None)]}  # fmt: skip
    extracted = {"labs": [lab("anc", ">=", 1500, "/mm3"), lab("creatinine", "<=", 133, "umol/L"),
                          lab("ast", "<=", uln=2.5), lab("ast", "<=", uln=5), lab("organ_function", None)]}  # fmt: skip
    # 133 umol/L is 1.5045 mg/dL, 0.3% off: a miss; the unconditional 5 x ULN is not the conditional one.
    assert counts(gold, extracted, "labs") == (3, 2, 2)
    extracted["labs"][1] = lab("creatinine", "<=", 132.7, "umol/L")  # 0.08% off
    assert counts(gold, extracted, "labs") == (4, 1, 1)
    extracted["labs"][1] = lab("creatinine", "<", 132.6, "umol/L")  # comparator differs
    assert counts(gold, extracted, "labs") == (3, 2, 2)


# -- checks, usage, averaging, intervals -----------------------------------------------------------


def test_ungrounded_items_and_unaccounted_criteria():
    extracted = record({"biomarkers": [dict(rule("required", ("ERBB2", "positive", None)),
                                            evidence=dict(ev(), quote="HER2-negative"))]},
                       ungrounded_items=2)  # fmt: skip
    extracted["criteria"] = [
        {"id": "inc-1", "kind": "inclusion", "text": "HER2-positive", "start": 23, "end": 36},
        {"id": "inc-2", "kind": "inclusion", "text": "ECOG 0-1", "start": 39, "end": 47},
    ]
    assert TEXT[23:36] == "HER2-positive" and TEXT[39:47] == "ECOG 0-1"
    trial = score_trial("NCT00000001", {}, extracted)
    assert trial["ungrounded"] == 3  # two dropped, one whose quote is not what its offsets say
    assert trial["unaccounted"] == [{"criterion_id": "inc-2", "text": "ECOG 0-1"}]
    extracted["eligibility"]["other"] = [{"criterion_id": "inc-2", "kind": "inclusion", "text": "ECOG 0-1"}]
    assert score_trial("NCT00000001", {}, extracted)["unaccounted"] == []


def test_missing_record_is_scored_as_empty_and_named():
    gold = {"sex": "ALL", "performance_status": [{"scale": "ECOG", "min": 0, "max": 1, "evidence": {"quote": "ECOG"}}]}
    trial = score_trial("NCT00000001", gold, None)
    assert [m["quote"] for m in trial["missed"]] == [None, "ECOG"]
    assert summarise([trial], resamples=10)["not_extracted"] == ["NCT00000001"]


def test_micro_average_sums_facts_over_headline_fields_and_trials():
    gold = {"sex": "ALL", "stage": {"groups": ["IV"], "settings": []},
            "cancer_types": [{"name": "Breast cancer", "requirement": "required"}]}  # fmt: skip
    one = score_trial("NCT00000001", gold, record({"sex": "ALL", "stage": {"groups": ["III"], "settings": [],
                                                                          "evidence": ev()}}))  # fmt: skip
    two = score_trial("NCT00000002", gold, record({"sex": "ALL", "cancer_types": [
        {"name": "breast cancer", "requirement": "required", "evidence": ev()}]}))  # fmt: skip
    metrics = summarise([one, two], resamples=50)
    assert metrics["micro"] | {"ci": None} == {"tp": 2, "fp": 1, "fn": 2, "precision": 0.6667, "recall": 0.5,
                                               "f1": 0.5714, "ci": None}  # fmt: skip
    assert metrics["fields"]["cancer_types"]["tp"] == 1  # reported, not in the micro average
    assert metrics["fields"]["sex"]["f1"] == 1.0
    low, high = metrics["micro"]["ci"]["f1"]
    assert 0 <= low <= 0.5714 <= high <= 1
    assert metrics["fields"]["sex"]["ci"]["f1"] == [1.0, 1.0]
    assert summarise([one, two], resamples=50) == metrics  # fixed seed: the same intervals every time


def test_prf_is_undefined_without_facts():
    assert prf(0, 0, 3) == {"tp": 0, "fp": 0, "fn": 3, "precision": None, "recall": 0.0, "f1": 0.0}
    assert prf(2, 2, 0)["f1"] == pytest.approx(0.6667)


def test_usage_is_reported_for_llm_runs_only():
    rules = score_trial("NCT00000001", {}, record({}, input_tokens=0, output_tokens=0, cost_usd=None))
    assert summarise([rules], resamples=10)["usage"] is None
    llm = [score_trial(f"NCT0000000{i}", {}, record({}, input_tokens=1000, output_tokens=200, cost_usd=0.01))
           for i in (1, 2)]  # fmt: skip
    usage = summarise(llm, resamples=10)["usage"]
    assert usage["input_tokens"] == 2000 and usage["cost_usd"] == 0.02
    assert usage["per_trial"] == {"input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.01}


def test_compare_gives_per_field_deltas():
    gold = {"sex": "ALL", "min_age_years": 18}
    a = summarise([score_trial("NCT00000001", gold, record({"sex": "ALL"}))], resamples=10)
    b = summarise([score_trial("NCT00000001", gold, record({"sex": "ALL", "min_age_years": 18}))], resamples=10)
    rows = {row["field"]: row for row in compare(a, b)}
    assert rows["micro"]["f1"] == (0.6667, 1.0, 0.3333)
    assert rows["min_age_years"]["recall"] == (0.0, 1.0, 1.0)
    assert rows["labs"]["f1"] == (None, None, None)
