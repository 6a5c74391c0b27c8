"""CTML (MatchMiner's clinical trial markup) for the diagnosis and genomic parts of a record.

The match tree states what CTML can: OncoTree diagnoses (by OncoTree name, `!` for an excluded one),
age and sex, receptor statuses (`her2_status`, `er_status`, `pr_status`), microsatellite status, TMB,
and genomic findings (gene, variant category, protein change, exon, CNV call, fusion partner; `!`
for an absence). The tests of a biomarker rule are an `or`; an excluded rule is the `and` of its
negated tests; rules and the diagnosis are joined by `and`.

What CTML cannot state goes to `notes` (field, criterion id, quote, reason), never dropped silently.
A detail that cannot be stated never makes the tree stricter than the record: a required finding
loses the detail (the tree takes more patients, and the note says what was lost); an absence or a
required alternative that cannot be stated leaves the tree whole (the note says which). Performance
status, stage, prior therapies, labs, brain metastases, measurable disease and the criteria eligex
did not structure have no CTML field and are all notes.

Every document is validated against the project's `schemas/ctml.schema.json` before it is returned.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from schemas import EligibilityRecord

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "ctml.schema.json"
ONCOTREE_NAMES = {row.split("\t")[0]: row.split("\t")[1] for row in
                  (Path(__file__).with_name("oncotree_names.tsv").read_text(encoding="utf-8").splitlines())
                  if row and not row.startswith("#") and not row.startswith("code\t")}  # fmt: skip
_PHASES = {"EARLY_PHASE1": "I", "PHASE1": "I", "PHASE2": "II", "PHASE3": "III", "PHASE4": "IV", "NA": "NA"}
# Receptors CTML states as clinical statuses (Positive / Negative), from IHC or ISH reports.
_RECEPTORS = {"ERBB2": "her2_status", "ESR1": "er_status", "PGR": "pr_status"}
_CATEGORY = {"mutation": "Mutation", "deletion": "Mutation", "other": "Mutation", None: "Any Variation",
             "amplification": "Copy Number Variation", "fusion": "Structural Variation"}  # fmt: skip
_PROTEIN = re.compile(r"^([A-Z])(\d+)([A-Z*]|del|dup|ins[A-Z]*|fs\*?\d*)?$")
_EXON = re.compile(r"^exon (\d+)(?: (deletion|insertion|mutation|skipping))?$", re.IGNORECASE)
_SCORE = re.compile(r"([0-3])\s*\+")
_TMB = re.compile(r"^(>=|>|≥)\s*(\d+(?:\.\d+)?)")


@functools.cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@functools.cache
def _validator():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


def validate(document: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless `document` follows schemas/ctml.schema.json."""
    _validator().validate(document)


def build(record: EligibilityRecord) -> dict[str, Any]:
    """The record's CTML document, validated against schemas/ctml.schema.json."""
    notes: list[dict[str, Any]] = []
    eligibility = _for_every_patient(record.eligibility, notes)
    nodes = [*_clinical(eligibility, notes)]
    for rule in eligibility.biomarkers:
        nodes += _rule(rule, notes)
    _unstated(eligibility, notes)
    trial = record.trial
    step: dict[str, Any] = {"step_internal_id": 1, "step_code": "1"}
    if nodes:
        step["match"] = [nodes[0] if len(nodes) == 1 else {"and": nodes}]
    else:
        notes.append({"field": None, "criterion_id": None, "quote": None,
                      "reason": "nothing in the record can be stated in CTML: the trial has no match tree"})  # fmt: skip
    arms = trial.arm_groups or []
    step["arm"] = [{"arm_code": arm.label, "arm_description": arm.description or arm.label,
                    "arm_internal_id": number, "arm_suspended": "N"} for number, arm in enumerate(arms, 1)]  # fmt: skip
    ctml: dict[str, Any] = {"nct_id": record.nct_id, "protocol_no": record.nct_id}
    if trial.title:
        ctml["long_title"] = trial.title
    phases = [_PHASES[p] for p in trial.phases if p in _PHASES]
    if phases:
        ctml["phase"] = "/".join(phases)
    if trial.overall_status:
        ctml["status"] = trial.overall_status
    ctml["treatment_list"] = {"step": [step]}
    ctml["notes"] = notes
    validate(ctml)
    return ctml


def _note(notes: list[dict[str, Any]], field: str, item: Any, reason: str) -> None:
    evidence = getattr(item, "evidence", None)
    notes.append({"field": field, "criterion_id": evidence.criterion_id if evidence else None,
                  "quote": evidence.quote if evidence else None, "reason": reason})  # fmt: skip


