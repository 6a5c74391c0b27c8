"""Check if a patient qualifies: a patient profile against one trial's structured record. Pure: no I/O.

Every structured requirement of the record gets an outcome: `meets`, `fails`, `unknown` (the profile
lacks the fact, or the record gives nothing to compare with) or `not_assessed` (a criterion in `other`,
which eligex did not structure). `unknown` and `not_assessed` never count as `fails`: nobody is
excluded for what they did not say or for what eligex did not read. The record's logic is kept:
the tests of one biomarker rule are alternatives (OR) and rules all hold (AND); exclusions are restated
as what the patient must meet; a drug counts for its classes; lab units are converted.
"""

from __future__ import annotations

import functools
import gc
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from extract.rules.vocab import class_ancestors, drug_classes
from extract.units import lab_threshold
from schemas import EligibilityRecord, OtherCriterion
from schemas.patient import Patient, PatientBiomarker, PatientLab, PatientTherapy

Outcome = Literal["meets", "fails", "unknown", "not_assessed"]
Verdict = Literal["eligible", "ineligible", "uncertain"]


@dataclass(slots=True)
class Requirement:
    field: str
    outcome: Outcome
    reason: str  # one line: "ANC 1.2 < 1.5 x10^9/L"
    criterion_id: str | None = None
    quote: str | None = None


@dataclass
class MatchResult:
    """A trial's verdict and its requirements. Those of the criteria eligex did not structure (`other`,
    all `not_assessed`, which never change the verdict) are built when first read: ranking thousands of
    trials needs only the verdicts and counts."""

    nct_id: str
    verdict: Verdict
    structured: list[Requirement] = field(default_factory=list)
    unstructured: list[OtherCriterion] = field(default_factory=list)

    @functools.cached_property
    def requirements(self) -> list[Requirement]:
        return self.structured + [Requirement("other", "not_assessed", "not structured by eligex: read it",
                                              o.criterion_id, o.text) for o in self.unstructured]  # fmt: skip

    def count(self, outcome: Outcome) -> int:
        found = sum(r.outcome == outcome for r in self.structured)
        return found + len(self.unstructured) if outcome == "not_assessed" else found

    def as_dict(self) -> dict[str, Any]:
        counts = {outcome: self.count(outcome) for outcome in ("meets", "fails", "unknown", "not_assessed")}
        return {"nct_id": self.nct_id, "verdict": self.verdict, "counts": counts,
                "requirements": [asdict(r) for r in self.requirements]}  # fmt: skip


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """What matching reads of a patient, worked out once: one patient against many records does it once."""

    patient: Patient
    biomarkers: dict[str, list[PatientBiomarker]]  # by marker
    labs: dict[str, PatientLab]  # by analyte
    scores: dict[str, int]  # performance status by scale
    therapy_kinds: tuple[frozenset[str], ...]  # what each prior therapy counts as, in order
    unrecognised: bool  # a therapy the vocabulary cannot place: absence of a class cannot be told

    @classmethod
    def of(cls, patient: Patient) -> PatientFacts:
        biomarkers: dict[str, list[PatientBiomarker]] = {}
        for result in patient.biomarkers:
            biomarkers.setdefault(result.marker, []).append(result)
        therapies = patient.prior_therapies or []
        return cls(patient, biomarkers, {lab.analyte: lab for lab in patient.labs},
                   {p.scale: p.value for p in patient.performance_status},
                   tuple(therapy_kinds(t.therapy) for t in therapies), _unrecognised(patient))  # fmt: skip


