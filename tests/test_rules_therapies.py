"""Prior therapies found in real criteria (ctgov-2026 trials.jsonl, normalised), checked by hand."""

from __future__ import annotations

import pytest

from extract.rules import therapies
from conftest import found, make_criterion

# (text, kind, [(requirement, therapy, drugs, min_lines, max_lines), ...])
CASES = [
    # an aside that allows something does not drop the sentence around it
    ("Patient must not have had prior radiation to the liver (prior radiation therapy to the pelvis is acceptable if "
     "completed at least 2 weeks prior to randomization).", "exclusion", [("excluded", "radiotherapy", [], None, None)]),
    ("Phase I Patients who have received prior therapy with an irinotecan-based or temozolomide-based regimen are eligible. "
     "Patients who have received prior therapy with a PARP inhibitor other than talazoparib are eligible.", "inclusion", []),
    ("Prior chemotherapy in the metastatic castration refractory prostate cancer setting is not allowed (taxane-based in "
     "metastatic castration-sensitive disease is allowed)", "exclusion", [("excluded", "chemotherapy", [], None, None)]),
    # criteria for some cohorts only
    ("Patients in cohort 1 will be treatment-naïve in the metastatic setting. Prior treatment with adjuvant chemotherapy is "
     "allowed", "inclusion", []),
    ("Patients with a diagnosis of CLL/SLL and indication for treatment by 2018 iwCLL criteria:\n\n   Cohort 1: Untreated "
     "patients with at least 1 high-risk feature OR ≥65 years of age Cohort 2: Relapsed after and/or refractory to at least "
     "one prior therapy", "inclusion", []),
    # a class with its kinds in parentheses is one item; a therapy after "during" only dates something
    ("Have had any of the following prior to randomization:\n\n  -- Prior systemic therapy (chemotherapy, immunotherapy, "
     "targeted therapy, or biological therapy) for advanced or metastatic NSCLC.", "exclusion",
     [("excluded", "systemic therapy", [], None, None)]),
    ("Patients must not have received an investigational agent during their first line course of chemotherapy", "inclusion",
     [("excluded", "investigational agent", [], None, None)]),
    # wordings and names
    ("No prior treatment for rectal adenocarcinoma", "inclusion", [("excluded", "systemic therapy", [], None, None)]),
    ("Prior RT to the pelvis.", "exclusion", [("excluded", "radiotherapy", [], None, None)]),
    ("Ever used the epidermal growth factor receptor-tyrosine kinase inhibitor (EGFR-TKI) for anti-tumor therapy prior to "
     "enrollment.", "exclusion", [("excluded", "egfr tki", [], None, None)]),
    ("Prior exposure to sotatercept or luspatercept", "exclusion",
     [("excluded", "sotatercept", ["sotatercept"], None, None), ("excluded", "luspatercept", ["luspatercept"], None, None)]),
    ("Prior progression on at least one ARDT (enzalutamide, abiraterone, apalutamide, darolutamide).", "inclusion",
     [("required", "androgen receptor pathway inhibitor", ["enzalutamide", "abiraterone", "apalutamide", "darolutamide"], None, None)]),
    ("Participants must not have had prior treatment with an anti-PD-1, anti-PD-L1, anti-PD-L2, or anti-CTLA-4 antibody, or "
     "other antibody or drug targeting T-cell co-stimulation or checkpoint pathways.", "inclusion",
     [("excluded", "anti-pd-1/pd-l1 therapy", [], None, None), ("excluded", "anti-ctla-4 therapy", [], None, None),
      ("excluded", "immune checkpoint inhibitor", [], None, None)]),
    # an abbreviation the text defines as something else
    ("Intermediate and high risk tumor lysis Richter transformation (RT): previously treated CLL and biopsy-proven Richter "
     "transformation", "inclusion", []),
    ("Prior treatment with PARP inhibitor, FUDR or FTD/TPI", "exclusion",
     [("excluded", "parp inhibitor", [], None, None), ("excluded", "floxuridine", ["floxuridine"], None, None),
      ("excluded", "trifluridine/tipiracil", ["trifluridine/tipiracil"], None, None)]),
    (
        "Has received prior therapy with an anti-PD-1, anti-PD-L1, anti-PD-L2, anti-CTLA4, or anti-Lag-3 antibodies.",
        "exclusion",
        # anti-LAG-3: a class the vocabulary names through its target (class_signals.tsv)
        [("excluded", "anti-pd-1/pd-l1 therapy", [], None, None), ("excluded", "anti-ctla-4 therapy", [], None, None),
         ("excluded", "immune checkpoint inhibitor", [], None, None)],
    ),
    ("Patient must have received prior endocrine therapy with CDK4/6 inhibitor.", "inclusion",
     [("required", "endocrine therapy", [], None, None), ("required", "cdk4/6 inhibitor", [], None, None)]),
    ("Prior allogeneic bone marrow transplantation or solid organ transplant", "exclusion",
     [("excluded", "stem cell transplant", [], None, None)]),
    ("Patients must have received 1-3 prior systemic therapies", "inclusion", [("required", "systemic therapy", [], 1, 3)]),
    ("Participants previously treated with lurbinectedin.", "exclusion", [("excluded", "lurbinectedin", ["lurbinectedin"], None, None)]),
    ("Has not received systemic treatment for locally recurrent unresectable or metastatic breast cancer", "inclusion",
     [("excluded", "systemic therapy", [], None, None)]),
    # "are not eligible" in the exclusions restates the exclusion; it does not flip it
    ("Subjects who have received prior allogeneic stem cell transplant or solid organ transplant are not eligible.", "exclusion",
     [("excluded", "stem cell transplant", [], None, None)]),
    ("Has received prior fulvestrant in the adjuvant, unresectable locally advanced, or metastatic setting", "exclusion",
     [("excluded", "fulvestrant", ["fulvestrant"], None, None)]),
    ("Prior treatment with any PI3K, Akt, or mTOR inhibitor, or any agent whose mechanism of action is to inhibit the "
     "PI3K/Akt/mTOR pathway", "exclusion", [("excluded", "pi3k/akt/mtor inhibitor", [], None, None)]),
    ("Enrolled before or during first line of treatment for metastatic breast cancer. No more than 1 prior line of "
     "therapy in the metastatic setting.", "inclusion", [("required", "systemic therapy", [], None, 1)]),
    ("Has received at least one prior line of therapy with progression or intolerance", "inclusion",
     [("required", "systemic therapy", [], 1, None)]),
    (
        "Must be treatment-naive: Received no prior chemotherapy, immunotherapy, or targeted therapy for the treatment of "
        "CLL, with the exceptions of palliative loco-regional radiotherapy, rituximab for autoimmune conditions, or "
        "corticosteroids for symptoms control",
        "inclusion",
        [("excluded", "chemotherapy", [], None, None), ("excluded", "immunotherapy", [], None, None),
         ("excluded", "targeted therapy", [], None, None)],
    ),
    # washouts, toxicity of prior therapy and allowed therapy are not prior therapies
    ("No major surgery within 28 days prior to dosing", "exclusion", []),
    ("Unresolved clinically significant AEs > Grade 1 from prior anticancer therapy.", "exclusion", []),
    ("Radiation therapy within 21 days; however, if the radiation portal covered ≤ 5% of the bone marrow reserve, the "
     "subject is eligible irrespective of the end date of radiotherapy", "exclusion", []),
    ("treated with Androgen Deprivation Therapy for the first time within 6 months prior to the enrolment visit, or",
     "inclusion", []),
]


