"""Marker language on synthetic sentences: lists and their stems, full-width punctuation, cytogenetics
and fusions (evals/GUIDE.md), and drug targets that are not biomarkers. Both sides of each pattern."""

from __future__ import annotations

import pytest

from conftest import found
from extract.rules import biomarkers


def _rules(text: str, kind: str = "inclusion") -> list[tuple]:
    return [
        (rule["requirement"], [(t["marker"], t["status"], t["alteration"], t["variant"]) for t in rule["any_of"]])
        for rule in found(biomarkers.find, text, kind, "biomarkers")
    ]


MUTATED = lambda *genes: [(gene, "positive", "mutation", None) for gene in genes]  # noqa: E731


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mutations in any of the following genes: BRCA1, BRCA2, ATM, PALB2", [("required", MUTATED("BRCA1", "BRCA2", "ATM", "PALB2"))]),
        ("Deleterious mutation in one of the following genes:\n* BRCA1\n* BRCA2\n* ATM", [("required", MUTATED("BRCA1", "BRCA2", "ATM"))]),
        ("BRCA1/2 mutation", [("required", MUTATED("BRCA1", "BRCA2"))]),
        ("KRAS/NRAS wild-type", [("required", [("KRAS", "negative", "mutation", None)]), ("required", [("NRAS", "negative", "mutation", None)])]),
        ("EGFR、ALK、ROS1 mutation-positive NSCLC", [("required", MUTATED("EGFR", "ALK", "ROS1"))]),
        ("EGFR，ALK，or ROS1 mutation", [("required", MUTATED("EGFR", "ALK", "ROS1"))]),
        ("EGFR、ALK 或 ROS1 阳性", [("required", [("EGFR", "positive", None, None), ("ALK", "positive", None, None), ("ROS1", "positive", None, None)])]),
        # a comma between two findings ends the list, full-width or not
        ("BRCA1 mutation，HER2-negative", [("required", MUTATED("BRCA1")), ("required", [("ERBB2", "negative", None, None)])]),
        # a list stem with no genes is no rule
        ("Mutations in any of the following genes:", []),
        # a panel named before its genes: the genes are the alternatives, the panel no rule beside them
        ("Pathogenic mutation in one of the DNA mismatch repair (MMR) genes (i.e., MLH1, MSH2, or PMS2)", [("required", MUTATED("MLH1", "MSH2", "PMS2"))]),
        ("Mutation in homologous recombination repair genes BRCA1, BRCA2 or ATM", [("required", MUTATED("BRCA1", "BRCA2", "ATM"))]),
        ("Positive for at least one target antigen (CD19 and/or CD22)", [("required", [("CD19", "positive", "expression", None), ("CD22", "positive", "expression", None)])]),
        # alternatives that are no members of a panel stay alternatives
        ("TNBC or HR-positive", [("required", [("ESR1", "negative", "expression", None), ("PGR", "negative", "expression", None), ("ERBB2", "negative", None, None), ("ESR1", "positive", "expression", None), ("PGR", "positive", "expression", None)])]),
    ],
)
def test_lists_and_their_stems(text: str, expected: list) -> None:
    assert _rules(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Philadelphia chromosome-positive ALL", [("ABL1", "positive", "fusion", "BCR::ABL1")]),
        ("Ph+ ALL", [("ABL1", "positive", "fusion", "BCR::ABL1")]),
        ("BCR::ABL1-positive CML", [("ABL1", "positive", "fusion", "BCR::ABL1")]),
        ("t(9;22) positive", [("ABL1", "positive", "fusion", "BCR::ABL1")]),
        ("inv(16) AML", [("MYH11", "positive", "fusion", "CBFB::MYH11")]),
        ("t(11;14) positive myeloma", [("CCND1", "positive", "fusion", "t(11;14)")]),
        ("KMT2A rearrangement", [("KMT2A", "positive", "fusion", None)]),
        ("1p/19q codeletion", [("CODEL-1P19Q", "positive", "deletion", None)]),
        ("IDH-mutant, 1p/19q-codeleted oligodendroglioma", None),  # checked below
        ("del(17p)", [("TP53", "positive", "deletion", None)]),
        ("del(5q) MDS", [("DEL-5Q", "positive", "deletion", None)]),
        ("Monosomy 7", [("MONOSOMY-7", "positive", "deletion", None)]),
        ("Trisomy 8", [("TRISOMY-8", "positive", "amplification", None)]),
        ("Complex karyotype", [("COMPLEX-KARYOTYPE", "positive", "other", None)]),
        ("MRD-positive", [("MRD", "positive", None, None)]),
        ("MRD negative complete remission", [("MRD", "negative", None, None)]),
    ],
)
def test_cytogenetics_and_fusions_are_markers(text: str, expected) -> None:
    rules = _rules(text)
    if expected is None:
        assert ("required", [("CODEL-1P19Q", "positive", "deletion", None)]) in rules
    else:
        assert rules == [("required", expected)]


@pytest.mark.parametrize(
    "text",
    [
        "This sequencing test is distinct from FISH studies for del(17p)",  # a test, not a finding
        "Complete remission (CR) or CR with incomplete recovery",  # clinical words, not markers
    ],
)
def test_no_cytogenetic_finding_stated(text: str) -> None:
    assert _rules(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "No prior KRAS G12C inhibitor",
        "Failed PD-1/PD-L1 inhibitors",
        "Prior treatment with a KRAS G12C inhibitor is not allowed",
        "Prior anti-HER2 therapy",
        "Patients in the HR-deficiency cohort",
        "Progression on an EGFR TKI",
    ],
)
def test_a_drug_target_is_not_a_biomarker(text: str) -> None:
    assert _rules(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("KRAS G12C mutation", [("required", [("KRAS", "positive", "mutation", "G12C")])]),
        ("PD-L1 positive", [("required", [("CD274", "positive", "expression", None)])]),
        ("HR-deficient tumour", [("required", [("HRD", "positive", None, None)])]),
        ("HR-positive breast cancer", [("required", [("ESR1", "positive", "expression", None), ("PGR", "positive", "expression", None)])]),
    ],
)
def test_the_same_names_as_findings_are_biomarkers(text: str, expected: list) -> None:
    assert _rules(text) == expected