def match(patient: Patient | PatientFacts, record: EligibilityRecord) -> MatchResult:
    """Every requirement of the record, met or not by the patient, and the verdict. Matching one patient
    against many records, pass `PatientFacts.of(patient)` (or use `match_all`): its facts are worked out once."""
    facts = patient if isinstance(patient, PatientFacts) else PatientFacts.of(patient)
    patient = facts.patient
    eligibility = record.eligibility
    requirements = [
        *_ages_and_sex(patient, eligibility),
        *_cancer_types(patient, eligibility.cancer_types),
        *(_biomarker_rule(facts.biomarkers, rule) for rule in eligibility.biomarkers),
        *_stage(patient, eligibility.stage),
        *_performance(facts.scores, eligibility.performance_status),
        *(_prior_therapy(facts, item) for item in eligibility.prior_therapies),
        *_labs(facts.labs, eligibility.labs),
        *_brain_metastases(patient, eligibility.brain_metastases),
        *_measurable(patient, eligibility.measurable_disease),
    ]  # fmt: skip
    if eligibility.cohorts:
        _for_cohorts_only(requirements, eligibility.cohorts)
    outcomes = {r.outcome for r in requirements}
    verdict: Verdict = "ineligible" if "fails" in outcomes else "uncertain" if "unknown" in outcomes else "eligible"
    return MatchResult(record.nct_id, verdict, requirements, eligibility.other)


def _for_cohorts_only(requirements: list[Requirement], cohorts) -> None:
    """A requirement of one cohort's criteria binds that cohort only: failing it leaves the others open."""
    cohort_of = {criterion_id: scope.cohort for scope in cohorts for criterion_id in scope.criterion_ids}
    for requirement in requirements:
        cohort = cohort_of.get(requirement.criterion_id)
        if cohort and requirement.outcome == "fails":
            requirement.outcome, requirement.reason = "unknown", f"{requirement.reason}: applies to {cohort} only"


def match_all(patient: Patient, records: Iterable[EligibilityRecord]) -> list[MatchResult]:
    """One patient against many records, ranked (`rank`): the patient's facts are worked out once."""
    facts = PatientFacts.of(patient)
    collecting = gc.isenabled()
    gc.disable()  # results make no cycles; a collection would walk every record in memory, again and again
    try:
        return rank(match(facts, record) for record in records)
    finally:
        if collecting:
            gc.enable()


def rank(results: Iterable[MatchResult]) -> list[MatchResult]:
    """Eligible first, then uncertain by fewest unknowns, then ineligible; ties by trial id."""
    order = {"eligible": 0, "uncertain": 1, "ineligible": 2}
    return sorted(results, key=lambda r: (order[r.verdict], r.count("unknown") if r.verdict == "uncertain" else 0, r.nct_id))


def _quoted(field_name: str, outcome: Outcome, reason: str, item: Any) -> Requirement:
    evidence = item.evidence  # every structured item quotes its evidence
    return Requirement(field_name, outcome, reason, evidence.criterion_id, evidence.quote)


# -- registry facts ----------------------------------------------------------------------------------


def _ages_and_sex(patient: Patient, eligibility) -> Iterator[Requirement]:
    origins = eligibility.origins

    def where(name: str) -> tuple[str | None, str | None]:
        origin = origins.get(name)
        evidence = origin.evidence if origin else None
        return (evidence.criterion_id, evidence.quote) if evidence else (None, None)

    age = patient.age_years
    for name, bound, holds, words in (
        ("min_age_years", eligibility.min_age_years, lambda a, b: a >= b, "at least"),
        ("max_age_years", eligibility.max_age_years, lambda a, b: a <= b, "at most"),
    ):
        if bound is None:
            continue
        if age is None:
            yield Requirement(name, "unknown", f"age {words} {bound:g} years: age not given", *where(name))
        else:
            outcome = "meets" if holds(age, bound) else "fails"
            yield Requirement(name, outcome, f"age {age:g} vs {words} {bound:g} years", *where(name))
    if eligibility.sex in ("FEMALE", "MALE"):
        if patient.sex is None:
            yield Requirement("sex", "unknown", f"{eligibility.sex.lower()} only: sex not given")
        else:
            outcome = "meets" if patient.sex == eligibility.sex else "fails"
            yield Requirement("sex", outcome, f"{eligibility.sex.lower()} only; patient {patient.sex.lower()}")


