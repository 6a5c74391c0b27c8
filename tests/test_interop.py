"""Exports other systems read: FHIR R5 (validated by fhir.resources) and CTML (by schemas/ctml.schema.json)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from fhir.resources.bundle import Bundle

import eligex
from conftest import SEED_RECORDS, gold_record, run, shared_trials
from extract.interop import ctml, fhir
from schemas import EligibilityRecord


@pytest.fixture(scope="module")
def shared_records(shared_data) -> list[EligibilityRecord]:
    """The rules backend's record of every trial in ../shared/data, made once for the module."""
    records = {trial.nct_id: eligex.extract(trial) for trial in shared_trials()}
    assert len(records) > 1000
    return list(records.values())


@pytest.fixture(scope="module")
def exported(shared_records) -> list[tuple[EligibilityRecord, dict, dict]]:
    """Each shared record with its FHIR Bundle and CTML document: `build` validates both (fhir.resources'
    R5 models; schemas/ctml.schema.json), so a record that makes invalid output fails here."""
    return [(record, fhir.build(record), ctml.build(record)) for record in shared_records]


@pytest.fixture(scope="module")
def seed() -> EligibilityRecord:
    return gold_record("NCT06450314", SEED_RECORDS)


def characteristics(bundle: dict) -> list[dict]:
    [variable] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "EvidenceVariable"]
    return variable.get("characteristic", [])


# -- on every shared record ------------------------------------------------------------------------


def test_every_shared_record_is_valid_fhir_r5_and_valid_ctml(exported):
    for record, bundle, document in exported:
        study = bundle["entry"][0]["resource"]
        assert study["recruitment"]["eligibility"]["reference"] == f"EvidenceVariable/{bundle['entry'][1]['resource']['id']}"
        for characteristic in characteristics(bundle):
            combination = characteristic.get("definitionByCombination")
            assert combination is None or (combination["code"] == "any-of" and len(combination["characteristic"]) > 1)
        assert document["nct_id"] == record.nct_id
    # the validators used are the real ones: the last of them again, from the JSON a reader gets
    Bundle.model_validate_json(json.dumps(bundle))
    jsonschema.validate(json.loads(json.dumps(document)), ctml.schema())


def test_nothing_is_dropped_silently(exported):
    """Each structured item of a record is a FHIR characteristic; each one CTML cannot state is a note."""
    for record, bundle, document in exported:
        eligibility = record.eligibility
        variable = bundle["entry"][1]["resource"]
        allowed = eligibility.brain_metastases is not None and eligibility.brain_metastases.status == "allowed"
        required_types = [c for c in eligibility.cancer_types if c.requirement == "required"]
        items = (len(eligibility.biomarkers) + len(eligibility.performance_status) + len(eligibility.prior_therapies)
                 + len(eligibility.labs) + (len(eligibility.cancer_types) - len(required_types) + bool(required_types))
                 + bool(eligibility.stage and (eligibility.stage.groups or eligibility.stage.settings))
                 + (eligibility.brain_metastases is not None and not allowed) + (eligibility.measurable_disease is not None)
                 + (eligibility.min_age_years is not None or eligibility.max_age_years is not None)
                 + (eligibility.sex in ("FEMALE", "MALE")))  # fmt: skip
        assert len(variable.get("characteristic", [])) == items, record.nct_id
        assert len(variable.get("note", [])) == len(eligibility.other) + allowed
        notes = document["notes"]
        for field in ("performance_status", "prior_therapies", "labs"):
            assert sum(n["field"] == field for n in notes) == len(getattr(eligibility, field)), (record.nct_id, field)
        assert sum(n["field"] == "other" for n in notes) == len(eligibility.other)


def test_the_ctml_schema_rejects_what_ctml_does_not_have(seed):
    document = ctml.build(seed)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document | {"treatment_list": {"step": [{"step_internal_id": 1, "arm": [],
                            "match": [{"clinical": {"ecog": "0-1"}}]}]}}, ctml.schema())  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document | {"treatment_list": {"step": [{"step_internal_id": 1, "arm": [],
                            "match": [{"genomic": {"hugo_symbol": "KRAS", "variant_category": "Deletion"}}]}]}}, ctml.schema())  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in document.items() if k != "notes"}, ctml.schema())


