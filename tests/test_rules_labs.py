"""Lab thresholds found in real criteria (ctgov-2026 trials.jsonl, normalised), checked by hand."""

from __future__ import annotations

import pytest

from extract.rules import labs
from conftest import found

# (text, kind, [(analyte, comparator, value, unit, uln_multiple, condition), ...])
CASES = [
    ("Platelet count ≥ 75,000/mcL (obtained ≤ 14 days prior to registration)", "inclusion",
     [("platelets", ">=", 75000, "/uL", None, None)]),
    ("QTcF interval >480 msec at screening.", "exclusion", [("qtc", "<=", 480, "ms", None, None)]),
    (
        "LVEF ≤ 50% and/or abnormalities observed during baseline ECG and Echocardiogram investigations that are "
        "considered as clinically significant by the investigator.",
        "exclusion",
        [("lvef", ">", 50, "%", None, None)],
    ),
    (
        "Left ventricular ejection fraction less than 45% by Multigated Acquisition Scan or echocardiogram (or "
        "significantly below the lower limit of normal for the specific test).",
        "exclusion",
        [("lvef", ">=", 45, "%", None, None)],
    ),
    (
        "Total bilirubin less than or equal to 2.0 mg/dL, except in patients with Gilbert s Syndrome, who must have a "
        "total bilirubin < 3.0 mg/dL.",
        "inclusion",
        [("total_bilirubin", "<=", 2, "mg/dL", None, None), ("total_bilirubin", "<", 3, "mg/dL", None, "Gilbert s Syndrome")],
    ),
    (
        "Serum creatinine =< 1.5 times the institutional upper limit of normal (ULN) or calculated creatinine clearance "
        "(Cockcroft-Gault formula) of > 45 mL/min",
        "inclusion",
        [("creatinine", "<=", None, None, 1.5, None), ("creatinine_clearance", ">", 45, "mL/min", None, None)],
    ),
    (
        "AST & ALT ≤ 2.5 x ULN; if patient has liver metastases ≤ 5.0 x ULN",
        "inclusion",
        [
            ("ast", "<=", None, None, 2.5, None),
            ("alt", "<=", None, None, 2.5, None),
            ("ast", "<=", None, None, 5, "patient has liver metastases"),
            ("alt", "<=", None, None, 5, "patient has liver metastases"),
        ],
    ),
    ("Absolute neutrophil count greater than 1000/mm3 without the support of filgrastim", "inclusion",
     [("anc", ">", 1000, "/mm3", None, None)]),
    ("Hemoglobin greater than or equal to 10 mg/dL and platelet count > 75,000/mm(3)", "inclusion",
     [("hemoglobin", ">=", 10, "mg/dL", None, None), ("platelets", ">", 75000, "/mm3", None, None)]),
    (
        "International normalized ratio (INR)/prothrombin time (PT) and activated partial thromboplastin time (aPTT) =< "
        "1.5 x ULN (within 14 days before randomization/enrollment)",
        "inclusion",
        [("inr", "<=", None, None, 1.5, None), ("pt", "<=", None, None, 1.5, None), ("aptt", "<=", None, None, 1.5, None)],
    ),
    # sub-bullets under an "adequate" lead-in: the numbers, not the "adequate" item
    (
        "Adequate hematological function defined by:\n\n  * absolute neutrophil count (ANC) >= 1.0 x 10(9)/L,\n"
        "  * transfusion-independent platelet count >= 100 x 10(9)/L,\n"
        "  * Hgb >= 9 g/ dL (patients who have received <= 2 PRBC transfusions within 48 hours are eligible)",
        "inclusion",
        [("anc", ">=", 1, "x10^9/L", None, None), ("platelets", ">=", 100, "x10^9/L", None, None),
         ("hemoglobin", ">=", 9, "g/dL", None, None)],
    ),
    ("Adequate organ function", "inclusion", [("organ_function", None, None, None, None, None)]),
    # "unless X, in which case": the exception conditions what follows it, not the threshold before it
    (
        "Aspartate aminotransferase (AST) (Serum Glutamic Oxaloacetic Transaminase (SGOT)) / Alanine aminotransferase (ALT) "
        "(Serum Glutamic Pyruvate Transaminase (SGPT)) < 2.5 x institutional upper limit of normal unless liver metastases "
        "are present in which case, they must be < 5x ULN",
        "inclusion",
        [("ast", "<", None, None, 2.5, None), ("alt", "<", None, None, 2.5, None),
         ("ast", "<", None, None, 5, "liver metastases"), ("alt", "<", None, None, 5, "liver metastases")],
    ),
    ("ALT and AST ≤3.0 x ULN, unless clearly due to disease involvement", "inclusion",
     [("alt", "<=", None, None, 3, None), ("ast", "<=", None, None, 3, None)]),
    (
        "Absolute neutrophil count > 1.0x109/L unless due to marrow involvement by lymphoma in which case ANC must be >0.5x109/L",
        "inclusion",
        [("anc", ">", 1, "x10^9/L", None, None), ("anc", ">", 0.5, "x10^9/L", None, "marrow involvement by lymphoma")],
    ),
    # a condition that is itself a lab threshold; an analyte named inside it is not a requirement
    (
        "Total bilirubin =< 1.5 x upper limit of normal (ULN) OR direct bilirubin =< ULN for patients with total bilirubin "
        "levels > 1.5 × ULN (within 14 days prior to registration)",
        "inclusion",
        [("total_bilirubin", "<=", None, None, 1.5, None),
         ("direct_bilirubin", "<=", None, None, 1, "total bilirubin levels > 1.5 × ULN")],
    ),
    ("Creatinine not above ULN, or creatinine clearance >50 mL/min/1.73 m^2 for participants with creatinine levels above "
     "institutional normal.", "inclusion",
     [("creatinine", "<=", None, None, 1, None),
      ("creatinine_clearance", ">", 50, "mL/min/1.73m2", None, "creatinine levels above institutional normal")]),
    ("d. Total bilirubin ≤ 1.5 × ULN and < 2 mg/dL; OR total bilirubin >1.5 × ULN with indirect bilirubin < 1.5 × ULN;",
     "inclusion", [("total_bilirubin", "<=", None, None, 1.5, None), ("total_bilirubin", "<", 2, "mg/dL", None, None)]),
    # long wording before the number, multiples of "institutional normal limits", subgroups in parentheses
    ("Patients must have creatinine clearance estimated using the Cockcroft-Gault equation of >51 mL/min", "inclusion",
     [("creatinine_clearance", ">", 51, "mL/min", None, None)]),
    ("Total bilirubin < 2 times institutional normal limits", "inclusion", [("total_bilirubin", "<", None, None, 2, None)]),
    ("Has a QT interval corrected by Fridericia's formula (QTcF) prolongation to >470 msec (female subjects) or >450 msec "
     "(male subjects) based on average of the Screening triplicate12-lead ECG.", "exclusion",
     [("qtc", "<=", 470, "ms", None, "female subjects"), ("qtc", "<=", 450, "ms", None, "male subjects")]),
    ("castrate level of serum testosterone (< 50 ng/dL or < 1.7 nmol/L)", "inclusion",
     [("testosterone", "<", 50, "ng/dL", None, None)]),
    ("Liver transaminases (ASTs/ALTs) < 2.5 × ULN; < 5 × ULN if liver metastases are present", "inclusion",
     [("ast", "<", None, None, 2.5, None), ("alt", "<", None, None, 2.5, None),
      ("ast", "<", None, None, 5, "liver metastases are present"), ("alt", "<", None, None, 5, "liver metastases are present")]),
    ("Patients on warfarin must have an INR ≤ 3.0", "inclusion", [("inr", "<=", 3, None, None, "warfarin")]),
    ("Total bilirubin ≤ 1.5 mg/dl (excluding Gilbert's disease)", "inclusion", [("total_bilirubin", "<=", 1.5, "mg/dL", None, None)]),
    ("Platelet Count (PLT) ≥ 100,000 per mm3", "inclusion", [("platelets", ">=", 100000, "/mm3", None, None)]),
    # "within normal limits" of a floor-only analyte states no upper side; LLN beside a number adds nothing
    ("Left ventricular ejection fraction (LVEF) must be within institutional limits of normal as assessed by echocardiogram",
     "inclusion", [("lvef", None, None, None, None, None)]),
    ("Left Ventricular Ejection Fraction ≥ 45% or lower limit of normal.", "inclusion", [("lvef", ">=", 45, "%", None, None)]),
    # "adequate" items: more kinds, and none when the numbers follow in other criteria
    ("Adequate bone marrow reserve, hepatic, renal and coagulation function.", "inclusion",
     [("hematologic_function", None, None, None, None, None), ("hepatic_function", None, None, None, None, None),
      ("renal_function", None, None, None, None, None)]),
    ("Organ function: Must have adequate organ and bone marrow function as defined by the following parameters:", "inclusion", []),
    ("Must have adequate laboratory parameters.", "inclusion", [("organ_function", None, None, None, None, None)]),
    # not canonical labs, or not thresholds
    (
        "Following curative resection patients must have a CEA within normal limits. If elevated prior to resection, it "
        "must return to normal within 21 days post surgery and prior to randomization.",
        "inclusion",
        [],
    ),
    ("Life expectancy ≥ 3 months;", "inclusion", []),
]


def _facts(text: str, kind: str) -> list[tuple]:
    items = found(labs.find, text, kind, "labs")
    return [(i["analyte"], i["comparator"], i["value"], i["unit"], i["uln_multiple"], i["condition"]) for i in items]


@pytest.mark.parametrize("text, kind, expected", CASES)
def test_labs_in_real_criteria(text: str, kind: str, expected: list) -> None:
    assert sorted(_facts(text, kind), key=str) == sorted(expected, key=str)


def test_conditions_and_written_forms() -> None:
    assert _facts("AST/ALT <= 2.5 x ULN (<= 5 x ULN if liver metastases)", "inclusion") == [
        ("ast", "<=", None, None, 2.5, None),
        ("alt", "<=", None, None, 2.5, None),
        ("ast", "<=", None, None, 5, "liver metastases"),
        ("alt", "<=", None, None, 5, "liver metastases"),
    ]
    assert _facts("Bilirubin within normal limits", "inclusion") == [("total_bilirubin", "<=", None, None, 1, None)]
    # one threshold in two units is one item
    assert _facts("ANC >= 1,500/mm^3 (1.5 x 10^9/L)", "inclusion") == [("anc", ">=", 1500, "/mm3", None, None)]