# -- cancer types ------------------------------------------------------------------------------------


def _same_cancer(patient: Patient, name: str, code: str | None) -> bool | None:
    """True when the patient's diagnosis is the named one, False when both codes say otherwise, else None."""
    cancer = patient.cancer
    if cancer is None:
        return None
    if code and cancer.oncotree:
        return code.upper() == cancer.oncotree.upper() or None  # another code may still be a subtype
    if cancer.name:
        mine, theirs = _words(cancer.name), _words(name)
        if mine and theirs and (mine <= theirs or theirs <= mine):
            return True
    return None


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower().replace("tumour", "tumor"))) - {"cancer", "carcinoma", "the", "of"}


def _cancer_types(patient: Patient, cancer_types) -> Iterator[Requirement]:
    required = [c for c in cancer_types if c.requirement == "required"]
    if required:  # the trial's tumour types are alternatives
        names = ", ".join(c.name for c in required)
        found = [c for c in required if _same_cancer(patient, c.name, c.code.code if c.code else None)]
        if patient.cancer is None:
            yield _quoted("cancer_types", "unknown", f"one of: {names}: diagnosis not given", required[0])
        elif found:
            yield _quoted("cancer_types", "meets", f"{found[0].name}", found[0])
        else:
            yield _quoted("cancer_types", "unknown", f"one of: {names}: cannot tell from the diagnosis", required[0])
    for excluded in (c for c in cancer_types if c.requirement == "excluded"):
        same = _same_cancer(patient, excluded.name, excluded.code.code if excluded.code else None)
        outcome = "fails" if same else "unknown"
        yield _quoted("cancer_types", outcome, f"not {excluded.name}", excluded)


# -- biomarkers --------------------------------------------------------------------------------------

_SCORE = re.compile(r"([0-3])\s*\+")


def _test_outcome(results: dict[str, list[PatientBiomarker]], test) -> tuple[Outcome, str]:
    """Does one patient result show the test's finding (meets), show it absent (fails), or say nothing?"""
    wanted = f"{test.marker} {test.status}" + "".join(f" {v}" for v in (test.alteration, test.variant, test.method, test.value) if v)
    relevant = results.get(test.marker, [])
    if not relevant:
        return "unknown", f"{wanted}: no {test.marker} result given"
    outcomes = [_result_outcome(r, test) for r in relevant]
    for outcome in ("meets", "fails"):
        if outcome in outcomes:
            result = relevant[outcomes.index(outcome)]
            shown = " ".join(v for v in (result.marker, result.status, result.alteration, result.variant, result.method, result.value) if v)
            return outcome, f"{wanted}: patient {shown}"
    return "unknown", f"{wanted}: the {test.marker} results given do not say"


def _result_outcome(result: PatientBiomarker, test) -> Outcome:
    for name in ("alteration", "method"):
        wanted, given = getattr(test, name), getattr(result, name)
        if wanted and given and wanted != given:
            return "unknown"  # a FISH result says nothing of an IHC score
    if result.status != test.status:
        # a negative result for "KRAS G12C mutation" is a fail; a G12D mutation says nothing against G12C
        return "fails" if result.status == "negative" or test.status == "negative" else "unknown"
    if test.variant and result.variant and test.variant.lower() != result.variant.lower():
        return "fails" if test.status == "positive" else "unknown"
    if test.variant and not result.variant and test.status == "positive":
        return "unknown"
    scores_wanted = {int(s) for s in _SCORE.findall(test.value or "")}
    scores_given = {int(s) for s in _SCORE.findall(result.value or "")}
    if scores_wanted and scores_given:  # HER2 IHC 3+ is not HER2-low "1+ or 2+"
        return "meets" if scores_given <= scores_wanted else "fails"
    if scores_wanted and not result.value and (test.alteration or test.method):
        return "unknown"
    return "meets"


