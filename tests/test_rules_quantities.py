"""The one threshold grammar (extract/rules/quantities.py) as ages, performance scales, lines of therapy,
durations and labs read it, on synthetic sentences: each wording and its near miss."""

from __future__ import annotations

import pytest

from conftest import found
from extract.rules import ages, labs, performance, therapies
from extract.rules.quantities import comparator, paired_bound


@pytest.mark.parametrize(
    ("written", "canonical"),
    [("≥", ">="), ("＞＝", ">="), ("≧", ">="), ("=<", "<="), ("≦", "<="), ("＜", "<"), ("＞", ">"), ("no more than", "<=")],
)
def test_comparators_written_any_way(written: str, canonical: str) -> None:
    assert comparator(written) == canonical


@pytest.mark.parametrize(
    ("text", "words", "canonical", "expected"),
    [
        ("at least 1 but no more than 3 lines", "no more than 3", "<=", (">=", 1.0)),
        ("a minimum of 2 and a maximum of 5 lines", "a maximum of 5", "<=", (">=", 2.0)),
        (">= 1 line (no more than 3)", ">= 1 line", ">=", ("<=", 3.0)),
        ("≥ 1 line and ≥ 2 cycles", "≥ 1", ">=", None),  # two lower bounds are no pair
        (">= 1 line, no more than 4 weeks ago", ">= 1", ">=", None),  # another quantity's bound
    ],
)
def test_a_bound_and_the_other_end_written_beside_it(text: str, words: str, canonical: str, expected) -> None:
    start = text.index(words)
    paired = paired_bound(text, start, start + len(words), canonical)
    assert (paired[:2] if paired else None) == expected


def _lines(text: str, kind: str = "inclusion") -> list[tuple]:
    return [(i["min_lines"], i["max_lines"]) for i in found(therapies.find, text, kind) if i["therapy"] == "systemic therapy"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Received >= 1 line (no more than 3) of prior systemic therapy", [(1, 3)]),
        ("A minimum of 2 and maximum of 5 prior lines of therapy", [(2, 5)]),
        ("At least 1 but no more than 3 prior lines of therapy", [(1, 3)]),
        ("From 1 to 3 prior lines of therapy", [(1, 3)]),
        ("At least 2 prior lines of therapy", [(2, None)]),
        ("No more than 2 prior lines of therapy", [(None, 2)]),
    ],
)
def test_lines_of_therapy(text: str, expected: list) -> None:
    assert _lines(text) == expected


@pytest.mark.parametrize(
    ("text", "months"),
    [
        ("Prior trastuzumab for at least 2 years", 24),
        ("Prior trastuzumab for at least two years", 24),
        ("Prior trastuzumab for ≥ 6 months", 6),
        ("Prior trastuzumab", None),
    ],
)
def test_durations(text: str, months) -> None:
    (item,) = found(therapies.find, text)
    assert item["min_duration_months"] == months


def _performance(text: str) -> list[tuple]:
    return [(i["scale"], i["min"], i["max"]) for i in found(performance.find, text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ECOG performance status from 0 to 1", [("ECOG", 0, 1)]),
        ("ECOG =< 1", [("ECOG", 0, 1)]),
        ("ECOG ＜ 2", [("ECOG", 0, 1)]),
        ("ECOG performance status of minimum 0 and maximum 1", [("ECOG", 0, 1)]),
        ("ECOG performance status of minimum 1", [("ECOG", 1, 5)]),
        ("Karnofsky ≧ 70%", [("KARNOFSKY", 70, None)]),
    ],
)
def test_performance_scales(text: str, expected: list) -> None:
    assert _performance(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Aged from 18 to 75 years", [("min_age_years", 18), ("max_age_years", 75)]),
        ("Age ≥ 18 and ≤ 75 years", [("min_age_years", 18), ("max_age_years", 75)]),
        ("Age ＞＝ 18 years", [("min_age_years", 18)]),
        ("Life expectancy from 3 to 6 months", []),
    ],
)
def test_ages(text: str, expected: list) -> None:
    assert [(name, item["value"]) for name, item in ages.find(__import__("conftest").make_criterion(text))] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ANC ≥ 1.5 x 10^9/L", ("anc", ">=", 1.5, "x10^9/L")),
        ("Platelets ≥ 100 × 10⁹/L", ("platelets", ">=", 100, "x10^9/L")),
        ("Neutrophils ＞＝1.5×10^9/L", ("anc", ">=", 1.5, "x10^9/L")),
    ],
)
def test_lab_units_with_powers_of_ten(text: str, expected: tuple) -> None:
    (item,) = found(labs.find, text)
    assert (item["analyte"], item["comparator"], item["value"], item["unit"]) == expected
