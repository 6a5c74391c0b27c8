"""The structured eligibility record, version 1: ../shared/SCHEMA.md in code.

These models are the source of truth: `eligex schema` exports their JSON Schema, downstream apps
and gold files depend on the names. Extend, never rename.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = "1"
NCT_ID_PATTERN = r"^NCT[0-9]{8}$"
_NCT_ID = re.compile(NCT_ID_PATTERN)  # [0-9], not \d: "NCT１２３４５６７８" is not an id, in Python or in JSON Schema

NctId = Annotated[str, Field(pattern=NCT_ID_PATTERN, examples=["NCT06450314"])]
Requirement = Literal["required", "excluded"]
CriterionKind = Literal["inclusion", "exclusion"]
Sex = Literal["ALL", "FEMALE", "MALE"]
NonNegative = Annotated[float, Field(ge=0)]


def is_nct_id(value: str) -> bool:
    return bool(_NCT_ID.fullmatch(value))


def normalise_nct_id(value: object) -> str | None:
    """The one way in for an NCT id, wherever it comes from (a file, the registry, the command line):
    surrounding space dropped and `nct`/`Nct` upper-cased; None unless it is then ASCII `NCT` + 8 digits."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    value = "NCT" + value[3:] if value[:3].isascii() and value[:3].upper() == "NCT" else value
    return value if is_nct_id(value) else None


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Evidence(Contract):
    """Where a value came from: `eligibility_text[start:end] == quote`."""

    criterion_id: str | None = Field(description="id of the criterion the quote lies in (`inc-3`), null if it spans several")
    quote: str = Field(min_length=1, description="the words of the text that state the value, verbatim")
    start: int = Field(ge=0, description="offset of the quote's first character in `eligibility_text`")
    end: int = Field(ge=0, description="offset just past the quote's last character: `end - start == len(quote)`")

    @model_validator(mode="after")
    def _ordered(self) -> Evidence:
        if self.end - self.start != len(self.quote):
            raise ValueError("evidence end - start must equal the quote's length")
        return self


class Source(Contract):
    """Where the registry record came from, and which version of it was read."""

    registry: str = Field(description="the registry the record is from", examples=["clinicaltrials.gov"])
    url: str | None = Field(default=None, description="the study's page at the registry")
    retrieved_at: datetime = Field(description="when eligex received the record (ISO 8601)")
    content_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of the raw record's canonical JSON: changes when the record does"
    )


class Intervention(Contract):
    type: str | None = Field(default=None, description="the registry's intervention type", examples=["DRUG"])
    name: str = Field(description="the intervention as the registry names it", examples=["Trastuzumab deruxtecan"])


# A registry date as precise as the registry gives it: a day (2024-04-01) or a month (2024-04).
RegistryDate = Annotated[str, Field(pattern=r"^\d{4}-\d{2}(-\d{2})?$", examples=["2024-04-01", "2024-04"])]
DateType = Literal["ACTUAL", "ESTIMATED"]


class StudyDate(Contract):
    """A milestone of the study: when it happened, or when it is expected."""

    date: RegistryDate = Field(description="ISO 8601, as precise as the registry gives it: a day or a month")
    type: DateType | None = Field(
        default=None, description="ACTUAL: it happened; ESTIMATED: expected (classic XML's Anticipated); null if unsaid"
    )


class Enrollment(Contract):
    """How many take part: counted once the study has enrolled, else the target."""

    count: int = Field(ge=0, description="the number of participants")
    type: DateType | None = Field(
        default=None, description="ACTUAL: enrolled; ESTIMATED: the target (classic XML's Anticipated); null if unsaid"
    )


class StudyDesign(Contract):
    """How the study is built, in the API v2's enum words (classic XML's words converted)."""

    allocation: str | None = Field(default=None, description="how participants are assigned", examples=["RANDOMIZED", "NA"])
    intervention_model: str | None = Field(
        default=None, description="interventional studies: the arms' structure", examples=["PARALLEL", "SINGLE_GROUP"]
    )
    primary_purpose: str | None = Field(default=None, description="what the study is for", examples=["TREATMENT"])
    masking: str | None = Field(default=None, description="who is blinded, as a level", examples=["NONE", "DOUBLE"])
    who_masked: list[str] = Field(
        default_factory=list, description="the roles blinded", examples=[["PARTICIPANT", "INVESTIGATOR"]]
    )
    observational_model: str | None = Field(
        default=None, description="observational studies: the model", examples=["COHORT", "CASE_CONTROL"]
    )
    time_perspective: str | None = Field(
        default=None, description="observational studies: looking forward or back", examples=["PROSPECTIVE"]
    )