def _biomarker_rule(results: dict[str, list[PatientBiomarker]], rule) -> Requirement:
    outcomes = [_test_outcome(results, test) for test in rule.any_of]
    kinds = [outcome for outcome, _ in outcomes]
    # An alternative that is met decides the rule, so it alone is the reason; else every one is.
    decisive = [reason for kind, reason in outcomes if kind == "meets"] or [reason for _, reason in outcomes]
    reasons = " or ".join(decisive)
    if rule.requirement == "required":  # any of the tests will do
        outcome = "meets" if "meets" in kinds else "fails" if all(k == "fails" for k in kinds) else "unknown"
    else:  # showing any of them excludes
        outcome = "fails" if "meets" in kinds else "meets" if all(k == "fails" for k in kinds) else "unknown"
        reasons = f"must not be: {reasons}"
    return _quoted("biomarkers", outcome, reasons, rule)


# -- stage, performance, brain metastases, measurable disease ----------------------------------------


def _stage(patient: Patient, stage) -> Iterator[Requirement]:
    if stage is None or not (stage.groups or stage.settings):
        return
    wanted = ", ".join([f"stage {g}" for g in stage.groups] + [s.replace("_", " ") for s in stage.settings])
    given = patient.stage
    if given is None or (given.group is None and not given.settings):
        yield _quoted("stage", "unknown", f"one of: {wanted}: stage not given", stage)
        return
    if (given.group and given.group in stage.groups) or set(given.settings) & set(stage.settings):
        yield _quoted("stage", "meets", f"one of: {wanted}", stage)
    elif (stage.groups and given.group is None) or (stage.settings and not given.settings):
        yield _quoted("stage", "unknown", f"one of: {wanted}: the stage given does not say", stage)
    else:
        shown = ", ".join(filter(None, [given.group and f"stage {given.group}", *given.settings]))
        yield _quoted("stage", "fails", f"one of: {wanted}; patient {shown}", stage)


def _performance(scores: dict[str, int], items) -> Iterator[Requirement]:
    """The scales a trial names are alternatives ("ECOG 0-1 or Karnofsky >= 70")."""
    if not items:
        return
    judged = []
    for item in items:
        wanted = f"{item.scale} {'' if item.min is None else item.min}-{'' if item.max is None else item.max}"
        value = scores.get(item.scale)
        if value is None:
            judged.append(("unknown", f"{wanted}: no {item.scale} score given", item))
        else:
            inside = (item.min is None or value >= item.min) and (item.max is None or value <= item.max)
            judged.append(("meets" if inside else "fails", f"{wanted}: patient {item.scale} {value}", item))
    for outcome in ("meets", "fails", "unknown"):
        chosen = [j for j in judged if j[0] == outcome]
        if chosen and (outcome != "fails" or all(j[0] == "fails" for j in judged)):
            yield _quoted("performance_status", outcome, chosen[0][1], chosen[0][2])
            return
    yield _quoted("performance_status", "unknown", judged[0][1], judged[0][2])


_BRAIN = {  # record status -> patient status -> outcome
    "excluded": {"none": "meets", "stable": "fails", "active": "fails"},
    "allowed_if_stable": {"none": "meets", "stable": "meets", "active": "fails"},
    "allowed": {"none": "meets", "stable": "meets", "active": "meets"},
    "required": {"none": "fails", "stable": "meets", "active": "meets"},
}


def _brain_metastases(patient: Patient, brain) -> Iterator[Requirement]:
    if brain is None:
        return
    status = brain.status.replace("_", " ")
    if patient.brain_metastases is None:
        yield _quoted("brain_metastases", "unknown", f"brain metastases {status}: not given", brain)
    else:
        outcome = _BRAIN[brain.status][patient.brain_metastases]
        yield _quoted("brain_metastases", outcome, f"brain metastases {status}; patient {patient.brain_metastases}", brain)


