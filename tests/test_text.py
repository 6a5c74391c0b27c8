"""Normalisation and segmentation: hand-checked on real records, and the offset invariant on all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extract.sources import parse_document
from extract.text import normalise, segment

from conftest import SHARED_DATA, shared_trials


@pytest.fixture(scope="module")
def trials_by_id():
    return {trial.nct_id: trial for trial in shared_trials()}


def test_normalise_unescapes_markdown_and_unifies_newlines():
    raw = "Inclusion Criteria:\r\n\r\n* ANC \\>= 1.5 x 10\\^9/L\r\n* Age \\< 75 \\[years\\]"
    assert normalise(raw) == "Inclusion Criteria:\n\n* ANC >= 1.5 x 10^9/L\n* Age < 75 [years]"


def test_normalise_removes_the_common_indent_of_classic_xml_textblocks():
    raw = "\n        Inclusion Criteria:\n\n          -  Age 18 or over   \n"
    assert normalise(raw) == "Inclusion Criteria:\n\n  -  Age 18 or over"


def test_every_criterion_of_every_shared_record_is_its_span(trials_by_id):
    assert len(trials_by_id) > 1100
    count = 0
    for trial in trials_by_id.values():
        text = trial.eligibility_text
        for criterion in segment(text):
            assert text[criterion.start : criterion.end] == criterion.text
            assert criterion.text == criterion.text.strip() and criterion.text
            count += 1
    assert count > 20000


def test_ids_are_numbered_per_kind_in_text_order(trials_by_id):
    for trial in trials_by_id.values():
        criteria = segment(trial.eligibility_text)
        for kind, prefix in (("inclusion", "inc"), ("exclusion", "exc")):
            ids = [c.id for c in criteria if c.kind == kind]
            assert ids == [f"{prefix}-{n}" for n in range(1, len(ids) + 1)]
        starts = [c.start for c in criteria]
        assert starts == sorted(starts)


# Hand-checked: (record, [(id, the criterion's text or its beginning ...)]) for the whole record.
HAND_CHECKED = {
    # v2 markdown bullets, lower-case criteria
    "NCT05594173": [
        ("inc-1", "Healthy adults under age 60"),
        ("exc-1", "prior history of swallowing, motor speech"),
        ("exc-2", "history of surgery to the speech"),
        ("exc-3", "Type 1 Diabetes"),
        ("exc-4", "Current use of dentures"),
        ("exc-5", "cognitive communication difficulties"),
        ("exc-6", "known allergies to medical adhesive"),
        ("exc-7", "known allergies to ingredients of the food products used in the experiment ."),
    ],
    # classic XML: "Key Inclusion Criteria", "-" bullets, lines wrapped mid-sentence
    "NCT02260193": [
        ("inc-1", "18 to 79 years inclusive"),
        ("inc-2", "Chronic Kidney Disease (CKD) Stage 5 on chronic hemodialysis for at least 3 months"),
        ("inc-3", "Anemia secondary to CKD treated with erythropoiesis stimulating agent and intravenous\n     iron"),
        ("exc-1", "BMI >44.0 kg/m2"),
        ("exc-2", "Transfusion within 8 weeks prior to Screening"),
        ("exc-3", "ALT or total bilirubin >1.25x ULN"),
        ("exc-4", "Uncontrolled hypertension"),
        ("exc-5", "Class III or IV congestive heart failure"),
        ("exc-6", "Myocardial infarction, acute coronary syndrome, stroke or transient ischemic attack\n     within 6"),
    ],
    # classic XML, numbered, wrapped
    "NCT03840122": [
        ("inc-1", "Patient is over the age of 21"),
        ("inc-2", "Patient is scheduled to undergo a unilateral, primary TKA"),
        ("inc-3", "Patient agrees to participate as a study subject and signs the Informed Consent and\n     Research"),
        ("inc-4", "Patient is able to read and speak English."),
        ("exc-1", "Patient is under the age of 21"),
        ("exc-2", "Patient's primary diagnosis is not osteoarthritis"),
        ("exc-3", "Patient is scheduled to undergo a bilateral TKA surgery"),
        ("exc-4", "Patient is unable to read and speak English"),
    ],
    # classic XML: numbered sub-items kept with their parent criterion
    "NCT00482794": [
        ("inc-1", "Persistent presence of an antiphospholipid antibody, as defined by one or both of the\n"),
        ("inc-2", "Presence of clinical symptoms seen in patients with APS"),
        ("inc-3", "People who have elevated antiphospholipid antibody levels"),
        ("exc-1", "No documented presence of antiphospholipid antibody"),
    ],
    # "-INCLUSION CRITERIA:" heading, numbered with "*" sub-bullets kept with the parent
    "NCT00033137": [
        ("inc-1", "Individuals suspected or known to have phenotype or genotype suggestive of Birt-Hogg-Dube"),
        ("inc-2", "Renal tumor histology consistent with BHD"),
        ("inc-3", "All participants and guardians"),
        ("inc-4", "Participants must be greater than or equal to 2 years of age."),
        ("inc-5", "A relative (related by blood)"),
        ("exc-1", "NONE"),
    ],
    # "Case Inclusion:" / "Control inclusion:" headings, "•" bullets
    "NCT02288676": [
        ("inc-1", "Subjects should have suspected or confirmed cancer of the upper genital tract."),
        ("inc-2", "Participant will undergo surgery for tumour removal."),
        ("inc-3", "Subjects should be scheduled to have a hysterectomy"),
    ],
    # "Part 3 Key Inclusion Criteria:", a preamble line before it
    "NCT03460977": [
        ("inc-1", "Part 1 and Part 2 (Closed for enrollment)."),
        ("inc-2", "Histological or cytological diagnosis of castration resistant prostate cancer."),
        ("inc-3", "Eastern Cooperative Oncology Group (ECOG) Performance Status (PS) of 0-2"),
        ("inc-4", "Adequate bone marrow, renal, and liver function"),
        ("exc-1", "Prior irradiation to >25% of the bone marrow."),
        ("exc-2", "QTcF interval >480 msec at screening."),
        ("exc-3", "Hypertension that cannot be controlled by medications (>150/90 mmHg"),
        ("exc-4", "Known or suspected hypersensitivity to PF 06821497"),
        ("exc-5", "Active inflammatory gastrointestinal disease"),
        ("exc-6", "Current use or anticipated need for food or drugs"),
        ("exc-7", "Prior enzalutamide within the last 4 weeks"),
        ("exc-8", "DDI SUBSTUDY:"),
        ("exc-9", "history of CHF or evidence of ventricular dysfunction"),
        ("exc-10", "fructose intolerance"),
        ("exc-11", "coadministration of CYP3A4 substrates"),
    ],
    # lettered sub-item and numbered items under "Diagnosis" kept with it
    "NCT03810651": [
        ("inc-1", "Less than 30 years of age"),
        ("inc-2", "Diagnosis\n\n  a. Any patient with Wilms tumor"),
        ("inc-3", "The patient is a candidate for external beam radiotherapy"),
        ("exc-1", "Prior radiotherapy to the region of the study cancer"),
        ("exc-2", "Chemotherapy administered for diagnosis of Wilms tumor or CCSK"),
        ("exc-3", "Pregnant or breastfeeding"),
    ],
    # no inclusion heading at all (all inclusion), PDQ labels ("DISEASE CHARACTERISTICS:", "Age")
    "NCT00005095": [
        ("inc-1", "Meets one of the following criteria:"),
        ("inc-2", "Considered to be at increased risk for developing ovarian cancer"),
        ("inc-3", "Undergoing surgery for a gynecologic condition, including any of the following:\n\n    * Diagnosis"),
        ("inc-4", "Between the ages of 18 and 80"),
    ],
    # a lead-in "... the following criteria will be excluded ...:" whose numbered items are criteria
    "NCT05892302": [
        ("inc-1", "Provision of signed and dated informed consent forms."),
        ("inc-2", "Who has a child who is 5-12 years of age"),
        ("inc-3", "Whose child meets criteria for current persistent asthma defined as either:"),
        ("inc-4", "On a long-term controller medication for asthma, or"),
        ("inc-5", "Meet NAEPP guideline requirements for persistent disease:)(35)\n\n      * Asthma symptoms"),
        ("inc-6", "Whose child has had an asthma exacerbation"),
        ("inc-7", "Parent/Caregiver identifies as Mexican American or other Hispanic descent"),
        ("inc-8", "Whose child has clinician diagnosed asthma"),
        ("inc-9", "Access to necessary resources"),
        ("inc-10", "Whose child is not currently participating in another asthma study."),
        ("inc-11", "The parent/caregiver is the primary study participant"),
        # "An individual who meets any of the following criteria will be excluded ...:" is a heading
        ("exc-1", "Unwilling to provide consent for research activities"),
        ("exc-2", "Cognitive inability to provide consent"),
        ("exc-3", "Whose child has evidence of other chronic lung or significant cardiovascular disease"),
        ("exc-4", "Whose child has a history of intubation for asthma"),
    ],
    # "* INCLUSION CRITERIA:" (a bulleted heading), paragraphs separated by blank lines
    "NCT00001465": [
        ("inc-1", "General admission criteria for patients include one or both of the following:"),
        ("inc-2", "Findings on lung biopsy diagnostic of LAM;"),
        ("inc-3", "Findings on chest x-ray and/or chest computed axial tomography consistent with LAM."),
        ("inc-4", "Patients with TSC and pulmonary LAM will be included in the study."),
        ("inc-5", "Normal non-smokers in the control group"),
        ("inc-6", "Normal smokers defined as individuals"),
        ("inc-7", "Pregnant and or nursing women can be included"),
        ("exc-1", "Age less than 16."),
        ("exc-2", "Advanced stage of a pulmonary or a systemic illness"),
        ("exc-3", "Exclusion criteria for patients for the formal exercise study"),
    ],
    # a v2 record with a single criterion
    "NCT03418623": [("inc-1", "Male participants...")],
}


@pytest.mark.parametrize("nct_id", sorted(HAND_CHECKED))
def test_hand_checked_segmentation(trials_by_id, nct_id):
    criteria = segment(trials_by_id[nct_id].eligibility_text)
    expected = HAND_CHECKED[nct_id]
    found = [(c.id, c.text[: len(text)]) for c, (_, text) in zip(criteria, expected)]
    assert found == expected
    assert len(criteria) == len(expected)


def test_cohort_record_keeps_lettered_and_roman_subitems_with_their_parent(trials_by_id):
    criteria = segment(trials_by_id["NCT04291105"].eligibility_text)
    cohorts = next(c for c in criteria if c.text.startswith("Specific by tumor cohorts:"))
    assert "For the HSNCC cohort" in cohorts.text and "For the melanoma cohorts" in cohorts.text
    assert [c.kind for c in criteria].count("inclusion") == 8
    assert criteria[0].text == "Age ≥18 years on day of signing informed consent."


def test_markdown_escapes_are_gone_and_offsets_still_hold(trials_by_id):
    text = trials_by_id["NCT05035836"].eligibility_text
    assert "\\>" not in text and "\\<" not in text
    for criterion in segment(text):
        assert text[criterion.start : criterion.end] == criterion.text


def test_seed_trial_record(trials_by_id, tmp_path):
    seed = Path(__file__).resolve().parents[1] / "evals" / "records" / "NCT06450314.jsonl"
    [parsed] = parse_document(seed.read_bytes(), seed.name)
    criteria = segment(parsed.trial.eligibility_text)
    assert [c.id for c in criteria] == [f"inc-{n}" for n in range(1, 9)]
    assert criteria[1].text == "HER2-positive is defined as HER2 3+ immunohistochemical overexpression"


def test_headings_in_any_case_and_inline():
    text = normalise(
        "INCLUSION CRITERIA\n- Age >= 18\nKey exclusion criteria:\n1) Pregnancy\nexclusion criteria: also prisoners"
    )
    assert [(c.id, c.text) for c in segment(text)] == [
        ("inc-1", "Age >= 18"),
        ("exc-1", "Pregnancy"),
        ("exc-2", "also prisoners"),
    ]


def test_other_protocol_defined_criteria_line_is_a_criterion_not_a_heading():
    text = "Inclusion Criteria:\n\n* Age 18 or over\n* Other protocol-defined Inclusion/Exclusion criteria apply."
    assert [c.text for c in segment(text)][-1] == "Other protocol-defined Inclusion/Exclusion criteria apply."


def test_empty_text_has_no_criteria():
    assert segment(normalise("")) == []
    assert segment(normalise("   \n\n  ")) == []


def test_records_from_the_2026_export_keep_their_criteria_count_stable(trials_by_id):
    # A regression guard on the whole export: segmentation changes show up here as a number to re-check.
    rows = [json.loads(line) for line in (SHARED_DATA / "ctgov-2026" / "trials.jsonl").open()]
    total = sum(len(segment(trials_by_id[r["nct_id"]].eligibility_text)) for r in rows)
    assert 21000 < total < 25000