def _facts(text: str, kind: str) -> list[tuple]:
    items = found(therapies.find, text, kind, "prior_therapies")
    return [(i["requirement"], i["therapy"], i["drugs"], i["min_lines"], i["max_lines"]) for i in items]


@pytest.mark.parametrize("text, kind, expected", CASES)
def test_prior_therapies_in_real_criteria(text: str, kind: str, expected: list) -> None:
    assert sorted(_facts(text, kind), key=str) == sorted(expected, key=str)


def test_lexicon_classes_and_polarity() -> None:
    assert _facts("Prior anti-HER2 therapy including trastuzumab, pertuzumab and T-DM1", "inclusion") == [
        ("required", "anti-her2 therapy", ["trastuzumab", "pertuzumab", "trastuzumab emtansine"], None, None)
    ]
    assert _facts("Prior treatment with Herceptin, Enhertu or DS-8201", "exclusion") == [
        ("excluded", "trastuzumab", ["trastuzumab"], None, None),
        ("excluded", "trastuzumab deruxtecan", ["trastuzumab deruxtecan"], None, None),
    ]
    assert _facts("No prior CDK4/6 inhibitor", "inclusion") == [("excluded", "cdk4/6 inhibitor", [], None, None)]
    assert _facts("chemotherapy-naive", "inclusion") == [("excluded", "chemotherapy", [], None, None)]
    assert _facts("More than 3 prior regimens", "exclusion") == [("required", "systemic therapy", [], None, 3)]
    assert _facts("No chemotherapy within 21 days of first dose", "exclusion") == []


