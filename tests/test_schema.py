"""The contract in code: the committed JSON Schema matches the models, and validators hold the line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from cli import SCHEMA_FILE, main, record_json_schema
from schemas import Evidence, Lab, PerformanceStatus, PriorTherapy, Trial

EVIDENCE = {"criterion_id": "inc-1", "quote": "ECOG 0-1", "start": 0, "end": 8}


def test_committed_schema_file_is_in_sync_with_the_models():
    assert json.loads(SCHEMA_FILE.read_text()) == record_json_schema()
    assert CliRunner().invoke(main, ["schema", "--check"]).exit_code == 0


def test_schema_command_prints_the_schema_to_stdout():
    result = CliRunner().invoke(main, ["schema"])
    assert json.loads(result.stdout)["title"] == "EligibilityRecord"


def test_schema_names_every_contract_field():
    properties = record_json_schema()["$defs"]["Eligibility"]["properties"]
    for name in ("sex", "min_age_years", "max_age_years", "healthy_volunteers", "cancer_types", "biomarkers",
                 "stage", "performance_status", "prior_therapies", "labs", "brain_metastases",
                 "measurable_disease", "other"):  # fmt: skip
        assert name in properties


@pytest.mark.parametrize(
    "model, fields, message",
    [
        (PerformanceStatus, {"scale": "ECOG", "min": 0, "max": 6}, "ECOG runs from 0 to 5"),
        (PerformanceStatus, {"scale": "KARNOFSKY", "min": 70, "max": 110}, "KARNOFSKY runs from 0 to 100"),
        (PerformanceStatus, {"scale": "ECOG", "min": 2, "max": 1}, "min is above max"),
        (PerformanceStatus, {"scale": "WHO", "min": 0, "max": 1}, "Input should be 'ECOG', 'KARNOFSKY' or 'LANSKY'"),
        (Lab, {"analyte": "anc", "comparator": "=>", "value": 1.5}, "Input should be '>=', '>', '<=' or '<'"),
        (Lab, {"analyte": "anc", "comparator": ">=", "value": -1}, "greater than or equal to 0"),
        (Lab, {"analyte": "ast", "comparator": "<=", "value": 3, "uln_multiple": 3}, "a value or a multiple of ULN"),
        (Lab, {"analyte": "sodium", "comparator": ">=", "value": 130}, "Input should be 'anc'"),
        (PriorTherapy, {"requirement": "required", "therapy": "Trastuzumab"}, "therapy is lower case"),
        (PriorTherapy, {"requirement": "allowed", "therapy": "surgery"}, "'required' or 'excluded'"),
    ],
)
def test_validators_reject_what_the_contract_forbids(model, fields, message):
    with pytest.raises(ValidationError, match=message):
        model(**fields, evidence=EVIDENCE)


def test_evidence_offsets_must_span_the_quote():
    with pytest.raises(ValidationError, match="must equal the quote's length"):
        Evidence(criterion_id="inc-1", quote="ECOG 0-1", start=0, end=5)


@pytest.mark.parametrize("nct_id", ["NCT1", "NCT\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18", "NCT\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668"])
def test_trial_rejects_an_invalid_nct_id(nct_id):  # full-width and Arabic-Indic digits are not ASCII digits
    with pytest.raises(ValidationError, match="String should match pattern"):
        Trial.model_validate({"nct_id": nct_id, "source": {}, "trial": {}, "eligibility_text": ""})


@pytest.mark.parametrize("options, name", [([], "record.md"), (["--patient"], "patient.md")])
def test_the_field_reference_in_docs_is_in_sync_with_the_models(options, name):
    result = CliRunner().invoke(main, ["schema", *options, "--format", "markdown"])
    assert result.exit_code == 0
    assert (SCHEMA_FILE.parents[1] / "docs" / name).read_text() == result.stdout, f"run: eligex schema {' '.join(options)} --format markdown > docs/{name}"


def test_the_field_reference_names_and_describes_every_property_of_every_model():
    reference = CliRunner().invoke(main, ["schema", "--format", "markdown"]).stdout
    for name, model in record_json_schema()["$defs"].items():
        assert f"## {name}\n" in reference
        for field in model.get("properties", {}):
            [row] = [line for line in reference.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0].splitlines()
                     if line.startswith(f"| `{field}` |")]  # fmt: skip
            assert not row.endswith("|  |"), f"{name}.{field} has no description"


@pytest.mark.parametrize("options", [["--patient"], ["--format", "markdown"]])
def test_check_is_refused_where_it_would_check_nothing_or_the_wrong_file(options):
    result = CliRunner().invoke(main, ["schema", "--check", *options])
    assert result.exit_code == 2 and "--check" in result.output and "out of date" not in result.output