class ArmGroup(Contract):
    """An arm (interventional) or a group or cohort (observational) of the study."""

    label: str = Field(description="the arm's name as the registry gives it", examples=["Cohort A1"])
    type: str | None = Field(default=None, description="the arm's role", examples=["EXPERIMENTAL", "PLACEBO_COMPARATOR"])
    description: str | None = Field(default=None, description="what the arm's participants receive or are")
    interventions: list[str] = Field(
        default_factory=list, description="the names of the arm's interventions, as in `interventions`"
    )


class Location(Contract):
    """A site of the study (the registry's contacts are not kept)."""

    facility: str | None = Field(default=None, description="the site's name", examples=["Aichi Cancer Center"])
    city: str | None = Field(default=None, description="its city")
    state: str | None = Field(default=None, description="its state or region")
    country: str | None = Field(default=None, description="its country", examples=["Japan"])
    status: str | None = Field(default=None, description="the site's recruitment status", examples=["RECRUITING"])


class SecondaryId(Contract):
    """Another registry's or funder's id of the study (EudraCT, CTIS, NIH grant, ...)."""

    id: str = Field(description="another id of the study", examples=["2022-001629-65"])
    type: str | None = Field(default=None, description="the kind of id", examples=["EUDRACT_NUMBER", "NIH", "REGISTRY"])
    domain: str | None = Field(default=None, description="who issued it", examples=["CTIS (EU)"])


class TrialFacts(Contract):
    """Facts the registry states about the study, as it states them. Fields a source lacks stay empty:
    the flat 2026 export has no design, arms, sites or ids; a plain row has only title and conditions."""

    title: str | None = Field(default=None, description="the study's brief title")
    phases: list[str] = Field(default_factory=list, description="the registry's phases", examples=[["PHASE1", "PHASE2"]])
    overall_status: str | None = Field(default=None, description="recruitment status", examples=["RECRUITING"])
    study_type: str | None = Field(default=None, description="interventional or observational", examples=["INTERVENTIONAL"])
    conditions: list[str] = Field(default_factory=list, description="the conditions the registry lists")
    interventions: list[Intervention] = Field(default_factory=list, description="the interventions the registry lists")
    sponsor: str | None = Field(default=None, description="the lead sponsor")
    collaborators: list[str] = Field(default_factory=list, description="extension: the other organisations named")
    org_study_id: str | None = Field(default=None, description="extension: the sponsor's own id of the study")
    secondary_ids: list[SecondaryId] = Field(default_factory=list, description="extension: the study's other ids")
    enrollment: Enrollment | None = Field(default=None, description="extension: participants enrolled or expected")
    start_date: StudyDate | None = Field(default=None, description="extension: when the study started, or will")
    primary_completion_date: StudyDate | None = Field(
        default=None, description="extension: when the last participant's primary outcome is measured"
    )
    completion_date: StudyDate | None = Field(default=None, description="extension: when the study ends")
    last_update_posted: RegistryDate | None = Field(
        default=None, description="extension: when the registry last published a change of the record"
    )
    design: StudyDesign | None = Field(default=None, description="extension: allocation, masking, purpose, model")
    arm_groups: list[ArmGroup] = Field(default_factory=list, description="extension: arms or groups and their interventions")
    locations: list[Location] = Field(default_factory=list, description="extension: the study's sites")
    countries: list[str] = Field(
        default_factory=list, description="extension: the countries with a site, in the registry's order"
    )


class Criterion(Contract):
    """One criterion of the eligibility text: `eligibility_text[start:end] == text`."""

    id: str = Field(pattern=r"^(inc|exc)-[1-9][0-9]*$", description="stable id, numbered in text order per kind")
    kind: CriterionKind = Field(description="the section it is in: inclusion or exclusion")
    text: str = Field(description="the criterion's words as they stand in `eligibility_text`")
    start: int = Field(ge=0, description="offset of its first character in `eligibility_text`")
    end: int = Field(ge=0, description="offset just past its last character")


class OncologyCode(Contract):
    system: Literal["oncotree", "ncit"] = Field(description="the code system: OncoTree or the NCI Thesaurus")
    code: str = Field(description="the code in that system", examples=["BRCA", "NSCLC"])


