"""One field registry: every module's list of fields is read from the contract's `Eligibility` model,
and one bad item costs only itself, never the trial's record."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from cli import record_json_schema
from extract.backend import assemble
from extract.evaluate import scoring
from extract.evaluate.harness import load_gold, read_gold
from extract.errors import InputError
from extract.llm import ExtractedEligibility
from extract.rules import RulesBackend, extract_eligibility
from extract.text import segment
from schemas import Eligibility, Trial
from schemas.fields import CRITERIA_LISTS, ITEM_FIELDS, LIST_FIELDS, SCALAR_FIELDS, SINGLE_FIELDS
from tests.conftest import make_criterion

SOURCE = {"registry": "clinicaltrials.gov", "retrieved_at": "2026-01-01T00:00:00Z", "content_sha256": "0" * 64}


def trial(text: str) -> Trial:
    return Trial(nct_id="NCT00000001", source=SOURCE, trial={}, eligibility_text=text, sex="ALL", min_age_years=18)


def test_the_registry_is_the_contract_s_eligibility_fields():
    named = set(LIST_FIELDS) | set(SINGLE_FIELDS) | set(SCALAR_FIELDS)
    assert named == set(Eligibility.model_fields) - {"origins", *CRITERIA_LISTS}
    assert set(SINGLE_FIELDS) == {"stage", "brain_metastases", "measurable_disease"}
    assert {field.name: field.model.__name__ for field in ITEM_FIELDS}["biomarkers"] == "BiomarkerRule"


def test_the_llm_answers_every_item_field_with_quotes_for_evidence():
    answer = ExtractedEligibility.model_json_schema()
    assert set(answer["properties"]) == {field.name for field in ITEM_FIELDS} | {"age_limits"}
    quoted_lab = answer["$defs"]["QuotedLab"]["properties"]["evidence"]
    assert quoted_lab == {"$ref": "#/$defs/Quote", "description": "the words that state it"}


def test_every_field_has_a_scoring_rule_or_a_reason_it_has_none():
    scored = {view.field for view in scoring.VIEWS.values()}
    every = {field.name for field in ITEM_FIELDS} | set(SCALAR_FIELDS)
    assert every == scored | set(scoring.NOT_SCORED)
    assert not scored & set(scoring.NOT_SCORED)


def test_every_property_of_the_exported_schema_is_described():
    schema = record_json_schema()
    models = {**schema["$defs"], "EligibilityRecord": schema}
    undescribed = [f"{name}.{prop}" for name, model in models.items()
                   for prop, spec in model.get("properties", {}).items() if not spec.get("description")]  # fmt: skip
    assert undescribed == []


def test_a_single_field_stated_in_parts_is_one_item_with_the_parts_united():
    criteria = [make_criterion("Stage IIIB disease", number=1), make_criterion("or metastatic breast cancer", number=2)]
    stage = extract_eligibility(criteria)["stage"]
    assert (stage["groups"], stage["settings"]) == (["III"], ["metastatic"])


def test_an_item_that_does_not_validate_is_dropped_with_a_warning_and_the_record_is_kept():
    # A real finder slip: "Karnofsky 90-70" reads as min 90, max 70, which the contract refuses.
    text = "Inclusion Criteria:\n* Karnofsky performance status 90-70\n* ANC >= 1.5 x 10^9/L"
    record = asyncio.run(_extract(text))
    assert record.eligibility.performance_status == []
    assert [lab.analyte for lab in record.eligibility.labs] == ["anc"]
    [warning] = [w for w in record.extraction.warnings if "does not validate" in w]
    assert warning.startswith("performance_status: dropped an item that does not validate")
    assert "min is above max" in warning and "'Karnofsky performance status 90-70'" in warning
    assert warning.endswith("made by rules.performance")
    # the slipped criterion is still accounted for: listed in `other`
    assert [o.text for o in record.eligibility.other] == ["Karnofsky performance status 90-70"]


def test_the_warning_names_the_backend_when_no_rule_made_the_item():
    text = "Inclusion Criteria:\n* ECOG 0-1"
    draft = {"performance_status": [{"scale": "ECOG", "min": 1, "max": 0, "evidence": {"quote": "ECOG 0-1"}}]}
    from extract.backend import Draft

    class Model:
        name, model, prompt_version = "openai", "m", "p"

    record = assemble(trial(text), segment(text), Draft(eligibility=draft), Model())
    assert record.eligibility.performance_status == []
    assert record.extraction.warnings[-1].endswith("made by openai")


async def _extract(text: str):
    backend = RulesBackend()
    criteria = segment(text)
    return assemble(trial(text), criteria, await backend.extract(trial(text), criteria), backend)


def test_every_committed_gold_file_validates():
    assert len(load_gold()) >= 82


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda g: g["eligibility"]["labs"][0].update(comparator="=>"), "eligibility.labs.0.comparator"),
        (lambda g: g["eligibility"].update(performance_status=[{"scale": "WHO", "min": 0, "max": 1}]),
         "eligibility.performance_status.0.scale"),
        (lambda g: g["eligibility"].update(biomarkers=[{"requirement": "required", "any_of": []}]),
         "eligibility.biomarkers.0.any_of"),
        (lambda g: g["eligibility"].update(stages=None), "eligibility.stages"),
        (lambda g: g.pop("category"), "category"),
    ],
)
def test_a_broken_gold_file_is_one_line_naming_the_file_and_the_field(tmp_path, change, where):
    gold = json.loads(read_gold_path().read_text())
    change(gold)
    path = tmp_path / read_gold_path().name
    path.write_text(json.dumps(gold))
    with pytest.raises(InputError) as raised:
        read_gold(path)
    message = str(raised.value)
    assert message.startswith(f"gold file {path}: {where}: ") and "\n" not in message


def test_a_gold_file_named_after_another_trial_is_refused(tmp_path):
    path = tmp_path / "NCT00000002.json"
    path.write_text(read_gold_path().read_text())
    with pytest.raises(InputError, match="nct_id is NCT04003649, not the file's name"):
        read_gold(path)


def read_gold_path():
    from extract.evaluate.harness import GOLD_DIR

    return GOLD_DIR / "NCT04003649.json"


def test_the_relaxed_therapy_view_counts_a_drug_as_its_class_and_the_strict_one_does_not():
    gold = {"prior_therapies": [{"requirement": "excluded", "therapy": "anti-her2 therapy"}]}
    extracted = {"prior_therapies": [{"requirement": "excluded", "therapy": "trastuzumab"},
                                     {"requirement": "excluded", "therapy": "pertuzumab"}]}  # fmt: skip

    def counts(view):
        found, missed, spurious = scoring.match(view, scoring.facts(view, gold), scoring.facts(view, extracted))
        return len(found), len(spurious), len(missed)

    assert counts("prior_therapies") == (0, 2, 1)
    assert counts("prior_therapies_relaxed") == (1, 1, 0)  # a drug is its class; two drugs are not one another
    wrong_way = {"prior_therapies": [{"requirement": "required", "therapy": "trastuzumab"}]}
    assert scoring.match("prior_therapies_relaxed", scoring.facts("prior_therapies_relaxed", gold),
                         scoring.facts("prior_therapies_relaxed", wrong_way))[0] == []  # fmt: skip


def test_models_are_pydantic_models():
    assert all(issubclass(field.model, BaseModel) for field in ITEM_FIELDS)
