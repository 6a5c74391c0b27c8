"""Ages and performance status found in real criteria (ctgov-2026 trials.jsonl, normalised), checked by hand."""

from __future__ import annotations

import pytest

from extract.rules import ages, performance
from conftest import found, make_criterion

AGES = [
    ("Age ≥ 18 years at the time of informed consent", "inclusion", [("min_age_years", 18)]),
    ("Patients must be ≥ 18 years of age.", "inclusion", [("min_age_years", 18)]),
    ("Between 18 and 85 years of age, inclusive", "inclusion", [("min_age_years", 18), ("max_age_years", 85)]),
    ("Age 18 years or older", "inclusion", [("min_age_years", 18)]),
    ("Age >= 18 years and < 50 years", "inclusion", [("min_age_years", 18), ("max_age_years", 50)]),
    ("Ages: 18-70", "inclusion", [("min_age_years", 18), ("max_age_years", 70)]),
    ("Participants must be >= 2 years of age", "inclusion", [("min_age_years", 2)]),
    ("Participant must be at least 6 months of age and less than 21 years of age at the time of enrollment", "inclusion",
     [("min_age_years", 0.5), ("max_age_years", 21)]),
    # exclusions restated: under 18 excludes, so the minimum is 18
    ("Subject is under 18 years of age", "exclusion", [("min_age_years", 18)]),
    ("Patients who are under 18 years of age are not eligible", "exclusion", [("min_age_years", 18)]),
    ("Age <18 years", "exclusion", [("min_age_years", 18)]),
    # not ages
    ("Life expectancy ≥ 3 months;", "inclusion", []),
    ("treated with Androgen Deprivation Therapy for the first time within 6 months prior to the enrolment visit, or", "inclusion", []),
    ("Karnofsky >= 50 for participants > 16 years of age and Lansky >= 50 for participants =< 16 years of age.", "inclusion", []),
]

PERFORMANCE = [
    ("ECOG performance status ≤2 (Karnofsky ≥60%, see Appendix A)", "inclusion", [("ECOG", 0, 2), ("KARNOFSKY", 60, None)]),
    ("Eastern Cooperative Oncology Group (ECOG) performance status of 0, 1, or 2", "inclusion", [("ECOG", 0, 2)]),
    ("Karnofsky or Lansky performance status of ≥ 70", "inclusion", [("KARNOFSKY", 70, None), ("LANSKY", 70, None)]),
    ("ECOG performance status of 0 or 1 or Karnofsky score 80-100.", "inclusion", [("ECOG", 0, 1), ("KARNOFSKY", 80, None)]),
    ("Zubrod performance status 0-2", "inclusion", [("ECOG", 0, 2)]),
    ("Eastern Cooperative Oncology Group (ECOG) performance status of 2 or lower", "inclusion", [("ECOG", 0, 2)]),
    ("ECOG performance status <= 1", "inclusion", [("ECOG", 0, 1)]),
    # "=<" is one comparator, not "=" then "<"
    ("Eastern Cooperative Oncology Group (ECOG) =< 2", "inclusion", [("ECOG", 0, 2)]),
    ("Eastern Cooperative Oncology Group (ECOG) performance status =< 2 (or Karnofsky >= 60%)", "inclusion",
     [("ECOG", 0, 2), ("KARNOFSKY", 60, None)]),
    ("Eastern Cooperative Oncology Group performance status (ECOG PS) score from 0 to 1.", "inclusion", [("ECOG", 0, 1)]),
    # a value for some cohorts only is not labelled
    ("Have an Eastern Cooperative Oncology Group (ECOG) performance status of 0 or 1 for Cohorts A1, A2, B3, and B5\n\n"
     "  * Less than or equal to 2 for Cohorts B1, B2, B4, and C1", "inclusion", []),
    ("Lansky score >= 50 (for children)", "inclusion", [("LANSKY", 50, None)]),
    (
        "Performance status: Patients must have a performance status corresponding to ECOG scores of 0, 1, or 2. Use "
        "Karnofsky ≥ 50% for patients > 16 years of age and Lansky ≥50% for patients ≤16 years of age.",
        "inclusion",
        [("ECOG", 0, 2), ("KARNOFSKY", 50, None), ("LANSKY", 50, None)],
    ),
    # an exclusion restated as what the patient must meet
    (
        "Low performance score: For MAC: Karnofsky Performance Score (KPS) < 70 percent, For NMA/RIC: <60 percent",
        "exclusion",
        [("KARNOFSKY", 70, None)],
    ),
    ("Life expectancy >= 3 months", "inclusion", []),
]


@pytest.mark.parametrize("text, kind, expected", AGES)
def test_ages_in_real_criteria(text: str, kind: str, expected: list) -> None:
    # the field names which limit: the one thing `found` leaves out
    limits = [(field, item["value"]) for field, item in ages.find(make_criterion(text, kind))]
    assert limits == expected
    found(ages.find, text, kind)  # every quote lies in its criterion


@pytest.mark.parametrize("text, kind, expected", PERFORMANCE)
def test_performance_status_in_real_criteria(text: str, kind: str, expected: list) -> None:
    scores = [(i["scale"], i["min"], i["max"]) for i in found(performance.find, text, kind, "performance_status")]
    assert sorted(scores, key=str) == sorted(expected, key=str)


def test_an_excluded_ecog_is_restated() -> None:
    items = list(performance.find(make_criterion("ECOG >= 2", "exclusion")))
    assert [(i["scale"], i["min"], i["max"]) for _, i in items] == [("ECOG", 0, 1)]