class CancerType(Contract):
    """A tumour type the trial requires, or excludes."""

    name: str = Field(description="the tumour type in plain words", examples=["non-small cell lung cancer"])
    requirement: Requirement = Field(description="required: the patient must have it; excluded: having it excludes")
    code: OncologyCode | None = Field(default=None, description="its OncoTree (or NCIt) code where one fits")
    evidence: Evidence = Field(description="the words that state it")


class BiomarkerTest(Contract):
    """One finding a test can show: "HER2 IHC 3+", "EGFR exon 19 deletion", "KRAS wild-type"."""

    marker: str = Field(
        pattern=r"^[A-Z][A-Z0-9-]*$",
        description="HGNC symbol of the gene (ERBB2 for HER2, CD274 for PD-L1), or a non-gene marker: MSI, TMB, "
        "HRD, MRD, or a cytogenetic one of evals/GUIDE.md (CODEL-1P19Q, DEL-5Q, ...)",
        examples=["ERBB2", "EGFR", "MSI"],
    )
    status: Literal["positive", "negative"] = Field(
        description="positive: the finding is present (HER2 3+, EGFR mutation, MSI-H); negative: it is absent "
        "(HER2-negative, KRAS wild-type, MSS)"
    )
    alteration: (
        Literal["mutation", "amplification", "overexpression", "fusion", "deletion", "expression", "loss", "other"]
        | None
    ) = Field(default=None, description="the kind of finding, when the text says")
    variant: str | None = Field(
        default=None, description="the variant or fusion named", examples=["V600E", "exon 19 deletion", "BCR::ABL1"]
    )
    method: Literal["IHC", "ISH", "NGS", "PCR", "ctDNA", "other"] | None = Field(
        default=None, description="how the finding is tested, when the text says (ISH covers FISH, SISH, CISH)"
    )
    value: str | None = Field(default=None, description="a threshold or score as written", examples=["3+", "TPS >= 50%"])


class BiomarkerRule(Contract):
    """The tests in `any_of` are alternatives (OR); separate rules must all hold (AND)."""

    requirement: Requirement = Field(
        description="required: the patient must show one of the tests; excluded: showing any of them excludes"
    )
    any_of: list[BiomarkerTest] = Field(min_length=1, description="the alternatives: one of them suffices")
    evidence: Evidence = Field(description="the words that state it")


class Stage(Contract):
    """The disease stage or setting the trial requires; any of the groups or settings listed will do."""

    groups: list[Literal["0", "I", "II", "III", "IV"]] = Field(
        default_factory=list, description="stage groups written as numbers (stage IIIB-IV is III, IV)"
    )
    settings: list[Literal["early", "locally_advanced", "unresectable", "metastatic", "recurrent"]] = Field(
        default_factory=list, description="settings written as words (advanced is locally_advanced and metastatic)"
    )
    evidence: Evidence = Field(description="the words that state it")


