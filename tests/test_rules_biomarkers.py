"""The rules backend's biomarker finder, on real criteria from ../shared/data (ctgov-2026, normalised).

Each case is a criterion as segmentation cuts it, and every rule the finder must yield:
(requirement, [(marker, status, alteration, variant, method, value), ...]). Hand-checked against
GUIDE.md's conventions; an empty list means nothing may be found.
"""

from __future__ import annotations

import pytest

from extract.rules import biomarkers
from conftest import make_criterion

CASES = [
    # NCT04802759 exc-75
    ('Known HER2-positive breast cancer', 'exclusion', [('excluded', [('ERBB2', 'positive', None, None, None, None)])]),
    # NCT06016738 inc-2
    ('ER+, HER2- locally advanced or metastatic breast cancer that is not amenable to curative therapy.', 'inclusion', [('required', [('ESR1', 'positive', 'expression', None, None, None)]), ('required', [('ERBB2', 'negative', None, None, None, None)])]),
    # NCT02476786 inc-2
    ('Disease must be ER+ and HER2-.', 'inclusion', [('required', [('ESR1', 'positive', 'expression', None, None, None)]), ('required', [('ERBB2', 'negative', None, None, None, None)])]),
    # NCT06625515 inc-4
    ('BRCA1 or BRCA2 deficient, HER2 negative metastatic breast cancer', 'inclusion', [('required', [('BRCA1', 'positive', None, None, None, None), ('BRCA2', 'positive', None, None, None, None)]), ('required', [('ERBB2', 'negative', None, None, None, None)])]),
    # NCT05853575 exc-1
    ('Have had previous treatment with a drug that targets KRAS G12C.', 'exclusion', []),
    # NCT05253651 exc-3
    ('Previous treatment with anti-HER2 therapy', 'exclusion', []),
    # NCT06973564 inc-4
    ('Patients must have KRAS alterations.', 'inclusion', [('required', [('KRAS', 'positive', None, None, None, None)])]),
    # NCT06007937 inc-4
    ('ALK fusion identified by next generation sequencing (NGS) or IHC on material obtained from tumor or plasma', 'inclusion', [('required', [('ALK', 'positive', 'fusion', None, 'NGS', None)])]),
    # NCT05984602 exc-5
    ('Known microsatellite instability-high (MSI-H) or mismatch repair-deficient pancreatic cancer', 'exclusion', [('excluded', [('MSI', 'positive', None, None, None, None)]), ('excluded', [('MSI', 'positive', None, None, None, None)])]),
    # NCT05544929 inc-1
    ('Non-small cell lung cancer with historic PD-L1 ≥ 1%, as determined locally using a clinically accepted assay. Patients must have experienced benefit from previous anti-PD(L)1-containing therapy for at least 4 months based on investigator-assessed disease stability or response prior to developing documented disease progression. Patients must have also received prior platinum-based chemotherapy, either in combination or in sequence with anti-PD-(L)1, unless patient was ineligible to receive such treatment.', 'inclusion', [('required', [('CD274', 'positive', 'expression', None, None, '>= 1%')])]),
    # NCT03909282 inc-5
    ('Estrogen receptor positive or negative, progesterone receptor positive or negative DCIS; HER2 positive, negative or unknown DCIS is allowed.', 'inclusion', []),
    # NCT06552260 inc-6
    ('Tumor is documented as IDH1/2 wildtype by direct DNA sequencing, provided that it is performed in a CLIA/CAP-certified laboratory.', 'inclusion', [('required', [('IDH1', 'negative', 'mutation', None, 'NGS', None)]), ('required', [('IDH2', 'negative', 'mutation', None, 'NGS', None)])]),
    # NCT05894239 exc-4
    ('Disease progression within 6 months of receiving any HER2-targeted therapy', 'exclusion', []),
    # NCT04606446 inc-12
    ('Female participants with ER+HER2- advanced or metastatic breast cancer considered to be of childbearing potential (or have tubal ligations only) must be willing to undergo medically induced menopause by treatment with the approved LHRH agonist such as goserelin, leuprolide or equivalent agents to induce chemical menopause.', 'inclusion', []),
    # NCT05458219 inc-32
    ('Confirmed * CLDN18.2-positive by histopathological examination.', 'inclusion', [('required', [('CLDN18', 'positive', 'expression', None, None, None)])]),
    # NCT03093116 inc-14
    ('Subject must have a documented ROS1 or NTRK1-3 gene fusion determined by tissue-based local testing using either:\n\n   1. a next-generation sequencing (NGS) or quantitative polymerase chain reaction (qPCR) test will be accepted to determine molecular eligibility.\n\n      • Adequate tumor tissue needs to be sent to the Sponsor designated central diagnostic laboratory for retrospective confirmation by a central diagnostic laboratory test selected by the Sponsor.\n\n      OR\n   2. a fluorescence in situ hybridization (FISH) test AND prospective confirmation of fusion status by a central diagnostic laboratory test selected by the Sponsor PRIOR to enrollment will be accepted to determine molecular eligibility.\n\n      * Adequate tumor tissue must be sent to the Sponsor designated central diagnostic laboratory for prospective confirmation by a central diagnostic laboratory test selected by the Sponsor PRIOR to enrollment.', 'inclusion', [('required', [('ROS1', 'positive', 'fusion', None, None, None), ('NTRK1', 'positive', 'fusion', None, None, None), ('NTRK2', 'positive', 'fusion', None, None, None), ('NTRK3', 'positive', 'fusion', None, None, None)])]),
    # NCT05566223 inc-2
    ('Confirmed histologic diagnosis of either PD-L1 negative or positive metastatic non-small cell lung cancer (NSCLC)', 'inclusion', []),
    # NCT05868629 inc-1
    ('Study participant with a BRAF V600E mutation-positive solid tumor as confirmed by a local laboratory test;', 'inclusion', [('required', [('BRAF', 'positive', 'mutation', 'V600E', None, None)])]),
    # NCT06902376 inc-7
    ('Must have BRAF V600E mutation-negative tumor, as determined by BRAF V600E immunohistochemistry on tumor tissue or genetic/molecular testing of the tumor.', 'inclusion', [('required', [('BRAF', 'negative', 'mutation', 'V600E', None, None)])]),
    # NCT07221357 inc-3
    ('Participant must have no known presence of the gene that encodes the protein B-Raf (BRAF) V600E mutation per local testing.', 'inclusion', [('excluded', [('BRAF', 'positive', 'mutation', 'V600E', None, None)])]),
    # NCT03851445 inc-7
    ('Patients with known EGFR sensitizing mutations, EGFR T790M mutation, ALK gene fusion, ROS 1 gene rearrangement, or BRAF V600E mutation are not eligible unless they have progressed following all standard of care targeted therapy. EGFR/ALK/ROS/BRAF testing is not required prior to Step 1 registration, as it is included in the Foundation One testing for screening/pre-screening.', 'inclusion', [('excluded', [('EGFR', 'positive', 'mutation', None, None, None)]), ('excluded', [('EGFR', 'positive', 'mutation', 'T790M', None, None)]), ('excluded', [('ALK', 'positive', 'fusion', None, None, None)]), ('excluded', [('ROS1', 'positive', 'fusion', None, None, None), ('BRAF', 'positive', 'mutation', 'V600E', None, None)])]),
    # NCT04093167 inc-3
    ('Patients must have a PD-L1 test result from a certified laboratory indicating PD-L1 expression Tumour Proportion Score (TPS) ≥ 50%. Patients with lower PD-L1 TPS scores treated with single agent pembrolizumab consistent with local guidelines and regulatory approvals may be eligible following discussion with CCTG.', 'inclusion', [('required', [('CD274', 'positive', 'expression', None, None, 'Tumour Proportion Score (TPS) >= 50%')])]),
    # NCT05267626 inc-4
    ('NSCLC: Unresectable locally advanced or metastatic PD-L1-positive (tumor proportion score [TPS] ≥ 1%) NSCLC not harboring an activating EGFR mutation or ALK rearrangement and has progressed during or following treatment with an anti-PDx with or without platinum-based chemotherapy', 'inclusion', [('required', [('CD274', 'positive', 'expression', None, None, None)]), ('excluded', [('EGFR', 'positive', 'mutation', None, None, None), ('ALK', 'positive', 'fusion', None, None, None)])]),
    # NCT05076760 inc-9
    ('Patients with activating EGFR mutation or ALK rearrangement which is expected to be responsive to available tyrosine kinase inhibitor therapy, must have been previously treated with an applicable tyrosine kinase inhibitor.', 'inclusion', []),
]