def _measurable(patient: Patient, measurable) -> Iterator[Requirement]:
    if measurable is None:
        return
    wanted = "measurable disease" + (f" ({measurable.standard})" if measurable.standard else "")
    if not measurable.required:
        wanted = "measurable or evaluable disease"
    if patient.measurable_disease is None:
        yield _quoted("measurable_disease", "unknown", f"{wanted}: not given", measurable)
    elif patient.measurable_disease:
        yield _quoted("measurable_disease", "meets", wanted, measurable)
    else:  # not measurable may still be evaluable
        outcome = "fails" if measurable.required else "unknown"
        yield _quoted("measurable_disease", outcome, f"{wanted}; patient has no measurable disease", measurable)


# -- prior therapies ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def therapy_kinds(therapy: str) -> frozenset[str]:
    """What a therapy counts as: itself, its classes and their broader ones (trastuzumab: anti-her2 therapy,
    targeted therapy, systemic therapy; a class: itself and its broader classes)."""
    kinds = {therapy, *drug_classes(therapy), *class_ancestors(therapy)}
    if drug_classes(therapy):
        kinds.add("systemic therapy")  # a drug is systemic therapy, whatever its class
    return frozenset(kinds)


def _prior_therapy(facts: PatientFacts, item) -> Requirement:
    patient = facts.patient
    wanted = _describe_therapy(item)
    if patient.prior_therapies is None:
        return _quoted("prior_therapies", "unknown", f"{wanted}: prior therapies not given", item)
    had = [t for t, kinds in zip(patient.prior_therapies, facts.therapy_kinds) if item.therapy in kinds]
    counted = [t for t in had if not item.setting or item.setting == "any" or t.setting == item.setting]
    # the patient had it, but not said where, and the record asks for one setting
    unsure = bool(had) and not counted or facts.unrecognised
    if item.requirement == "excluded":
        if counted:
            outcome, reason = "fails", f"must not have had {wanted}: patient had {counted[0].therapy}"
        elif unsure:
            outcome, reason = "unknown", f"must not have had {wanted}: cannot tell from the therapies given"
        else:
            outcome, reason = "meets", f"must not have had {wanted}"
        return _quoted("prior_therapies", outcome, reason, item)
    return _quoted("prior_therapies", *_required_therapy(patient, item, counted, unsure, wanted), item)


def _required_therapy(patient: Patient, item, counted: list[PatientTherapy], unsure: bool, wanted: str):
    lines = _lines(patient, counted, item.therapy)
    if not counted and not lines:
        if item.min_lines is None and item.max_lines is not None:
            return "meets", f"{wanted}: patient had none"  # "no more than N": none is fewer
        return ("unknown", f"{wanted}: cannot tell from the therapies given") if unsure else ("fails", f"{wanted}: patient had none")
    if item.min_lines is not None or item.max_lines is not None:
        if lines is None:
            return "unknown", f"{wanted}: lines not given"
        if (item.min_lines is not None and lines < item.min_lines) or (item.max_lines is not None and lines > item.max_lines):
            return "fails", f"{wanted}: patient had {lines} line(s)"
    if item.min_duration_months is not None:
        durations = [t.duration_months for t in counted if t.duration_months is not None]
        if not durations:
            return "unknown", f"{wanted}: duration not given"
        if max(durations) < item.min_duration_months:
            return "fails", f"{wanted}: patient had {max(durations):g} months"
    return "meets", f"{wanted}: patient had {', '.join(t.therapy for t in counted) or f'{lines} line(s)'}"


def _lines(patient: Patient, counted: list[PatientTherapy], therapy: str) -> int | None:
    if therapy == "systemic therapy" and patient.prior_lines is not None:
        return patient.prior_lines
    given = [t.lines for t in counted]
    return None if any(n is None for n in given) else sum(given)


def _unrecognised(patient: Patient) -> bool:
    """Does the patient name a therapy the vocabulary cannot place (so absence cannot be told)?"""
    return any(not drug_classes(t.therapy) and not class_ancestors(t.therapy) and t.therapy != "systemic therapy"
               for t in patient.prior_therapies or [])  # fmt: skip