class PerformanceStatus(Contract):
    """The performance status the patient must have, on one scale: ECOG 0-1 is {ECOG, 0, 1}."""

    scale: Literal["ECOG", "KARNOFSKY", "LANSKY"] = Field(description="the scale (ECOG, Karnofsky or Lansky)")
    min: int | None = Field(default=None, ge=0, description="the lowest score allowed (ECOG always has one: 0)")
    max: int | None = Field(default=None, ge=0, description="the highest score allowed, or null for none")
    evidence: Evidence = Field(description="the words that state it")

    @model_validator(mode="after")
    def _in_range(self) -> PerformanceStatus:
        top = 5 if self.scale == "ECOG" else 100
        for bound in (self.min, self.max):
            if bound is not None and bound > top:
                raise ValueError(f"{self.scale} runs from 0 to {top}, not {bound}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("performance status min is above max")
        return self


class PriorTherapy(Contract):
    """A therapy the patient must have had (required) or must not have had (excluded)."""

    requirement: Requirement = Field(description="required: the patient must have had it; excluded: prior exposure excludes")
    therapy: str = Field(
        description="lower-case INN or a class from the project's vocabulary",
        examples=["trastuzumab", "anti-her2 therapy", "systemic therapy"],
    )
    drugs: list[str] = Field(default_factory=list, description="the drugs the criterion names, lower-case INN")
    setting: Literal["metastatic", "adjuvant", "neoadjuvant", "any"] | None = Field(
        default=None, description="the setting it was given in, when the text says"
    )
    min_lines: int | None = Field(default=None, ge=0, description="at least this many prior lines")
    max_lines: int | None = Field(default=None, ge=0, description="at most this many prior lines")
    min_duration_months: NonNegative | None = Field(
        default=None, description="given for at least this long (at least 2 years is 24)"
    )
    evidence: Evidence = Field(description="the words that state it")

    @field_validator("therapy")
    @classmethod
    def _lower(cls, value: str) -> str:
        if value != value.lower():
            raise ValueError("therapy is lower case")
        return value


LabAnalyte = Literal[
    "anc", "platelets", "hemoglobin", "wbc", "lymphocytes", "creatinine", "creatinine_clearance", "gfr",
    "total_bilirubin", "direct_bilirubin", "ast", "alt", "alkaline_phosphatase", "albumin", "inr", "aptt",
    "pt", "lvef", "qtc", "potassium", "magnesium", "calcium", "glucose", "hba1c", "lipase", "amylase",
    "tsh", "testosterone", "psa", "ldh", "urine_protein",
    "hematologic_function", "renal_function", "hepatic_function", "cardiac_function", "organ_function",
]  # fmt: skip


class Lab(Contract):
    """A laboratory or organ-function value the patient must meet (exclusion thresholds restated)."""

    analyte: LabAnalyte = Field(description="the canonical analyte key, or an organ's function for 'adequate X function'")
    comparator: Literal[">=", ">", "<=", "<"] | None = Field(
        default=None, description="how the patient's value must compare; null for 'adequate' with no number"
    )
    value: NonNegative | None = Field(default=None, description="the threshold in `unit`", examples=[1.5])
    unit: str | None = Field(default=None, description="the unit as written", examples=["x10^9/L", "mg/dL"])
    uln_multiple: NonNegative | None = Field(
        default=None, description="the threshold as a multiple of the upper limit of normal (<= 2.5 x ULN is 2.5)"
    )
    condition: str | None = Field(
        default=None, description="the patients it applies to, as written", examples=["liver metastases"]
    )
    evidence: Evidence = Field(description="the words that state it")

    @model_validator(mode="after")
    def _one_threshold(self) -> Lab:
        if self.value is not None and self.uln_multiple is not None:
            raise ValueError("a lab threshold is a value or a multiple of ULN, not both")
        return self


class BrainMetastases(Contract):
    status: Literal["excluded", "allowed_if_stable", "allowed", "required"] = Field(
        description="excluded: any exclude; allowed_if_stable: treated, stable or asymptomatic ones are allowed; "
        "allowed: allowed without condition; required: the trial is for patients with them"
    )
    evidence: Evidence = Field(description="the words that state it")


class MeasurableDisease(Contract):
    required: bool = Field(description="true: measurable disease is required; false: evaluable disease will do")
    standard: str | None = Field(
        default=None, description="the response criteria named", examples=["RECIST 1.1", "RANO", "iwCLL"]
    )
    evidence: Evidence = Field(description="the words that state it")


class OtherCriterion(Contract):
    """A criterion no structured field captures: kept, so that nothing is dropped silently."""

    criterion_id: str = Field(description="the criterion's id")
    kind: CriterionKind = Field(description="inclusion or exclusion")
    text: str = Field(description="the criterion's text")


class CohortScope(Contract):
    """Criteria that hold for one cohort, part or arm of the trial only, not for every patient it takes."""

    cohort: str = Field(min_length=1, description="the cohort, part or arm as the text names it", examples=["Cohort B", "Phase II"])
    criterion_ids: list[str] = Field(
        min_length=1, description="the criteria that apply to it only: their structured items bind its patients only"
    )


class FieldOrigin(Contract):
    """Where a scalar fact (sex, ages, healthy volunteers) came from; text origins carry evidence."""

    origin: Literal["registry", "text"] = Field(description="registry: the registry's field; text: the criteria")
    evidence: Evidence | None = Field(default=None, description="the words that state it, for a text origin")


class Eligibility(Contract):
    """The structured eligibility: the one list of fields (schemas/fields.py reads it for every module)."""

    sex: Sex | None = Field(default=None, description="the sexes the trial takes")
    min_age_years: NonNegative | None = Field(default=None, description="youngest age in years; the text wins where stricter")
    max_age_years: NonNegative | None = Field(default=None, description="oldest age in years; the text wins where stricter")
    healthy_volunteers: bool | None = Field(default=None, description="the registry's flag: does it take healthy volunteers")
    cancer_types: list[CancerType] = Field(default_factory=list, description="tumour types required or excluded")
    biomarkers: list[BiomarkerRule] = Field(
        default_factory=list, description="biomarker rules: every rule must hold (AND), any test within one will do (OR)"
    )
    stage: Stage | None = Field(default=None, description="the stage or setting required, null if the text names none")
    performance_status: list[PerformanceStatus] = Field(default_factory=list, description="performance status ranges")
    prior_therapies: list[PriorTherapy] = Field(default_factory=list, description="prior therapies required or excluded")
    labs: list[Lab] = Field(default_factory=list, description="laboratory and organ-function thresholds")
    brain_metastases: BrainMetastases | None = Field(default=None, description="what the trial says of brain metastases")
    measurable_disease: MeasurableDisease | None = Field(default=None, description="whether measurable disease is required")
    other: list[OtherCriterion] = Field(
        default_factory=list, description="every criterion no field above captures, so that none is dropped silently"
    )
    origins: dict[Literal["sex", "min_age_years", "max_age_years", "healthy_volunteers"], FieldOrigin] = Field(
        default_factory=dict, description="extension: where each scalar fact came from"
    )
    cohorts: list[CohortScope] = Field(
        default_factory=list,
        description="extension: criteria that apply to one cohort, part or arm only (empty: none marked); "
        "a requirement quoted from them does not bind every patient",
    )


class Extraction(Contract):
    """How the record was made."""

    backend: str = Field(description="the extraction backend", examples=["rules", "openai"])
    model: str | None = Field(default=None, description="the LLM that answered, for an LLM backend")
    prompt_version: str | None = Field(
        default=None, description="the version of the prompt (LLM) or of the rules and vocabularies (rules)"
    )
    schema_version: str = Field(default=SCHEMA_VERSION, description="the contract version the record follows")
    extracted_at: datetime = Field(description="when the record was made (ISO 8601)")
    input_tokens: int = Field(default=0, ge=0, description="LLM input tokens spent on this trial")
    output_tokens: int = Field(default=0, ge=0, description="LLM output tokens spent on this trial")
    cost_usd: NonNegative | None = Field(default=None, description="what those tokens cost, where the model is priced")
    warnings: list[str] = Field(default_factory=list, description="what was dropped or doubtful, one line each")
    ungrounded_items: int = Field(default=0, ge=0, description="extension: items dropped for want of evidence")
    incomplete: bool = Field(
        default=False,
        description="extension: part of the answer is missing (the hybrid's model gave none: the rules' items "
        "only); the next extraction run does it again",
    )


class EligibilityRecord(Contract):
    """One trial's structured, evidence-grounded eligibility: the contract of ../shared/SCHEMA.md, version 1."""

    schema_version: Literal["1"] = Field(default=SCHEMA_VERSION, description="the contract version")
    nct_id: NctId = Field(description="the ClinicalTrials.gov id: NCT and 8 digits")
    source: Source = Field(description="where the registry record came from")
    trial: TrialFacts = Field(description="registry facts about the study")
    eligibility_text: str = Field(description="the normalised eligibility text every offset points into")
    criteria: list[Criterion] = Field(description="the text split into single criteria")
    eligibility: Eligibility = Field(description="the structured fields")
    extraction: Extraction = Field(description="provenance: backend, model, versions, tokens, warnings")

    @model_validator(mode="after")
    def _grounded(self) -> EligibilityRecord:
        """Every offset points into `eligibility_text`, and says exactly what it quotes."""
        text = self.eligibility_text
        ids = {c.id for c in self.criteria}
        for criterion in self.criteria:
            if text[criterion.start : criterion.end] != criterion.text:
                raise ValueError(f"criterion {criterion.id} does not match eligibility_text[start:end]")
        for evidence in iter_evidence(self.eligibility):
            if text[evidence.start : evidence.end] != evidence.quote:
                raise ValueError(f"evidence {evidence.quote!r} does not match eligibility_text[start:end]")
            if evidence.criterion_id is not None and evidence.criterion_id not in ids:
                raise ValueError(f"evidence names unknown criterion {evidence.criterion_id}")
        for scope in self.eligibility.cohorts:
            if unknown := [i for i in scope.criterion_ids if i not in ids]:
                raise ValueError(f"cohort {scope.cohort!r} names unknown criteria {', '.join(unknown)}")
        return self


def iter_evidence(eligibility: Eligibility):
    """Every Evidence inside the structured fields."""
    for value in eligibility.__dict__.values():
        items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        for item in items:
            evidence = getattr(item, "evidence", None)
            if isinstance(evidence, Evidence):
                yield evidence