def _rules(text: str, kind: str) -> list[tuple[str, list[tuple]]]:
    return [
        (item["requirement"], [tuple(test.values()) for test in item["any_of"]])
        for _, item in biomarkers.find(make_criterion(text, kind))
    ]


@pytest.mark.parametrize(("text", "kind", "expected"), CASES)
def test_real_criteria(text: str, kind: str, expected: list) -> None:
    assert _rules(text, kind) == expected


def test_every_quote_lies_in_its_criterion() -> None:
    for text, kind, _ in CASES:
        criterion = make_criterion(text, kind)
        for field, item in biomarkers.find(criterion):
            assert field == "biomarkers"
            assert item["evidence"]["criterion_id"] == criterion.id
            assert item["evidence"]["quote"] in text


def test_her2_definition_is_one_rule_with_two_tests() -> None:
    # SCHEMA.md's own example (not a registry criterion): the definition in parentheses gives the tests.
    text = "HER2-positive (IHC 3+ or ISH amplified)"
    [(field, item)] = list(biomarkers.find(make_criterion(text)))
    assert item["evidence"]["quote"] == text
    assert [tuple(t.values()) for t in item["any_of"]] == [
        ("ERBB2", "positive", "overexpression", None, "IHC", "3+"),
        ("ERBB2", "positive", "amplification", None, "ISH", None),
    ]