# -- the seed trial: HER2 3+ by IHC or HER2 amplification ------------------------------------------


def test_the_seed_trial_s_her2_alternatives_are_one_any_of_in_fhir(seed):
    found = characteristics(fhir.build(seed))
    [her2] = [c for c in found if "ERBB2" in c["description"]]
    combination = her2["definitionByCombination"]
    assert combination["code"] == "any-of" and not her2.get("exclude")
    ihc, amplified = combination["characteristic"]
    assert ihc["definitionByTypeAndValue"]["type"]["text"] == "ERBB2 overexpression"
    assert ihc["definitionByTypeAndValue"]["method"] == [{"text": "IHC"}]
    assert ihc["definitionByTypeAndValue"]["valueCodeableConcept"]["coding"][0]["code"] == "POS"
    assert ihc["definitionByTypeAndValue"]["valueCodeableConcept"]["text"] == "positive (3+)"
    assert amplified["definitionByTypeAndValue"]["type"]["text"] == "ERBB2 amplification"
    assert "HER2-positive is defined as HER2 3+" in her2["description"]
    [therapy] = [c for c in found if "prior anti-her2 therapy" in c["description"]]
    assert therapy["durationRange"]["low"] == {"value": 24, "unit": "months", "system": "http://unitsofmeasure.org", "code": "mo"}
    [stage] = [c for c in found if "metastatic" in c["description"] and "definitionByCombination" in c]
    assert stage["definitionByCombination"]["code"] == "any-of" and len(stage["definitionByCombination"]["characteristic"]) == 3
    [breast] = [c for c in found if c.get("definitionCodeableConcept", {}).get("text") == "breast cancer"]
    assert not breast.get("exclude")


def test_the_seed_trial_in_ctml_takes_her2_positive_or_amplified_breast_cancer(seed):
    document = ctml.build(seed)
    [step] = document["treatment_list"]["step"]
    [tree] = step["match"]
    assert tree == {"and": [{"clinical": {"oncotree_primary_diagnosis": "Invasive Breast Carcinoma"}},
                            {"or": [{"clinical": {"her2_status": "Positive"}},
                                    {"genomic": {"hugo_symbol": "ERBB2", "variant_category": "Copy Number Variation",
                                                 "cnv_call": "High Amplification"}}]}]}  # fmt: skip
    reasons = {note["field"]: note["reason"] for note in document["notes"]}
    assert "anti-her2 therapy" in reasons["prior_therapies"] and "stage" in reasons


def record_with(seed: EligibilityRecord, **eligibility) -> EligibilityRecord:
    evidence = seed.eligibility.biomarkers[0].evidence.model_dump()
    for items in eligibility.values():
        for item in items:
            item.setdefault("evidence", evidence)
    return EligibilityRecord.model_validate(seed.model_dump() | {"eligibility": seed.eligibility.model_dump() | eligibility})


def test_negation_her2_low_and_variants_in_ctml(seed):
    record = record_with(seed, biomarkers=[
        {"requirement": "excluded", "any_of": [{"marker": "EGFR", "status": "positive", "alteration": "mutation"},
                                               {"marker": "KRAS", "status": "positive", "alteration": "mutation", "variant": "G12C"}]},
        {"requirement": "required", "any_of": [{"marker": "BRAF", "status": "positive", "alteration": "mutation", "variant": "V600"}]},
        {"requirement": "required", "any_of": [{"marker": "ERBB2", "status": "positive", "alteration": "expression",
                                                "method": "IHC", "value": "1+ or 2+"}]},
    ], cancer_types=[{"name": "breast cancer", "requirement": "required", "code": {"system": "oncotree", "code": "BRCA"}},
                     {"name": "inflammatory breast cancer", "requirement": "excluded", "code": {"system": "oncotree", "code": "IBC"}}])  # fmt: skip
    document = ctml.build(record)
    [tree] = document["treatment_list"]["step"][0]["match"]
    assert tree["and"] == [
        {"clinical": {"oncotree_primary_diagnosis": "Invasive Breast Carcinoma"}},
        {"clinical": {"oncotree_primary_diagnosis": "!Inflammatory Breast Cancer"}},
        {"and": [{"genomic": {"hugo_symbol": "EGFR", "variant_category": "!Mutation"}},
                 {"genomic": {"hugo_symbol": "KRAS", "variant_category": "Mutation", "protein_change": "!p.G12C"}}]},
        {"genomic": {"hugo_symbol": "BRAF", "variant_category": "Mutation", "wildcard_protein_change": "p.V600"}},
    ]  # fmt: skip
    [low] = [n for n in document["notes"] if n["field"] == "biomarkers"]
    assert "HER2-low" in low["reason"] and "whole rule is left out" in low["reason"]


