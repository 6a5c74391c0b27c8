"""The rules backend's biomarker finder, on real criteria from ../shared/data (ctgov-2026, normalised).

Each case is a criterion as segmentation cuts it, and every rule the finder must yield:
(requirement, [(marker, status, alteration, variant, method, value), ...]). Hand-checked against
GUIDE.md's conventions; an empty list means nothing may be found.
"""

from __future__ import annotations

import pytest

from extract.rules import biomarkers
from conftest import found, make_criterion

CASES = [
    # NCT06119581 exc-1
    ('Have a documented additional validated targetable oncogenic driver mutation or alteration in genes such as epidermal growth factor receptor (EGFR), anaplastic lymphoma kinase (ALK), BRAF (V600E), human epidermal growth factor receptor 2 (HER2), MET (exon 14), ROS1, rearranged during transfection (RET), or neurotrophic tyrosine receptor kinase (NTRK)1/2/3.', 'exclusion', [('excluded', [('EGFR', 'positive', None, None, None, None), ('ALK', 'positive', 'mutation', None, None, None), ('BRAF', 'positive', 'mutation', 'V600E', None, None), ('ERBB2', 'positive', 'mutation', None, None, None), ('MET', 'positive', 'mutation', 'exon 14', None, None), ('ROS1', 'positive', None, None, None, None), ('RET', 'positive', None, None, None, None), ('NTRK1', 'positive', None, None, None, None), ('NTRK2', 'positive', None, None, None, None), ('NTRK3', 'positive', None, None, None, None)])]),
    # NCT04486833 exc-3
    ('Other genetic characteristics (such as ALK, ROS, BRAF V600E mutations) which make them a candidate for treatment with other approved targeted therapies.', 'exclusion', [('excluded', [('ALK', 'positive', 'mutation', None, None, None), ('ROS1', 'positive', 'mutation', None, None, None), ('BRAF', 'positive', 'mutation', 'V600E', None, None)])]),
    # NCT04741997 inc-3
    ('Melanoma must have a BRAFV600 mutation (using a CLIA-validated assay), either stage III (B/C/D) or Stage IV (AJCC 8th edition).', 'inclusion', [('required', [('BRAF', 'positive', 'mutation', 'V600', None, None)])]),
    # NCT05863195 exc-5
    ('Patient must not have microsatellite instability-high (MSI-H) colorectal cancer.', 'exclusion', [('excluded', [('MSI', 'positive', None, None, None, None)])]),
    # NCT02332668 inc-5
    ('Advanced melanoma or PD-L1-positive advanced, relapsed, or refractory solid tumor or lymphoma', 'inclusion', []),
    # NCT05035836 inc-6
    ('HER2+ BC as defined by American Society of Clinical Oncology-College of American Pathologists (ASCO-CAP) guidelines.31 Patients may have ER+ or ER- negative disease, as defined by ASCO-CAP guidelines.', 'inclusion', [('required', [('ERBB2', 'positive', None, None, None, None)])]),
    # NCT05879978 exc-1
    ('Previous treatment with T-cell-engager (TcE) or cell therapies targeting DLL3. Other DLL3 targeting agents (like RovaT) are allowed only if DLL3 positivity is documented after completion of treatment with DLL3 targeting agent in post-treatment biopsy.', 'exclusion', []),
    # NCT04038502 inc-8
    ('Results of previous standard DNA testing, or previous research testing, which confirms RAD51B, RAD51C, RAD51D, or RAD54L mutations (see Introduction, Section 2 for study design and previous research on targeted therapy) from primary, metastatic tumor or circulating tumor DNA, or pathogenic/likely pathogenic germline variant as assessed by a CLIA certified laboratory level assay for DNA sequencing.', 'inclusion', [('required', [('RAD51B', 'positive', 'mutation', None, None, None), ('RAD51C', 'positive', 'mutation', None, None, None), ('RAD51D', 'positive', 'mutation', None, None, None), ('RAD54L', 'positive', 'mutation', None, None, None)])]),
    # NCT05614739 inc-1
    ('Have solid tumor cancer with an FGFR3 pathway alteration on molecular testing in tumor or blood sample that is deemed as actionable\n\n  * Cohort A1: Presence of an alteration in FGFR3 or its ligands\n  * Cohort A2, B2, B3, and B5: Histological diagnosis of urothelial cancer (UC) that is locally advanced or metastatic with a qualifying FGFR3 genetic alteration\n  * Cohorts B1 and B4: Histological diagnosis of urothelial cancer that is locally advanced or metastatic\n  * Cohort C1: Must have histological diagnosis of a non-urothelial solid tumor malignancy that is locally advanced or metastatic with a qualifying FGFR3 genetic alteration', 'inclusion', [('required', [('FGFR3', 'positive', None, None, None, None)])]),
    # NCT06561386 exc-3
    ('Participants with known BRAFV600E mutations, that are sensitive to available targeted inhibitor therapy; participants with known activating rearranged during transfection (RET) mutations or neurotrophic tyrosine receptor kinase (NTRK) fusion gene alterations are excluded. Participants with unknown or indeterminate BRAF mutation, activating RET mutations or NTRK fusion gene alterations are eligible.', 'exclusion', [('excluded', [('BRAF', 'positive', 'mutation', 'V600E', None, None)]), ('excluded', [('RET', 'positive', 'mutation', None, None, None), ('NTRK1', 'positive', 'fusion', None, None, None), ('NTRK2', 'positive', 'fusion', None, None, None), ('NTRK3', 'positive', 'fusion', None, None, None)])]),
    # NCT03093116 inc-19
    ('Subjects with advanced solid tumors harboring ROS1, NTRK1, NTRK2, or NTRK3 rearrangement will be assigned into 6 distinct expansion (EXP) cohorts provided all inclusion and exclusion criteria are met.\n\n   i. EXP-1: ROS1 TKI-naïve ROS1+ NSCLC ii. EXP-2: 1 Prior ROS1 TKI and 1 Platinum based chemo ROS1+ NSCLC iii. EXP-3: 2 Prior ROS1 TKIs ROS1+ NSCLC (No Chemo or IO) iv. EXP-4: 1 Prior ROS1 TKI ROS1+ NSCLC (No Chemo or IO) v. EXP-5: TRK TKI-naïve NTRK+ solid tumors vi. EXP-6: TRK TKI-pretreated NTRK+ solid tumors', 'inclusion', [('required', [('ROS1', 'positive', 'fusion', None, None, None), ('NTRK1', 'positive', 'fusion', None, None, None), ('NTRK2', 'positive', 'fusion', None, None, None), ('NTRK3', 'positive', 'fusion', None, None, None)])]),
    # NCT04314401 inc-11
    ('NCI PDMR INCLUSION CRITERIA: Patients with CRC who are 40 years old or younger at time of collection irrespective of mismatch repair deficient (dMMR) or microsatellite instability-high (MSI-H) status', 'inclusion', []),
    # NCT06840483 inc-1
    ('Archival or fresh tumor tissue comprised of TNBC or HR+/HER2-negative invasive breast cancer available for NECTIN4 gene amplification testing.', 'inclusion', [('required', [('ESR1', 'negative', 'expression', None, None, None), ('PGR', 'negative', 'expression', None, None, None), ('ERBB2', 'negative', None, None, None, None), ('ESR1', 'positive', 'expression', None, None, None), ('PGR', 'positive', 'expression', None, None, None)])]),
    # NCT06312176 inc-1
    ('Has unresectable locally advanced or metastatic centrally-confirmed hormone receptor positive (HR+)/human epidermal growth factor receptor 2 negative (HER2-) breast cancer', 'inclusion', [('required', [('ESR1', 'positive', 'expression', None, None, None), ('PGR', 'positive', 'expression', None, None, None)]), ('required', [('ERBB2', 'negative', None, None, None, None)]), ('required', [('ERBB2', 'negative', None, None, None, None)])]),
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
    return [(i["requirement"], [tuple(t.values()) for t in i["any_of"]]) for i in found(biomarkers.find, text, kind)]


@pytest.mark.parametrize(("text", "kind", "expected"), CASES)
def test_real_criteria(text: str, kind: str, expected: list) -> None:
    assert _rules(text, kind) == expected


def test_every_quote_lies_in_its_criterion() -> None:
    for text, kind, _ in CASES:
        found(biomarkers.find, text, kind, "biomarkers")


def test_her2_definition_is_one_rule_with_two_tests() -> None:
    # SCHEMA.md's own example (not a registry criterion): the definition in parentheses gives the tests.
    text = "HER2-positive (IHC 3+ or ISH amplified)"
    [(field, item)] = list(biomarkers.find(make_criterion(text)))
    assert item["evidence"]["quote"] == text
    assert [tuple(t.values()) for t in item["any_of"]] == [
        ("ERBB2", "positive", "overexpression", None, "IHC", "3+"),
        ("ERBB2", "positive", "amplification", None, "ISH", None),
    ]


RECALL_CASES = [
    # NCT07237100 inc-1: a gene the vocabulary now names
    ('Patients with unresectable or metastatic melanoma with an NF1 mutation; Variance of NF1 of unknown/ uncertain significance will not be eligible; The genetic analysis for somatic mutations must be performed in a lab that has obtained CLIA certification.', 'inclusion', [('required', [('NF1', 'positive', 'mutation', None, None, None)])]),
    # NCT06726148 inc-5
    ('Histologically and/or cytologically confirmed diagnosis of locally advanced or metastatic cancer with a CCNE1 amplification.', 'inclusion', [('required', [('CCNE1', 'positive', 'amplification', None, None, None)])]),
    # NCT06691035 inc-1 (first sentence): "hormone positive" is HR-positive
    ('Participants must have histologically or cytologically confirmed diagnosis of hormone positive HER2 negative metastatic breast cancer per ASCO/CAP criteria', 'inclusion', [('required', [('ESR1', 'positive', 'expression', None, None, None), ('PGR', 'positive', 'expression', None, None, None)]), ('required', [('ERBB2', 'negative', None, None, None, None)])]),
    # NCT05671510 exc-4: "alterations in any of the following genes: ..." gives every gene listed its status
    ('Having documented actionable mutations or genomic alterations in any of the following genes: EGFR, ALK, ROS1, HER2, MET, BRAF, RET or NTRK;', 'exclusion', [('excluded', [(m, 'positive', None, None, None, None) for m in ('EGFR', 'ALK', 'ROS1', 'ERBB2', 'MET', 'BRAF', 'RET', 'NTRK1', 'NTRK2', 'NTRK3')])]),
]


@pytest.mark.parametrize(("text", "kind", "expected"), RECALL_CASES)
def test_recall_cases(text: str, kind: str, expected: list) -> None:
    assert _rules(text, kind) == expected


# Symbols that are also clinical words (HGNC: "CR" names three genes; CR1, RP2, PI3, CD4 are genes too) count
# only in a biomarker context; the same words as markers do (real criteria, ../shared/data/ctgov-2026).
VOCABULARY_CASES = [
    # NCT05797831: a response, not a marker
    ("Subjects with advanced or recurrent disease must have completed a single line of up to 6 cycles of "
     "taxane-platinum based chemo and achieved a CR or PR per RECIST V1.1", "inclusion", []),
    # NCT01962636: remissions numbered, not complement receptors
    ("Lymphoplasmacytic Lymphoma, Mantle-Cell Lymphoma, Prolymphocytic Leukemia are eligible after initial therapy in "
     "CR1+ or PR1+.", "inclusion", []),
    # NCT04005690: a cell count
    ("CD4 counts >= 350 mm^3", "inclusion", []),
    # NCT03516617: a drug's target
    ("Prior exposure to ibrutinib or to a BCR inhibitor (e.g. Btk or PI3 kinase or Syk inhibitors) or a BCL-2 "
     "inhibitor (e.g. venetoclax)", "exclusion", []),
    # NCT06623110: RP2 is the study drug here
    ("WOCBP and men should plan to use an adequate method to avoid pregnancy for 90 days after the last dose of RP2.",
     "inclusion", []),
    # NCT02945579: PR as the progesterone receptor
    ("ER and/or PR positive, HER2 negative", "inclusion",
     [("required", [("ESR1", "positive", "expression", None, None, None), ("PGR", "positive", "expression", None, None, None)]),
      ("required", [("ERBB2", "negative", None, None, None, None)])]),
    # NCT04262466: a gene no curated list names, from HGNC
    ("PRAME positive tumor", "inclusion", [("required", [("PRAME", "positive", None, None, None, None)])]),
    # GUIDE's wording, not a registry criterion: a fusion named by both genes, the 3' gene its marker
    ("NSCLC with an EML4-ALK fusion", "inclusion", [("required", [("ALK", "positive", "fusion", "EML4::ALK", None, None)])]),
    ("Ph+ ALL", "inclusion", [("required", [("ABL1", "positive", "fusion", "BCR::ABL1", None, None)])]),
]


@pytest.mark.parametrize(("text", "kind", "expected"), VOCABULARY_CASES)
def test_vocabulary_cases(text: str, kind: str, expected: list) -> None:
    assert _rules(text, kind) == expected


def _rules_of(*criteria: tuple[str, str]) -> list[tuple]:
    """The biomarker rules the whole rules backend makes of several criteria, in order."""
    from extract.rules import extract_eligibility

    made = [make_criterion(text, kind, number) for number, (text, kind) in enumerate(criteria, start=1)]
    return [
        (rule["requirement"], [(t["marker"], t["status"], t["alteration"], t["method"], t["value"]) for t in rule["any_of"]])
        for rule in extract_eligibility(made)["biomarkers"]
    ]


def test_a_status_defined_in_criteria_of_its_own_is_one_rule_of_alternatives() -> None:
    # NCT06450314: the definition's tests become the alternatives of the inclusion rule, not rules of their own
    rules = _rules_of(
        ("locally advanced inoperable or metastatic histologically-proven HER2-positive breast cancer", "inclusion"),
        ("HER2-positive is defined as HER2 3+ immunohistochemical overexpression", "inclusion"),
        ("HER2-positive is defined as...the presence of HER2 amplification, according to ASCO-CAP guidelines", "inclusion"),
    )
    assert rules == [
        ("required", [("ERBB2", "positive", "overexpression", "IHC", "3+"), ("ERBB2", "positive", "amplification", None, None)])
    ]


def test_a_criterion_that_is_no_definition_stays_its_own_rule() -> None:
    rules = _rules_of(
        ("HER2-positive breast cancer", "inclusion"),
        ("HER2 amplification confirmed by ISH", "inclusion"),
    )
    assert len(rules) == 2
    assert biomarkers.defined_marker(make_criterion("HER2-positive is defined as IHC 3+")) == "ERBB2"
    assert biomarkers.defined_marker(make_criterion("HER2-positive breast cancer, as defined by ASCO")) is None
