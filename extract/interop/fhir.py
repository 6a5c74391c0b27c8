"""FHIR R5: a trial's record as a ResearchStudy whose `recruitment.eligibility` is an EvidenceVariable.

Each structured requirement is one characteristic of the EvidenceVariable, its `description` the
criterion id and the quote that states it:
- a biomarker rule of several tests is a `definitionByCombination` `any-of` of them; a required
  tumour type among several, and a stage's groups and settings, are `any-of` too;
- an excluded item (a tumour type, a biomarker rule, a prior therapy, brain metastases) has
  `exclude: true`; lab thresholds are already what the patient must meet, as in the record;
- labs are `valueQuantity` with the comparator and the unit (UCUM where the unit is one), a multiple
  of the upper limit of normal a quantity in `x ULN`; ages a `valueRange` in years; ECOG and
  Karnofsky ranges a `valueRange` on their LOINC scores; prior lines `instancesRange`, a minimum
  duration `durationRange`;
- criteria eligex did not structure are the EvidenceVariable's notes, so none is dropped, and so
  are the criteria that apply to one cohort only (`eligibility.cohorts`).

Every trial's resources are validated by `fhir.resources` (its R5 models) before they are written.
"""

from __future__ import annotations

import json
from typing import Any

from fhir.resources.bundle import Bundle

from extract.interop.ctml import oncotree
from schemas import EligibilityRecord

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ONCOTREE = "http://oncotree.mskcc.org"
NCT = "http://clinicaltrials.gov"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PHASE = "http://terminology.hl7.org/CodeSystem/research-study-phase"
GENDER = "http://hl7.org/fhir/administrative-gender"

_PHASES = {"EARLY_PHASE1": "early-phase-1", "PHASE1": "phase-1", "PHASE2": "phase-2", "PHASE3": "phase-3",
           "PHASE4": "phase-4", "NA": "n-a"}  # fmt: skip
_SCALES = {"ECOG": (LOINC, "89247-1", "ECOG Performance Status score"),
           "KARNOFSKY": (LOINC, "89243-0", "Karnofsky Performance Status score")}  # fmt: skip
# Units as records write them -> UCUM codes; a unit not listed is kept as written, without a code.
_UCUM = {"x10^9/L": "10*9/L", "10^9/L": "10*9/L", "x10^3/uL": "10*3/uL", "x10^3/mm3": "10*3/mm3", "/mm3": "/mm3",
         "cells/mm3": "/mm3", "/uL": "/uL", "cells/uL": "/uL", "g/dL": "g/dL", "g/L": "g/L", "mg/dL": "mg/dL",
         "umol/L": "umol/L", "mmol/L": "mmol/L", "mL/min": "mL/min", "mL/min/1.73m2": "mL/min/{1.73_m2}",
         "ms": "ms", "s": "s", "%": "%", "ng/mL": "ng/mL", "ng/dL": "ng/dL", "U/L": "U/L", "IU/L": "[IU]/L",
         "mEq/L": "meq/L", "g/24h": "g/(24.h)"}  # fmt: skip


def document(records: list[EligibilityRecord]) -> bytes:
    """One Bundle (type `collection`) of every record's ResearchStudy and EvidenceVariable (each
    trial's validated by `build`)."""
    entries = [entry for record in records for entry in build(record)["entry"]]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}, ensure_ascii=False).encode() + b"\n"


def build(record: EligibilityRecord) -> dict[str, Any]:
    """The record as a Bundle of its ResearchStudy and EvidenceVariable, validated by the R5 models
    (the Bundle validates every resource it holds as its own resource type)."""
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": f"urn:eligex:ResearchStudy/{record.nct_id}", "resource": research_study(record)},
        {"fullUrl": f"urn:eligex:EvidenceVariable/{_variable_id(record)}", "resource": evidence_variable(record)},
    ]}  # fmt: skip
    Bundle.model_validate(bundle)  # raises pydantic.ValidationError saying what is not FHIR R5
    return bundle


def _variable_id(record: EligibilityRecord) -> str:
    return f"{record.nct_id}-eligibility"


def research_study(record: EligibilityRecord) -> dict[str, Any]:
    trial = record.trial
    phases = [_PHASES[p] for p in trial.phases if p in _PHASES]
    phase = "phase-1-phase-2" if phases == ["phase-1", "phase-2"] else phases[0] if len(phases) == 1 else None
    study: dict[str, Any] = {
        "resourceType": "ResearchStudy",
        "id": record.nct_id,
        "identifier": [{"system": NCT, "value": record.nct_id}],
        "status": "active",
        "recruitment": {"eligibility": {"reference": f"EvidenceVariable/{_variable_id(record)}"}},
    }
    if record.source.url:
        study["url"] = record.source.url
    if trial.title:
        study["title"] = trial.title
    if phase:
        study["phase"] = {"coding": [{"system": PHASE, "code": phase}]}
    if trial.conditions:
        study["condition"] = [{"text": condition} for condition in trial.conditions]
    if trial.overall_status:
        study["progressStatus"] = [{"state": {"text": trial.overall_status}}]
    if trial.enrollment:
        study["recruitment"]["targetNumber"] = trial.enrollment.count
    return study