def test_labs_are_quantities_with_units_and_exclusions_exclude(seed):
    record = record_with(seed, labs=[
        {"analyte": "anc", "comparator": ">=", "value": 1.5, "unit": "x10^9/L"},
        {"analyte": "ast", "comparator": "<=", "uln_multiple": 2.5},
    ], prior_therapies=[{"requirement": "excluded", "therapy": "cdk4/6 inhibitor"}])  # fmt: skip
    found = characteristics(fhir.build(record))
    [anc] = [c for c in found if c["description"].startswith("anc")]
    assert anc["definitionByTypeAndValue"]["valueQuantity"] == {
        "comparator": ">=", "value": 1.5, "unit": "x10^9/L", "system": "http://unitsofmeasure.org", "code": "10*9/L"}
    [ast] = [c for c in found if c["description"].startswith("ast")]
    assert ast["definitionByTypeAndValue"]["valueQuantity"] == {"comparator": "<=", "value": 2.5, "unit": "x ULN"}
    [cdk] = [c for c in found if "cdk4/6" in c["description"]]
    assert cdk["exclude"] is True


def test_eligex_export_fhir_and_ctml(tmp_path, monkeypatch, seed):
    workspace = tmp_path / "ws"
    (workspace / "structured").mkdir(parents=True)
    monkeypatch.setenv("ELIGEX_WORKSPACE", str(workspace))
    assert run("import", str(SEED_RECORDS)).exit_code == 0
    assert run("extract", "NCT06450314", "--backend", "rules").exit_code == 0
    out = tmp_path / "trials.fhir.json"
    result = run("export", "--format", "fhir", "--out", str(out))
    assert result.exit_code == 0 and "exported 1 records" in result.stderr
    bundle = Bundle.model_validate_json(out.read_bytes())
    assert [e.resource.get_resource_type() for e in bundle.entry] == ["ResearchStudy", "EvidenceVariable"]
    result = run("export", "--format", "ctml", "--out", "-")
    [line] = result.stdout.splitlines()
    jsonschema.validate(json.loads(line), ctml.schema())
    assert json.loads(line)["nct_id"] == "NCT06450314"
    lines = tmp_path / "trials.ctml.jsonl"
    assert run("export", "--format", "ctml", "--out", str(lines)).exit_code == 0
    assert lines.read_text().splitlines() == [line]
    assert not list(tmp_path.glob("*.schema.json"))  # the contract's schema does not describe CTML
    for fmt in ("fhir", "ctml"):  # a folder as --out is one line and exit 2, not a traceback
        result = run("export", "--format", fmt, "--out", str(tmp_path))
        assert result.exit_code == 2 and "is a folder" in result.stderr and "Traceback" not in result.stderr


def test_the_criteria_of_one_cohort_stay_out_of_the_ctml_tree_and_are_noted(seed):
    [rule] = seed.eligibility.biomarkers
    scoped = EligibilityRecord.model_validate(seed.model_dump() | {"eligibility": seed.eligibility.model_dump() | {
        "cohorts": [{"cohort": "Cohort A", "criterion_ids": [rule.evidence.criterion_id]}]}})  # fmt: skip
    document = ctml.build(scoped)
    [tree] = document["treatment_list"]["step"][0]["match"]
    assert "her2_status" not in json.dumps(tree)
    assert any(n["field"] == "biomarkers" and "applies to Cohort A only" in n["reason"] for n in document["notes"])
    variable = fhir.build(scoped)["entry"][1]["resource"]
    assert any("apply to Cohort A only" in note["text"] for note in variable["note"])