def _for_every_patient(eligibility, notes: list[dict[str, Any]]):
    """The eligibility without the diagnoses and biomarker rules of one cohort's criteria (a match tree
    binds every patient), each of them noted."""
    cohort_of = {criterion_id: scope.cohort for scope in eligibility.cohorts for criterion_id in scope.criterion_ids}
    if not cohort_of:
        return eligibility
    kept: dict[str, list] = {"cancer_types": [], "biomarkers": []}
    for field, items in kept.items():
        for item in getattr(eligibility, field):
            if cohort := cohort_of.get(item.evidence.criterion_id):
                _note(notes, field, item, f"applies to {cohort} only: left out of the match tree")
            else:
                items.append(item)
    return eligibility.model_copy(update=kept)


# -- clinical: diagnosis, age, sex -------------------------------------------------------------------


def oncotree(cancer) -> tuple[str, str] | None:
    """The OncoTree (code, name) of a record's tumour type: its code, else the one the vocabulary gives its name."""
    from extract.rules.vocab import oncotree_code

    code = cancer.code.code if cancer.code and cancer.code.system == "oncotree" else oncotree_code(cancer.name)
    return (code, ONCOTREE_NAMES[code]) if code in ONCOTREE_NAMES else None


def _diagnosis(cancer) -> str | None:
    found = oncotree(cancer)
    return found[1] if found else None