def evidence_variable(record: EligibilityRecord) -> dict[str, Any]:
    eligibility = record.eligibility
    notes = [f"Not structured by eligex ({o.criterion_id}, {o.kind}): {o.text}" for o in eligibility.other]
    notes += [f"Criteria {', '.join(scope.criterion_ids)} apply to {scope.cohort} only: their characteristics "
              "do not bind every patient." for scope in eligibility.cohorts]  # fmt: skip
    characteristics = [*_ages_and_sex(eligibility), *_cancer_types(eligibility.cancer_types),
                       *map(_biomarker_rule, eligibility.biomarkers), *_stage(eligibility.stage),
                       *map(_performance, eligibility.performance_status), *map(_prior_therapy, eligibility.prior_therapies),
                       *map(_lab, eligibility.labs), *_brain_metastases(eligibility.brain_metastases, notes),
                       *_measurable(eligibility.measurable_disease)]  # fmt: skip
    variable: dict[str, Any] = {
        "resourceType": "EvidenceVariable",
        "id": _variable_id(record),
        "status": "active",
        "title": f"Eligibility of {record.nct_id}",
        "description": "Structured eligibility requirements, each quoting the criterion that states it "
        f"(eligex, {record.extraction.backend} backend, {record.extraction.prompt_version or 'no version'}).",
    }
    if characteristics:
        variable["characteristic"] = characteristics
    if notes:
        variable["note"] = [{"text": note} for note in notes]
    return variable


# -- characteristics -------------------------------------------------------------------------------


def _described(item: Any, words: str) -> str:
    evidence = getattr(item, "evidence", None)
    if evidence is None:
        return words
    return f"{words} ({evidence.criterion_id or 'several criteria'}: \u201c{evidence.quote}\u201d)"


def _text(text: str) -> dict[str, Any]:
    return {"text": text}


def _by_type(type_: dict[str, Any], **value: Any) -> dict[str, Any]:
    return {"definitionByTypeAndValue": {"type": type_, **value}}


def _any_of(characteristics: list[dict[str, Any]]) -> dict[str, Any]:
    return {"definitionByCombination": {"code": "any-of", "characteristic": characteristics}}


def _years(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "years", "system": UCUM, "code": "a"}


def _ages_and_sex(eligibility) -> list[dict[str, Any]]:
    found = []
    low, high = eligibility.min_age_years, eligibility.max_age_years
    if low is not None or high is not None:
        age_range = ({"low": _years(low)} if low is not None else {}) | ({"high": _years(high)} if high is not None else {})
        words = " to ".join(f"{bound:g}" for bound in (low, high) if bound is not None)
        found.append({"description": f"age {'at least ' if high is None else 'at most ' if low is None else ''}{words} years",
                      **_by_type({"coding": [{"system": LOINC, "code": "30525-0", "display": "Age"}]},
                                 valueRange=age_range)})  # fmt: skip
    if eligibility.sex in ("FEMALE", "MALE"):
        code = eligibility.sex.lower()
        found.append({"description": f"{code} only",
                      **_by_type({"coding": [{"system": LOINC, "code": "46098-0", "display": "Sex"}]},
                                 valueCodeableConcept={"coding": [{"system": GENDER, "code": code}]})})  # fmt: skip
    return found


def _cancer(cancer) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": cancer.name}
    if found := oncotree(cancer):
        concept["coding"] = [{"system": ONCOTREE, "code": found[0], "display": found[1]}]
    return {"description": _described(cancer, cancer.name), "definitionCodeableConcept": concept}


def _cancer_types(cancer_types) -> list[dict[str, Any]]:
    required = [_cancer(c) for c in cancer_types if c.requirement == "required"]
    found = []
    if len(required) == 1:
        found.append(required[0])
    elif required:  # the trial's tumour types are alternatives
        found.append({"description": "any of the tumour types", **_any_of(required)})
    found += [{**_cancer(c), "exclude": True} for c in cancer_types if c.requirement == "excluded"]
    return found


def _test_words(test) -> str:
    return " ".join(v for v in (test.marker, test.status, test.alteration, test.variant, test.method, test.value) if v)


def _biomarker_test(test) -> dict[str, Any]:
    finding = " ".join(v for v in (test.marker, test.variant, test.alteration) if v)
    status = {"positive": ("POS", "Positive"), "negative": ("NEG", "Negative")}[test.status]
    value = {"coding": [{"system": INTERPRETATION, "code": status[0], "display": status[1]}],
             "text": f"{test.status}{f' ({test.value})' if test.value else ''}"}  # fmt: skip
    definition: dict[str, Any] = {"type": _text(finding), "valueCodeableConcept": value}
    if test.method:
        definition["method"] = [_text(test.method)]
    return {"description": _test_words(test), "definitionByTypeAndValue": definition}


