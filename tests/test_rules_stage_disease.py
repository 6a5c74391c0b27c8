"""The rules backend's stage, disease-status and cancer-type finders, on real criteria from ../shared/data.

Each case is a criterion as segmentation cuts it (ctgov-2026, normalised) and a summary of everything
the three finders must yield, hand-checked against GUIDE.md: stage as the union of groups and
settings, `brain_metastases` by status, `measurable_disease` as (required, standard), cancer types as
(name, requirement, OncoTree code). An empty summary means nothing may be found.
"""

from __future__ import annotations

import pytest

from conftest import found
from extract.rules import cancer_types, disease, stage

CASES = [
    # NCT05035836 exc-19
    ('Known distant metastatic disease including (CNS) metastases, symptomatic CNS metastases, and leptomeningeal disease (LMD).', 'exclusion', {'brain_metastases': 'excluded'}),
    # NCT06691984 exc-10
    ('Participants with a history of central nervous system (CNS) metastasis. Note: Participants with treated, asymptomatic, and clinically stable dural metastases are eligible.', 'exclusion', {'brain_metastases': 'excluded'}),
    # NCT04797767 exc-2
    ('Known active central nervous system (CNS) involvement with acute myeloid leukemia (AML)', 'exclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT05361720 exc-10
    ('Subjects with central nervous system (CNS) metastases are eligible after they have completed local therapy (e.g., whole brain radiation therapy [WBRT], surgery or radiosurgery)', 'exclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT04486833 inc-9
    ('Asymptomatic brain metastases must meet ALL criteria of the following (a-d):', 'inclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT06561386 exc-4
    ('Participants must not have untreated central nervous system (CNS) metastases.', 'exclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT05607095 exc-3
    ('Patients with symptomatic brain metastases (of any size and any number).\n\n  o Patients with definitively treated brain metastases may be considered for enrollment, if, prior to tumor resection for TIL, the patient is clinically stable for ≥ 14 days, there are no symptomatic brain lesions, and that the patient does not require ongoing corticosteroid treatment.', 'exclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT05977036 inc-5
    ('Presence of RECIST-evaluable disease. Patients with bone-only disease are eligible.', 'inclusion', {'measurable_disease': (False, None)}),
    # NCT04038502 inc-5
    ('mCRPC as defined by serum testosterone < 50 ng/ml (for patients on GnRH analogues or antagonists) and at least one of the following:\n\n   * PSA level of at least 2 ng/ml that has risen on at least 2 successive occasions at least 1 week apart\n   * Evaluable disease progression by modified RECIST 1.1 (Response Evaluation Criteria in Solid Tumors)\n   * Progression of metastatic bone disease on bone scan, CT or MRI with > 2 new lesions', 'inclusion', {'stage': ((), ('metastatic',)), 'cancer_types': [('prostate cancer', 'required', 'PRAD')]}),
    # NCT05673200 inc-12
    ('Patients with treated brain metastases are eligible if there is evidence of measurable extracranial disease, and if follow-up brain imaging 4 weeks after central nervous system (CNS)-direct therapy shows no evidence of progression. Patients with carcinomatous meningitis are not eligible.', 'inclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT05614739 inc-2
    ('Measurability of disease:\n\n  * Cohort A1 and B3: Measurable or non-measurable disease as defined by Response Evaluation Criteria in Solid Tumors v 1.1 (RECIST v1.1)\n  * Cohorts A2, B1, B2, B4, B5, and C1: Measurable disease required as defined by RECIST v1.1', 'inclusion', {}),
    # NCT04741997 inc-3
    ('Melanoma must have a BRAFV600 mutation (using a CLIA-validated assay), either stage III (B/C/D) or Stage IV (AJCC 8th edition).', 'inclusion', {'stage': (('III', 'IV'), ()), 'cancer_types': [('melanoma', 'required', 'MEL')]}),
    # NCT05361720 inc-2
    ('Advanced (not amenable to curative surgery or radiation therapy) or metastatic (American Joint Committee on Cancer [AJCC] stage IV) RCC', 'inclusion', {'stage': (('IV',), ('locally_advanced', 'metastatic', 'unresectable'))}),
    # NCT06119581 inc-1
    ('Histologically or cytologically confirmed NSCLC with Stage IIIB-IIIC or Stage IV disease, not suitable for curative intent radical surgery or radiation therapy.', 'inclusion', {'stage': (('III', 'IV'), ('unresectable',)), 'cancer_types': [('non-small cell lung cancer', 'required', 'NSCLC')]}),
    # NCT06966700 inc-1
    ('Has previously untreated high-risk, early-stage, non-metastatic (M0) breast cancer (BC), defined as any of the following combined primary tumor (T) and regional lymph node (N) staging per AJCC 8th edition criteria as assessed by the investigator based on radiological and/or clinical assessment:', 'inclusion', {'stage': ((), ('early',)), 'cancer_types': [('breast cancer', 'required', 'BRCA')]}),
    # NCT07221357 inc-1
    ('Participant must previously untreated, histologically confirmed recurrent or metastatic colorectal adenocarcinoma, not amenable to curative surgery.', 'inclusion', {'stage': ((), ('metastatic', 'recurrent', 'unresectable')), 'cancer_types': [('colorectal cancer', 'required', 'COADREAD')]}),
    # NCT04169737 inc-1
    ('Patients with a diagnosis of CLL/SLL and indication for treatment by 2018 iwCLL criteria:\n\n   Cohort 1: Untreated patients with at least 1 high-risk feature (del(17p) or mutated TP53 or del(11q) or unmutated IGHV or complex karyotype) OR ≥65 years of age Cohort 2: Relapsed after and/or refractory to at least one prior therapy', 'inclusion', {'cancer_types': [('chronic lymphocytic leukemia', 'required', 'CLLSLL')]}),
    # NCT04797767 inc-2
    ('PHASE I:\n\n  * Newly diagnosed patients presenting for trial entry must have adverse risk disease as per the European LeukemiaNet 2017 guidelines\n  * Relapsed/refractory patients presenting for trial entry must require first or subsequent salvage therapy and have detectable blasts in peripheral blood or >= 5% blasts in bone marrow, as assessed by morphology or multiparameter flow cytometry; or extramedullary myeloid sarcoma, per European LeukemiaNet 2017 guidelines.\n  * These patients are only allowed in the phase 1 portion of the trial', 'inclusion', {}),
    # NCT05851924 inc-2
    ('Individuals with a history of other malignancies are eligible if they have been disease-free for at least 2 years and are deemed by the investigator to be at low risk for recurrence of that malignancy.\n\n   Individuals with the following cancers are eligible if diagnosed and treated within the past 5 years: cervical cancer in situ, DCIS, stage I prostate cancer, and basal cell or squamous cell carcinoma of the skin.', 'inclusion', {}),
    # NCT02596490 inc-1
    ('ALL PHASES, PATIENTS ONLY: Diagnosed with stage IV Non-Small Cell Lung Cancer (NSCLC)', 'inclusion', {'stage': (('IV',), ()), 'cancer_types': [('non-small cell lung cancer', 'required', 'NSCLC')]}),
    # NCT06190951 inc-1
    ('All patients must be either stage III (IIIB, IIIC, IIID) or stage IV (M1a, M1b, M1c) per American Joint Committee on Cancer (AJCC) 8th edition (Amin 2017) and have histologically confirmed cutaneous melanoma that is deemed completely surgically resectable in order to be eligible as described in the protocol.', 'inclusion', {'stage': (('III', 'IV'), ()), 'cancer_types': [('cutaneous melanoma', 'required', 'SKCM')]}),
    # NCT06526819 inc-1
    ('Histologically or cytologically-confirmed cancer that is advanced, recurrent, or metastatic with the following origins, and whose disease progressed on standard therapy and for whom there are no alternative therapies that may confer overall survival benefit.', 'inclusion', {'stage': ((), ('locally_advanced', 'metastatic', 'recurrent'))}),
    # NCT07282912 inc-1
    ('Has a primary diagnosis of AJCC 8th Edition Stage IV esophageal or gastroesophageal adenocarcinoma, gastric adenocarcinoma, pancreatic adenocarcinoma, intrahepatic cholangiocarcinoma, extrahepatic cholangiocarcinoma, gallbladder adenocarcinoma, duodenal, and ampullary adenocarcinoma.\n\n  a) All participants must have confirmed histologic diagnosis of the primary tumor, which may be confirmed retrospectively by a radiologist if necessary.', 'inclusion', {'stage': (('IV',), ()), 'cancer_types': [('gastric cancer', 'required', 'STAD'), ('pancreatic cancer', 'required', 'PAAD'), ('intrahepatic cholangiocarcinoma', 'required', 'IHCH'), ('extrahepatic cholangiocarcinoma', 'required', 'EHCH')]}),
    # NCT05187182 inc-1
    ('Advanced unresectable or metastatic histologically or cytologically confirmed adenocarcinoma or squamous cell carcinoma of the stomach, gastroesophageal junction, or esophagus', 'inclusion', {'stage': ((), ('locally_advanced', 'metastatic', 'unresectable'))}),
    # NCT05766371 inc-1
    ('Histologically confirmed prostate adenocarcinoma that is progressive metastatic castration-resistant prostate cancer by Prostate Cancer Clinical Trials Working Group 3 (PCWG3) criteria at the time of study entry.', 'inclusion', {'stage': ((), ('metastatic',)), 'cancer_types': [('prostate cancer', 'required', 'PRAD')]}),
    # NCT02302742 inc-2
    ('Stages I-IV', 'inclusion', {'stage': (('I', 'II', 'III', 'IV'), ())}),
    # NCT01174121 inc-1
    ('Measurable (per RECIST v1.0 criteria), metastatic cancer of one of the following types: upper or lower gastrointestinal, hepatobiliary, genitourinary, breast, ovarian/endometrial, or endocrine tumors including neuroendocrine tumors. Patients must have at least one lesion that is resectable for TIL generation with minimal morbidity, preferentially using minimal invasive laparoscopic or thoracoscopic surgery for removal of superficial tumor deposit.', 'inclusion', {'stage': ((), ('metastatic',)), 'measurable_disease': (True, 'RECIST')}),
    # NCT04572451 exc-1
    ('Known or suspected CNS metastases, with the following exceptions:\n\n   a) Subjects with controlled brain metastases will be allowed to enroll. Controlled brain metastases are defined as no radiographic progression for at least 4 weeks following 18 radiation and/or surgical treatment at the time of randomization. b) Subjects must be off steroids for at least 2 weeks prior to initiation of investigational therapy c) Subjects with signs or symptoms of brain metastases are not eligible unless brain metastases are ruled out by computed tomography or magnetic resonance imaging.', 'exclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT03586453 exc-4
    ('Uncontrolled central nervous system (CNS) disease, including parenchymal brain metastases, leptomeningeal disease, or spinal cord compression. Patients with asymptomatic untreated brain metastases are eligible. Patients with treated CNS disease will be allowed to enroll provided they have asymptomatic clinically confirmed stable disease with ≥2 weeks since definitive CNS therapy (radiation or surgery) and ≥2 weeks without systemic steroids. Patients may undergo either whole brain radiation or stereotactic radiosurgery prior to study entry.', 'exclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT03743298 exc-7
    ('Uncontrolled brain or spinal cord metastases or active leptomingeal metastatic disease.', 'exclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT05131022 inc-6
    ('Eastern Cooperative Oncology Group (ECOG) performance status of 0 or 1 (0-2 for patients with PCNSL and secondary CNS involvement).', 'inclusion', {}),
    # NCT05579366 inc-12
    ('Measurable disease per the RECIST v1.1 at baseline.', 'inclusion', {'measurable_disease': (True, 'RECIST 1.1')}),
    # NCT03331198 exc-1
    ('Subjects with known active central nervous system (CNS) involvement by malignancy. Those with prior CNS disease that has been effectively treated will be eligible if treatment was completed at least 3 months prior to enrollment with no evidence of symptomatic disease and stable abnormalities on repeat imaging.', 'exclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT03586453 inc-2
    ('Participants must have measurable disease at baseline, defined as at least one lesion that can be accurately measured in at least one dimension (longest diameter to be recorded for non-nodal lesions and short axis for nodal lesions) as ≥20 mm with conventional techniques or as ≥10 mm with spiral CT scan, MRI, or calipers by clinical exam.', 'inclusion', {'measurable_disease': (True, None)}),
    # NCT07262619 inc-5
    ('has measurable disease at baseline according to Response Evaluation Criteria in Solid Tumors version 1.1 (RECIST 1.1) as determined by the PI.', 'inclusion', {'measurable_disease': (True, 'RECIST 1.1')}),
    # NCT06704724 inc-3
    ('Presence of at least 1 measurable lesion based on RECIST version 1.1 that has not been previously irradiated.', 'inclusion', {'measurable_disease': (True, 'RECIST 1.1')}),
    # NCT06710379 exc-1
    ('Active and uncontrolled central nervous system metastases', 'exclusion', {'brain_metastases': 'allowed_if_stable'}),
    # NCT06692738 inc-1
    ('Histologically or cytologically documented squamous NSCLC.', 'inclusion', {'cancer_types': [('non-small cell lung cancer', 'required', 'NSCLC')]}),
    # NCT06402357 inc-1
    ('Patient has elected to undergo focal high intensity focused ultrasound therapy for radiorecurrent prostate cancer', 'inclusion', {}),
    # NCT06860815 inc-1
    ('Documented informed consent of the participant and/or legally authorized representative.\n\n  * Assent, when appropriate, will be obtained per institutional guidelines', 'inclusion', {}),
    # NCT05458219 inc-1
    ('Has signed written Informed Consent Form (ICF), willing and able to comply with protocol-specified visits and related procedures.', 'inclusion', {}),
    # NCT06841354 inc-1
    ('Has locally recurrent unresectable or metastatic TNBC that cannot be treated with curative intent', 'inclusion', {'stage': ((), ('metastatic', 'recurrent', 'unresectable')), 'cancer_types': [('breast cancer', 'required', 'BRCA')]}),
    # NCT06551116 inc-1
    ('Women and men age > 18 years', 'inclusion', {}),
    # NCT05736367 inc-1
    ('Have hormone receptor (HR) positive [estrogen receptor( ER)+/progesterone receptor (PR)+, ER+/PR- or ER-/PR+)/Her2 negative breast cancer previously diagnosed by biopsy.', 'inclusion', {'cancer_types': [('breast cancer', 'required', 'BRCA')]}),
    # NCT04802759 inc-1
    ('Inclusion Criteria for Cohort 1 (Stage 1 [and Stage 2, only where indicated]):', 'inclusion', {}),
]


def _found(text: str, kind: str) -> dict:
    summary: dict = {}
    if stages := found(stage.find, text, kind, "stage"):
        summary["stage"] = (
            tuple(sorted({group for item in stages for group in item["groups"]})),
            tuple(sorted({setting for item in stages for setting in item["settings"]})),
        )
    for item in found(disease.find, text, kind):  # brain metastases have a status; measurable disease does not
        if "status" in item:
            summary["brain_metastases"] = item["status"]
        else:
            summary["measurable_disease"] = (item["required"], item["standard"])
    if types := found(cancer_types.find, text, kind, "cancer_types"):
        summary["cancer_types"] = [(i["name"], i["requirement"], i["code"] and i["code"]["code"]) for i in types]
    return summary


@pytest.mark.parametrize(("text", "kind", "expected"), CASES)
def test_real_criteria(text: str, kind: str, expected: dict) -> None:
    assert _found(text, kind) == expected