def _clinical(eligibility, notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    nodes = []
    required = [c for c in eligibility.cancer_types if c.requirement == "required"]
    names = [_diagnosis(c) for c in required]
    if required and all(names):  # alternatives: any one of them will do
        options = [{"clinical": {"oncotree_primary_diagnosis": name}} for name in dict.fromkeys(names)]
        nodes.append(options[0] if len(options) == 1 else {"or": options})
    elif required:
        for cancer, name in zip(required, names):
            if not name:
                _note(notes, "cancer_types", cancer, f"{cancer.name}: no OncoTree code, so the required diagnosis is not stated")
    for cancer in (c for c in eligibility.cancer_types if c.requirement == "excluded"):
        if name := _diagnosis(cancer):
            nodes.append({"clinical": {"oncotree_primary_diagnosis": f"!{name}"}})
        else:
            _note(notes, "cancer_types", cancer, f"excluded {cancer.name}: no OncoTree code")
    for bound, comparator in ((eligibility.min_age_years, ">="), (eligibility.max_age_years, "<=")):
        if bound is not None:
            nodes.append({"clinical": {"age_numerical": f"{comparator}{bound:g}"}})
    if eligibility.sex in ("FEMALE", "MALE"):
        nodes.append({"clinical": {"gender": eligibility.sex.capitalize()}})
    return nodes


# -- biomarkers --------------------------------------------------------------------------------------


def _rule(rule, notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A required rule: the `or` of its tests; an excluded one: the `and` of their absences."""
    excluded = rule.requirement == "excluded"
    stated, lost, unstated = [], [], []
    for test in rule.any_of:
        present = (test.status == "positive") != excluded  # what the patient must show: the finding, or its absence
        node, details = _finding(test, present)
        stated.append(node)
        lost += [(test, detail) for detail in details]
        if node is None:
            unstated.append(f"{_words(test)} ({'; '.join(details)})")
    if not excluded and unstated:  # leaving out one alternative would turn patients away
        _note(notes, "biomarkers", rule, f"not stated: {' or '.join(unstated)}; so the whole rule is left out")
        return []
    for unsaid in unstated:  # an absence left out: the tree takes more patients than the record
        _note(notes, "biomarkers", rule, f"must not show {unsaid}: not stated")
    stated_tests = {id(t) for t, n in zip(rule.any_of, stated) if n is not None}
    for test, detail in lost:
        if id(test) in stated_tests:
            _note(notes, "biomarkers", rule, f"{_words(test)}: {detail}")
    nodes = [node for node in stated if node is not None]
    if not nodes:
        return []
    if len(nodes) == 1:
        return nodes
    return [{"and": nodes}] if excluded else [{"or": nodes}]


def _words(test) -> str:
    return " ".join(v for v in (test.marker, test.status, test.alteration, test.variant, test.method, test.value) if v)


def _finding(test, present: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """The CTML node saying the patient shows the test's finding (present) or its absence, and the
    details it leaves out; None (with the reason) when it cannot be said without being stricter."""
    marker, alteration = test.marker, test.alteration
    if marker in _RECEPTORS and alteration in (None, "overexpression", "expression"):  # amplification: genomic
        scores = {int(s) for s in _SCORE.findall(test.value or "")}
        if marker == "ERBB2" and test.status == "positive" and scores and scores != {3}:
            return None, [f"CTML's {_RECEPTORS[marker]} is Positive or Negative: it cannot say HER2 IHC "
                          f"{test.value} (HER2-low)"]  # fmt: skip
        lost = [f"threshold {test.value} not stated"] if test.value and not scores else []
        if lost and not present:
            return None, lost
        return {"clinical": {_RECEPTORS[marker]: "Positive" if present else "Negative"}}, lost
    if marker == "MSI":
        return {"genomic": {"ms_status": "MSI-H" if present else "MSS"}}, []
    if marker == "TMB":
        found = _TMB.match((test.value or "").strip())
        if found and present:
            return {"clinical": {"tmb_numerical": f">={float(found.group(2)):g}"}}, []
        return None, [f"CTML cannot state TMB {test.value or test.status}"]
    if not re.fullmatch(r"[A-Z][A-Z0-9]*", marker) or marker in ("HRD", "MRD"):
        return None, [f"CTML has no field for {marker}"]
    if alteration in ("expression", "overexpression", "loss"):
        return None, [f"CTML's genomic criteria are DNA findings: {marker} {alteration} (a protein test) has none"]
    genomic: dict[str, Any] = {"hugo_symbol": marker}
    lost = [f"method {test.method} not stated"] if test.method else []
    lost += [f"value {test.value} not stated"] if test.value else []
    variant = (test.variant or "").strip()
    if alteration == "deletion" and not variant:
        genomic |= {"variant_category": "Copy Number Variation", "cnv_call": "Homozygous Deletion"}
    elif alteration == "amplification":
        genomic |= {"variant_category": "Copy Number Variation", "cnv_call": "High Amplification"}
    else:
        genomic["variant_category"] = _CATEGORY.get(alteration, "Any Variation")
    if variant:
        detail = _variant(genomic, variant)
        if detail:
            lost.append(detail)
    if not present:
        if lost or "exon" in genomic or "cnv_call" in genomic:
            return None, lost or [f"CTML cannot negate {_words(test)}"]
        if "protein_change" in genomic:
            genomic["protein_change"] = "!" + genomic["protein_change"]
        elif "wildcard_protein_change" in genomic:
            genomic["wildcard_protein_change"] = "!" + genomic["wildcard_protein_change"]
        elif "fusion_partner_hugo_symbol" in genomic:
            genomic["fusion_partner_hugo_symbol"] = "!" + genomic["fusion_partner_hugo_symbol"]
        elif genomic["variant_category"] == "Any Variation":
            genomic = {"hugo_symbol": marker, "wildtype": True}
        else:
            genomic["variant_category"] = "!" + genomic["variant_category"]
    return {"genomic": genomic}, lost


def _variant(genomic: dict[str, Any], variant: str) -> str | None:
    """Put the variant into `genomic`; what cannot be put is returned as a lost detail."""
    if found := _PROTEIN.match(variant):
        key = "protein_change" if found.group(3) else "wildcard_protein_change"
        genomic[key] = f"p.{variant}"
        genomic["variant_category"] = "Mutation"
        return None
    if found := _EXON.match(variant):
        genomic["exon"] = int(found.group(1))
        genomic["variant_category"] = "Mutation"
        kind = (found.group(2) or "").lower()
        if kind in ("deletion", "insertion"):
            genomic["variant_classification"] = "In_Frame_Del" if kind == "deletion" else "In_Frame_Ins"
            return None
        return f"exon {found.group(1)} {kind} stated as any mutation in exon {found.group(1)}" if kind == "skipping" else None
    if "::" in variant:
        genes = [g for g in variant.split("::") if g != genomic["hugo_symbol"]]
        genomic["variant_category"] = "Structural Variation"
        if len(genes) == 1 and re.fullmatch(r"[A-Z][A-Z0-9]*", genes[0]):
            genomic["fusion_partner_hugo_symbol"] = genes[0]
            return None
    return f"variant {variant} not stated"


# -- what CTML has no field for ----------------------------------------------------------------------


def _unstated(eligibility, notes: list[dict[str, Any]]) -> None:
    if eligibility.stage and (eligibility.stage.groups or eligibility.stage.settings):
        stage = eligibility.stage
        words = " or ".join([f"stage {g}" for g in stage.groups] + [s.replace("_", " ") for s in stage.settings])
        _note(notes, "stage", stage, f"CTML has no stage field: {words}")
    for item in eligibility.performance_status:
        _note(notes, "performance_status", item, f"CTML has no performance status field: {item.scale} {item.min}-{item.max}")
    for item in eligibility.prior_therapies:
        _note(notes, "prior_therapies", item, f"CTML has no prior therapy field: {item.requirement} {item.therapy}")
    for item in eligibility.labs:
        threshold = f"{item.uln_multiple:g} x ULN" if item.uln_multiple is not None else f"{item.value:g} {item.unit or ''}" if item.value is not None else ""
        _note(notes, "labs", item, f"CTML has no lab field: {item.analyte} {item.comparator or 'adequate'} {threshold}".strip())
    if eligibility.brain_metastases:
        _note(notes, "brain_metastases", eligibility.brain_metastases,
              f"CTML has no brain metastases field: {eligibility.brain_metastases.status}")  # fmt: skip
    if eligibility.measurable_disease:
        _note(notes, "measurable_disease", eligibility.measurable_disease, "CTML has no measurable disease field")
    for other in eligibility.other:
        notes.append({"field": "other", "criterion_id": other.criterion_id, "quote": other.text,
                      "reason": "not structured by eligex"})  # fmt: skip