def _biomarker_rule(rule) -> dict[str, Any]:
    tests = [_biomarker_test(test) for test in rule.any_of]
    words = " or ".join(_test_words(test) for test in rule.any_of)
    characteristic = {**tests[0]} if len(tests) == 1 else _any_of(tests)
    characteristic["description"] = _described(rule, words)
    if rule.requirement == "excluded":
        characteristic["exclude"] = True
    return characteristic


def _stage(stage) -> list[dict[str, Any]]:
    if stage is None or not (stage.groups or stage.settings):
        return []
    options = [_by_type(_text("stage group"), valueCodeableConcept=_text(group)) | {"description": f"stage {group}"}
               for group in stage.groups]  # fmt: skip
    options += [_by_type(_text("disease setting"), valueCodeableConcept=_text(setting.replace("_", " ")))
                | {"description": setting.replace("_", " ")} for setting in stage.settings]  # fmt: skip
    words = " or ".join(option["description"] for option in options)
    characteristic = options[0] if len(options) == 1 else _any_of(options)
    return [{**characteristic, "description": _described(stage, words)}]


def _performance(item) -> dict[str, Any]:
    system, code, display = _SCALES.get(item.scale, (None, None, None))
    type_ = {"coding": [{"system": system, "code": code, "display": display}]} if system else _text(f"{item.scale} score")
    score_range = ({"low": {"value": item.min}} if item.min is not None else {}) | (
        {"high": {"value": item.max}} if item.max is not None else {})
    words = f"{item.scale} {item.min if item.min is not None else ''}-{item.max if item.max is not None else ''}"
    return {"description": _described(item, words.strip("-")), **_by_type(type_, valueRange=score_range)}


def _months(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "months", "system": UCUM, "code": "mo"}


def _prior_therapy(item) -> dict[str, Any]:
    therapy = {"text": item.therapy}
    if item.drugs:
        therapy["text"] += f" ({', '.join(item.drugs)})"
    if item.setting and item.setting != "any":
        therapy["text"] += f", in the {item.setting} setting"
    definition = _by_type(_text("prior therapy"), valueCodeableConcept=therapy)
    characteristic: dict[str, Any] = {"description": _described(item, f"{item.requirement} prior {item.therapy}"),
                                      **definition}  # fmt: skip
    if item.min_lines is not None or item.max_lines is not None:
        characteristic["instancesRange"] = ({"low": {"value": item.min_lines, "unit": "lines"}} if item.min_lines is not None else {}) | (
            {"high": {"value": item.max_lines, "unit": "lines"}} if item.max_lines is not None else {})  # fmt: skip
    if item.min_duration_months is not None:
        characteristic["durationRange"] = {"low": _months(item.min_duration_months)}
    if item.requirement == "excluded":
        characteristic["exclude"] = True
    return characteristic


def _quantity(lab) -> dict[str, Any]:
    if lab.uln_multiple is not None:
        quantity: dict[str, Any] = {"value": lab.uln_multiple, "unit": "x ULN"}
    else:
        quantity = {"value": lab.value}
        if lab.unit:
            quantity["unit"] = lab.unit
            if lab.unit in _UCUM:
                quantity |= {"system": UCUM, "code": _UCUM[lab.unit]}
    return {"comparator": lab.comparator} | quantity


def _lab(lab) -> dict[str, Any]:
    analyte = lab.analyte.replace("_", " ")
    if lab.comparator is None or (lab.value is None and lab.uln_multiple is None):
        words = f"adequate {analyte}" if lab.analyte.endswith("_function") else f"{analyte} within normal limits"
        characteristic = {"description": _described(lab, words), "definitionCodeableConcept": _text(words)}
    else:
        threshold = f"{lab.uln_multiple:g} x ULN" if lab.uln_multiple is not None else f"{lab.value:g} {lab.unit or ''}".strip()
        characteristic = {"description": _described(lab, f"{analyte} {lab.comparator} {threshold}"),
                          **_by_type(_text(analyte), valueQuantity=_quantity(lab))}  # fmt: skip
    if lab.condition:
        characteristic["note"] = [{"text": f"applies only if {lab.condition}"}]
    return characteristic


def _brain_metastases(item, notes: list[str]) -> list[dict[str, Any]]:
    if item is None:
        return []
    if item.status == "allowed":  # no restriction: nothing to state but the fact
        notes.append(f"Brain metastases are allowed ({item.evidence.criterion_id}: \u201c{item.evidence.quote}\u201d).")
        return []
    words = {"excluded": "brain metastases", "allowed_if_stable": "active (untreated, unstable or symptomatic) brain metastases",
             "required": "brain metastases"}[item.status]  # fmt: skip
    characteristic = {"description": _described(item, f"{item.status.replace('_', ' ')}: {words}"),
                      "definitionCodeableConcept": _text(words)}  # fmt: skip
    return [characteristic | ({"exclude": True} if item.status != "required" else {})]


def _measurable(item) -> list[dict[str, Any]]:
    if item is None:
        return []
    words = "measurable disease" if item.required else "measurable or evaluable disease"
    words += f" per {item.standard}" if item.standard else ""
    return [{"description": _described(item, words), "definitionCodeableConcept": _text(words)}]
