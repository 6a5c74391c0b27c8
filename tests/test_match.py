"""Patient matching on the structured record: every requirement met, failed, unknown or not assessed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SEED_RECORDS as RECORDS, GoldBackend, gold_record
from extract.backend import Draft, assemble
from extract.text import segment
from extract.match import match, rank, therapy_kinds
from schemas import CohortScope, EligibilityRecord
from schemas.patient import Patient


@pytest.fixture(scope="module")
def seed() -> EligibilityRecord:
    return gold_record("NCT06450314", RECORDS)


def patient(**fields) -> Patient:
    base = {"age_years": 54, "sex": "FEMALE", "cancer": {"name": "breast cancer", "oncotree": "BRCA"},
            "stage": {"group": "IV", "settings": ["metastatic"]},
            "prior_therapies": [{"therapy": "trastuzumab", "setting": "metastatic", "lines": 1, "duration_months": 30}]}  # fmt: skip
    return Patient.model_validate(base | fields)


def outcomes(result, field: str) -> list[str]:
    return [r.outcome for r in result.requirements if r.field == field]


def test_her2_ihc_3_plus_without_an_ish_result_is_enough_for_the_seed_trial(seed):
    result = match(patient(biomarkers=[{"marker": "ERBB2", "status": "positive", "alteration": "overexpression",
                                        "method": "IHC", "value": "3+"}]), seed)  # fmt: skip
    assert outcomes(result, "biomarkers") == ["meets"]
    assert result.verdict != "ineligible"
    [her2] = [r for r in result.requirements if r.field == "biomarkers"]
    assert "do not say" not in her2.reason  # the alternative met is the reason, not the one left open


def test_her2_amplification_alone_is_enough_too(seed):
    result = match(patient(biomarkers=[{"marker": "ERBB2", "status": "positive", "alteration": "amplification",
                                        "method": "ISH"}]), seed)  # fmt: skip
    assert outcomes(result, "biomarkers") == ["meets"]


def test_a_her2_negative_patient_is_ineligible_and_told_why(seed):
    result = match(patient(biomarkers=[{"marker": "ERBB2", "status": "negative"}]), seed)
    assert result.verdict == "ineligible"
    [her2] = [r for r in result.requirements if r.field == "biomarkers"]
    assert her2.outcome == "fails" and "patient ERBB2 negative" in her2.reason and her2.quote


def test_twelve_months_of_trastuzumab_fails_the_two_year_duration(seed):
    short = patient(prior_therapies=[{"therapy": "trastuzumab", "setting": "metastatic", "duration_months": 12}],
                    biomarkers=[{"marker": "ERBB2", "status": "positive"}])  # fmt: skip
    result = match(short, seed)
    [therapy] = [r for r in result.requirements if r.field == "prior_therapies"]
    assert therapy.outcome == "fails" and "at least 24 months" in therapy.reason and "12 months" in therapy.reason
    assert result.verdict == "ineligible"
    long = short.model_copy(update={"prior_therapies": [short.prior_therapies[0].model_copy(update={"duration_months": 24})]})
    assert outcomes(match(long, seed), "prior_therapies") == ["meets"]  # at the threshold


def test_a_drug_counts_for_its_classes():
    assert {"anti-her2 therapy", "targeted therapy", "systemic therapy"} <= therapy_kinds("trastuzumab")
    assert "chemotherapy" in therapy_kinds("paclitaxel") and "chemotherapy" not in therapy_kinds("trastuzumab")


def test_what_the_patient_does_not_say_is_unknown_never_a_fail(seed):
    result = match(Patient(), seed)
    assert "fails" not in {r.outcome for r in result.requirements}
    assert result.verdict == "uncertain"


def test_no_ecog_given_is_unknown_not_fails():
    record = _record_with(performance_status=[{"scale": "ECOG", "min": 0, "max": 1, "evidence": {"quote": "ECOG 0-1"}}])
    assert outcomes(match(Patient(), record), "performance_status") == ["unknown"]
    for value, expected in ((0, "meets"), (1, "meets"), (2, "fails")):
        scored = match(Patient(performance_status=[{"scale": "ECOG", "value": value}]), record)
        assert outcomes(scored, "performance_status") == [expected]


def test_karnofsky_and_ecog_named_together_are_alternatives():
    record = _record_with(performance_status=[
        {"scale": "ECOG", "min": 0, "max": 1, "evidence": {"quote": "ECOG 0-1"}},
        {"scale": "KARNOFSKY", "min": 70, "max": None, "evidence": {"quote": "Karnofsky >= 70"}}])  # fmt: skip
    assert outcomes(match(Patient(performance_status=[{"scale": "KARNOFSKY", "value": 70}]), record), "performance_status") == ["meets"]
    # ECOG not given: the patient may meet it still
    assert outcomes(match(Patient(performance_status=[{"scale": "KARNOFSKY", "value": 60}]), record), "performance_status") == ["unknown"]
    both = [{"scale": "KARNOFSKY", "value": 60}, {"scale": "ECOG", "value": 2}]
    assert outcomes(match(Patient(performance_status=both), record), "performance_status") == ["fails"]


@pytest.mark.parametrize(
    "value, unit, expected",
    [(1.5, "x10^9/L", "meets"), (1.49, "x10^9/L", "fails"), (1500, "/mm3", "meets"), (1200, "/mm3", "fails"),
     (1.6, "mmol/L", "unknown")],
)  # fmt: skip
def test_lab_thresholds_at_and_around_the_limit_with_units_converted(value, unit, expected):
    record = _record_with(labs=[{"analyte": "anc", "comparator": ">=", "value": 1.5, "unit": "x10^9/L",
                                 "evidence": {"quote": "ANC >= 1.5 x 10^9/L"}}])  # fmt: skip
    result = match(Patient(labs=[{"analyte": "anc", "value": value, "unit": unit}]), record)
    [lab] = [r for r in result.requirements if r.field == "labs"]
    assert lab.outcome == expected
    if expected == "fails":
        assert lab.reason.startswith(f"anc {value:g} {unit} < 1.5 x10^9/L")


def test_multiples_of_uln_need_the_patient_s_uln():
    record = _record_with(labs=[
        {"analyte": "ast", "comparator": "<=", "uln_multiple": 2.5, "evidence": {"quote": "AST <= 2.5 x ULN"}},
        {"analyte": "ast", "comparator": "<=", "uln_multiple": 5, "condition": "liver metastases",
         "evidence": {"quote": "<= 5 x ULN if liver metastases"}}])  # fmt: skip
    assert set(outcomes(match(Patient(labs=[{"analyte": "ast", "value": 80}]), record), "labs")) == {"unknown"}
    ok = match(Patient(labs=[{"analyte": "ast", "value": 80, "uln": 40}]), record)
    assert outcomes(ok, "labs") == ["meets", "meets"]
    # 3 x ULN fails the plain limit but meets the one for liver metastases: uncertain, not ineligible
    liver = match(Patient(labs=[{"analyte": "ast", "value": 120, "uln": 40}]), record)
    assert outcomes(liver, "labs") == ["unknown", "meets"] and liver.verdict == "uncertain"


def test_an_excluded_biomarker_and_brain_metastases():
    record = _record_with(
        biomarkers=[{"requirement": "excluded", "any_of": [{"marker": "EGFR", "status": "positive", "alteration": "mutation"},
                                                           {"marker": "ALK", "status": "positive", "alteration": "fusion"}],
                     "evidence": {"quote": "EGFR mutation or ALK rearrangement"}}],
        brain_metastases={"status": "allowed_if_stable", "evidence": {"quote": "untreated brain metastases"}})  # fmt: skip
    egfr = {"marker": "EGFR", "status": "positive", "alteration": "mutation", "variant": "L858R"}
    assert outcomes(match(Patient(biomarkers=[egfr]), record), "biomarkers") == ["fails"]
    negatives = [{"marker": "EGFR", "status": "negative"}, {"marker": "ALK", "status": "negative"}]
    assert outcomes(match(Patient(biomarkers=negatives), record), "biomarkers") == ["meets"]
    assert outcomes(match(Patient(biomarkers=negatives[:1]), record), "biomarkers") == ["unknown"]
    for status, expected in (("none", "meets"), ("stable", "meets"), ("active", "fails")):
        assert outcomes(match(Patient(brain_metastases=status), record), "brain_metastases") == [expected]


def test_her2_low_is_not_her2_positive():
    record = _record_with(biomarkers=[{"requirement": "required", "any_of": [
        {"marker": "ERBB2", "status": "positive", "alteration": "expression", "method": "IHC", "value": "1+ or 2+/ISH-"}],
        "evidence": {"quote": "HER2-low"}}])  # fmt: skip
    three = {"marker": "ERBB2", "status": "positive", "alteration": "expression", "method": "IHC", "value": "3+"}
    two = dict(three, value="2+")
    assert outcomes(match(Patient(biomarkers=[three]), record), "biomarkers") == ["fails"]
    assert outcomes(match(Patient(biomarkers=[two]), record), "biomarkers") == ["meets"]


def test_lines_of_therapy_and_no_more_than():
    record = _record_with(prior_therapies=[
        {"requirement": "required", "therapy": "systemic therapy", "min_lines": 1, "max_lines": 3,
         "evidence": {"quote": "1 to 3 prior lines"}}])  # fmt: skip
    for lines, expected in ((0, "fails"), (1, "meets"), (3, "meets"), (4, "fails")):
        assert outcomes(match(Patient(prior_therapies=[], prior_lines=lines), record), "prior_therapies") == [expected]
    at_most = _record_with(prior_therapies=[{"requirement": "required", "therapy": "chemotherapy", "max_lines": 2,
                                             "evidence": {"quote": "no more than 2 chemotherapy regimens"}}])  # fmt: skip
    assert outcomes(match(Patient(prior_therapies=[]), at_most), "prior_therapies") == ["meets"]
    assert outcomes(match(Patient(), at_most), "prior_therapies") == ["unknown"]


def test_criteria_left_in_other_are_not_assessed_and_do_not_block_eligible():
    record = _record_with()
    result = match(Patient(), record)
    assert outcomes(result, "other") == ["not_assessed"] and result.verdict == "eligible"


def test_ranking_puts_eligible_first_then_uncertain_by_fewest_unknowns():
    ecog = _record_with(performance_status=[{"scale": "ECOG", "min": 0, "max": 1, "evidence": {"quote": "ECOG 0-1"}}])
    results = [match(Patient(), ecog), match(Patient(performance_status=[{"scale": "ECOG", "value": 3}]), ecog),
               match(Patient(), _record_with())]  # fmt: skip
    assert [r.verdict for r in rank(results)] == ["eligible", "uncertain", "ineligible"]


def test_json_output_is_one_object_per_trial_with_counts(seed):
    out = match(patient(), seed).as_dict()
    assert out["nct_id"] == "NCT06450314" and set(out["counts"]) == {"meets", "fails", "unknown", "not_assessed"}
    json.dumps(out)


TEXT = "Inclusion Criteria:\n* ECOG 0-1\n* Karnofsky >= 70\n* ANC >= 1.5 x 10^9/L\n* AST <= 2.5 x ULN\n" \
       "* <= 5 x ULN if liver metastases\n* HER2-low\n* EGFR mutation or ALK rearrangement\n" \
       "* untreated brain metastases\n* 1 to 3 prior lines\n* no more than 2 chemotherapy regimens\n* Signed consent"


def _record_with(**eligibility) -> EligibilityRecord:
    from schemas import Trial

    source = {"registry": "clinicaltrials.gov", "retrieved_at": "2026-01-01T00:00:00Z", "content_sha256": "0" * 64}
    trial = Trial(nct_id="NCT00000001", source=source, trial={}, eligibility_text=TEXT)
    record = assemble(trial, segment(TEXT), Draft(eligibility=eligibility), GoldBackend())
    assert not [w for w in record.extraction.warnings if "dropped" in w]
    return record.model_copy(update={"eligibility": record.eligibility.model_copy(update={
        "other": [o for o in record.eligibility.other if o.text == "Signed consent"]})})  # fmt: skip


# -- the command ---------------------------------------------------------------------------------------


@pytest.fixture
def records_dir(tmp_path, seed) -> Path:
    folder = tmp_path / "structured"
    folder.mkdir()
    (folder / "NCT06450314.json").write_text(seed.model_dump_json())
    (folder / "NCT00000001.json").write_text(_record_with(performance_status=[
        {"scale": "ECOG", "min": 0, "max": 0, "evidence": {"quote": "ECOG 0-1"}}]).model_dump_json())  # fmt: skip
    return folder


def write_patient(tmp_path, **fields) -> str:
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(patient(**fields).model_dump(mode="json") | fields))
    return str(path)


def test_match_reads_records_from_a_folder_and_ranks_them(tmp_path, records_dir):
    from tests.conftest import run

    path = write_patient(tmp_path, performance_status=[{"scale": "ECOG", "value": 1}],
                         biomarkers=[{"marker": "ERBB2", "status": "positive"}])  # fmt: skip
    result = run("match", "--patient", path, "--records", str(records_dir), "--format", "json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["nct_id"], r["verdict"]) for r in lines] == [("NCT06450314", "eligible"), ("NCT00000001", "ineligible")]
    table = run("match", "--patient", path, "--records", str(records_dir))
    assert table.stdout.splitlines()[1].startswith("NCT06450314  eligible")


def test_a_broken_patient_file_is_one_line_naming_the_field(tmp_path, records_dir):
    from tests.conftest import run

    path = tmp_path / "patient.json"
    path.write_text(json.dumps({"performance_status": [{"scale": "WHO", "value": 1}]}))
    result = run("match", "--patient", str(path), "--records", str(records_dir))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: patient file {path}: performance_status.0.scale: ")
    assert len(result.stderr.splitlines()) == 1


def test_the_patient_schema_is_exported_and_describes_every_field():
    from tests.conftest import run

    schema = json.loads(run("schema", "--patient").stdout)
    assert schema["title"] == "Patient"
    undescribed = [name for name, spec in schema["properties"].items() if not spec.get("description")]
    assert undescribed == []


def test_a_requirement_of_one_cohort_only_never_fails_the_trial(seed):
    """`eligibility.cohorts` marks criteria that bind one cohort: failing them leaves the other cohorts open."""
    her2_negative = patient(biomarkers=[{"marker": "ERBB2", "status": "negative"}])
    assert match(her2_negative, seed).verdict == "ineligible"
    [rule] = seed.eligibility.biomarkers
    scoped = seed.model_copy(update={"eligibility": seed.eligibility.model_copy(
        update={"cohorts": [CohortScope(cohort="Cohort A", criterion_ids=[rule.evidence.criterion_id])]})})  # fmt: skip
    result = match(her2_negative, scoped)
    [her2] = [r for r in result.requirements if r.field == "biomarkers"]
    assert her2.outcome == "unknown" and her2.reason.endswith("applies to Cohort A only")
    assert result.verdict == "uncertain"


def test_a_cohort_naming_a_criterion_the_record_lacks_is_not_a_record(seed):
    document = seed.model_dump(mode="json")
    document["eligibility"]["cohorts"] = [{"cohort": "Part 2", "criterion_ids": ["inc-99"]}]
    with pytest.raises(ValueError, match="unknown criteria inc-99"):
        EligibilityRecord.model_validate(document)


def test_match_by_trial_id_from_the_workspace(tmp_path, monkeypatch):
    from conftest import run

    monkeypatch.setenv("ELIGEX_WORKSPACE", str(tmp_path / "ws"))
    assert run("import", str(RECORDS)).exit_code == 0
    assert run("extract", "NCT06450314", "--backend", "rules").exit_code == 0
    path = write_patient(tmp_path, biomarkers=[{"marker": "ERBB2", "status": "negative"}])
    result = run("match", "--patient", path, "nct06450314", "--format", "json")  # ids normalised as everywhere
    assert result.exit_code == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line)["verdict"] == "ineligible"
    missing = run("match", "--patient", path, "NCT06450314", "NCT00000002")
    assert missing.exit_code == 1 and "NCT00000002: no structured record" in missing.stderr
    assert run("match", "--patient", path, "NCT123").exit_code == 2


def test_the_python_api_is_the_command_s_matching(seed):
    import eligex

    profile = {"biomarkers": [{"marker": "ERBB2", "status": "positive", "alteration": "amplification", "method": "ISH"}]}
    result = eligex.match(profile, seed.model_dump(mode="json"))  # dicts are read as a Patient and a record
    assert isinstance(result, eligex.MatchResult)
    assert result.as_dict() == match(Patient.model_validate(profile), seed).as_dict()
    assert [r.nct_id for r in eligex.match_all(Patient.model_validate(profile), [seed])] == ["NCT06450314"]


def test_a_bad_patient_is_an_input_error_naming_the_field(seed):
    """The library's promise: bad input is an InputError (one line), as the CLI says it."""
    import eligex

    for patient in ({"performance_status": [{"scale": "ECOG", "value": "good"}]}, '{"age_years": ', b"[]"):
        with pytest.raises(eligex.InputError, match=r"^patient: .+") as raised:
            eligex.match(patient, seed)
        assert "\n" not in str(raised.value)
    with pytest.raises(eligex.InputError, match="performance_status.0.value"):
        eligex.match({"performance_status": [{"scale": "ECOG", "value": "good"}]}, seed)