def _describe_therapy(item) -> str:
    words = [item.therapy]
    if item.min_lines is not None and item.max_lines is not None:
        words.append(f"{item.min_lines}-{item.max_lines} lines")
    elif item.min_lines is not None:
        words.append(f"at least {item.min_lines} line(s)")
    elif item.max_lines is not None:
        words.append(f"at most {item.max_lines} line(s)")
    if item.min_duration_months is not None:
        words.append(f"for at least {item.min_duration_months:g} months")
    if item.setting and item.setting != "any":
        words.append(f"({item.setting})")
    return " ".join(words)


# -- labs --------------------------------------------------------------------------------------------

_HOLDS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
_OPPOSITE_WORD = {">=": "<", ">": "<=", "<=": ">", "<": ">="}
# Renal analytes stated in one criterion are alternatives ("creatinine <= 1.5 x ULN or CrCl >= 60 mL/min").
_RENAL = {"creatinine", "creatinine_clearance", "gfr"}


def _lab_outcome(values: dict[str, PatientLab], lab) -> tuple[Outcome, str]:
    words = _threshold_words(lab)
    threshold = f"{lab.comparator} {words}" if lab.comparator else "adequate"
    wanted = f"{lab.analyte} {threshold}" + (f" (if {lab.condition})" if lab.condition else "")
    if lab.comparator is None:  # "adequate hepatic function": eligex has no threshold to compare with
        return "not_assessed", f"{wanted}: no threshold stated; judged at screening"
    given = values.get(lab.analyte)
    if given is None:
        return "unknown", f"{wanted}: no {lab.analyte} value given"
    if lab.uln_multiple is not None:
        if given.uln is None:
            return "unknown", f"{wanted}: the patient's upper limit of normal is needed"
        number, limit = given.value / given.uln, lab.uln_multiple
        shown = f"{number:.2g} x ULN"
    else:
        number, unit = _converted(lab.analyte, given.value, given.unit)
        limit, limit_unit = _converted(lab.analyte, lab.value, lab.unit)
        if unit != limit_unit or number is None or limit is None:
            return "unknown", f"{wanted}: patient's {given.value:g} {given.unit or ''} cannot be compared".replace("  ", " ")
        shown = f"{given.value:g} {given.unit or ''}".strip()
    if _HOLDS[lab.comparator](number, limit):
        return "meets", f"{lab.analyte} {shown} {lab.comparator} {words}"
    return "fails", f"{lab.analyte} {shown} {_OPPOSITE_WORD[lab.comparator]} {words}"


@functools.lru_cache(maxsize=8192)
def _converted(analyte: str, value: float | None, unit: str | None) -> tuple[float | None, str | None]:
    """A value in its canonical unit: records repeat the same few thresholds, converted once."""
    return lab_threshold(analyte, value, unit, None)


def _threshold_words(lab) -> str:
    if lab.uln_multiple is not None:
        return f"{lab.uln_multiple:g} x ULN"
    return f"{lab.value:g} {lab.unit or ''}".strip() if lab.value is not None else ""


def _labs(values: dict[str, PatientLab], labs) -> Iterator[Requirement]:
    judged = [(lab, *_lab_outcome(values, lab)) for lab in labs]
    conditional_met = {lab.analyte for lab, outcome, _ in judged if lab.condition and outcome == "meets"}
    renal_met = {lab.evidence.criterion_id for lab, outcome, _ in judged if lab.analyte in _RENAL and outcome == "meets"}
    for lab, outcome, reason in judged:
        if lab.condition and outcome == "fails":
            outcome, reason = "unknown", f"{reason}: applies only if {lab.condition}"
        elif outcome == "fails" and lab.analyte in conditional_met:
            outcome, reason = "unknown", f"{reason}; a looser limit holds if its condition applies"
        elif outcome == "fails" and lab.analyte in _RENAL and lab.evidence.criterion_id in renal_met:
            outcome, reason = "meets", f"{reason}; an alternative renal measure is met"
        yield _quoted("labs", outcome, reason, lab)