def test_duration_in_months() -> None:
    [item] = [i for _, i in therapies.find(make_criterion("received at least 2 years of anti-HER2 therapy"))]
    assert (item["therapy"], item["min_duration_months"]) == ("anti-her2 therapy", 24)


# Precision on prior therapies: counts of a class, headings, definitions of a line, cross-references, anaphora.
PRECISION_CASES = [
    # a count of a class named as its noun is a count of lines, not an exposure that excludes
    ("No more than one prior chemotherapy for metastatic disease.", "inclusion", [("required", "chemotherapy", [], None, 1)]),
    ("Has received no more than 1 prior chemotherapy (which includes antibody drug conjugates) for locally advanced or "
     "metastatic breast cancer.", "inclusion", [("required", "chemotherapy", [], None, 1)]),
    # a heading over the criteria that follow
    ("Prior Systemic Therapy Criteria:", "inclusion", []),
    # what counts as a line is a definition, not a requirement
    ("Hormonal therapy alone (i.e., without chemotherapy) will not be counted as a separate line of therapy.", "inclusion", []),
    ("Inability to previously tolerate (240 mg, QD) sotorasib", "exclusion", []),
    # "this chemotherapy" names again a therapy stated before
    ("Patients must have, in the opinion of the investigator, no clinical evidence of disease progression following "
     "completion of this chemotherapy course", "inclusion", []),
    # a class that is part of another class: the ADC is the therapy; before plain chemotherapy it names the kind
    ("Received prior treatment with a topoisomerase I inhibitor-containing ADC.", "exclusion",
     [("excluded", "antibody-drug conjugate", [], None, None)]),
    ("Prior lines of systemic therapy should include an anti-CD20 monoclonal antibody and anthracycline containing "
     "chemotherapy regimen", "inclusion",
     [("required", "systemic therapy", [], None, None), ("required", "anti-cd20 antibody", [], None, None),
      ("required", "anthracycline", [], None, None), ("required", "chemotherapy", [], None, None)]),
    # planned therapy and washout windows are not prior therapies
    ("Participant must be medically and surgically appropriate to undergo neoadjuvant chemotherapy regimen followed by "
     "standard of care local therapy as determined by their treating physician.", "inclusion", []),
    ("Prior anti-cancer or investigational drug treatment within the following time windows:", "exclusion", []),
    # a cross-reference in parentheses states nothing
    ("Results of previous standard DNA testing, or previous research testing, which confirms RAD51B, RAD51C, RAD51D, or "
     "RAD54L mutations (see Introduction, Section 2 for study design and previous research on targeted therapy)", "inclusion", []),
]


@pytest.mark.parametrize("text, kind, expected", PRECISION_CASES)
def test_prior_therapy_precision(text: str, kind: str, expected: list) -> None:
    assert sorted(_facts(text, kind), key=str) == sorted(expected, key=str)


def test_a_class_written_with_a_generic_head_is_that_class_with_its_duration() -> None:
    # NCT06450314 inc-4: one prior anti-HER2 therapy with its drugs, for at least 2 years
    text = (
        "Patient must have received continuous anti-HER2 targeted therapy (including Trastuzumab, Trastuzumab/Pertuzumab, "
        "Trastuzumab-Deruxtecan or T-DM1) treatment for at least 2 years in any line setting"
    )
    (item,) = found(therapies.find, text, "inclusion", "prior_therapies")
    assert (item["therapy"], item["min_duration_months"]) == ("anti-her2 therapy", 24)
    assert item["drugs"] == ["trastuzumab", "pertuzumab", "trastuzumab deruxtecan", "trastuzumab emtansine"]
    assert item["evidence"]["quote"].endswith("for at least 2 years")


def test_a_generic_class_alone_stays_itself() -> None:
    assert _facts("Prior targeted therapy", "inclusion") == [("required", "targeted therapy", [], None, None)]
