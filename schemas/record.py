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
NCT_ID_PATTERN = r"^NCT\d{8}$"
_NCT_ID = re.compile(NCT_ID_PATTERN, re.ASCII)  # ASCII digits only: "NCT１２３４５６７８" is not an id

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

    criterion_id: str | None = Field(description="id of the criterion the quote lies in")
    quote: str = Field(min_length=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Evidence:
        if self.end - self.start != len(self.quote):
            raise ValueError("evidence end - start must equal the quote's length")
        return self


class Source(Contract):
    registry: str = Field(examples=["clinicaltrials.gov"])
    url: str | None = None
    retrieved_at: datetime
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Intervention(Contract):
    type: str | None = None
    name: str


class TrialFacts(Contract):
    title: str | None = None
    phases: list[str] = Field(default_factory=list, examples=[["PHASE1", "PHASE2"]])
    overall_status: str | None = Field(default=None, examples=["RECRUITING"])
    study_type: str | None = Field(default=None, examples=["INTERVENTIONAL"])
    conditions: list[str] = Field(default_factory=list)
    interventions: list[Intervention] = Field(default_factory=list)
    sponsor: str | None = None


class Criterion(Contract):
    id: str = Field(pattern=r"^(inc|exc)-[1-9][0-9]*$")
    kind: CriterionKind
    text: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class OncologyCode(Contract):
    system: Literal["oncotree", "ncit"]
    code: str


class CancerType(Contract):
    name: str
    requirement: Requirement
    code: OncologyCode | None = None
    evidence: Evidence


class BiomarkerTest(Contract):
    marker: str = Field(pattern=r"^[A-Z][A-Z0-9-]*$", description="HGNC symbol, or MSI, TMB, HRD")
    status: Literal["positive", "negative"]
    alteration: (
        Literal["mutation", "amplification", "overexpression", "fusion", "deletion", "expression", "loss", "other"]
        | None
    ) = None
    variant: str | None = Field(default=None, examples=["V600E", "exon 19 deletion"])
    method: Literal["IHC", "ISH", "NGS", "PCR", "ctDNA", "other"] | None = None
    value: str | None = Field(default=None, examples=["3+", "TPS >= 50%"])


class BiomarkerRule(Contract):
    """The tests in `any_of` are alternatives (OR); separate rules must all hold (AND)."""

    requirement: Requirement
    any_of: list[BiomarkerTest] = Field(min_length=1)
    evidence: Evidence


class Stage(Contract):
    groups: list[Literal["0", "I", "II", "III", "IV"]] = Field(default_factory=list)
    settings: list[Literal["early", "locally_advanced", "unresectable", "metastatic", "recurrent"]] = Field(
        default_factory=list
    )
    evidence: Evidence


class PerformanceStatus(Contract):
    scale: Literal["ECOG", "KARNOFSKY", "LANSKY"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)
    evidence: Evidence

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
    requirement: Requirement
    therapy: str = Field(description="lower-case INN or a class from the project's vocabulary")
    drugs: list[str] = Field(default_factory=list)
    setting: Literal["metastatic", "adjuvant", "neoadjuvant", "any"] | None = None
    min_lines: int | None = Field(default=None, ge=0)
    max_lines: int | None = Field(default=None, ge=0)
    min_duration_months: NonNegative | None = None
    evidence: Evidence

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
    analyte: LabAnalyte
    comparator: Literal[">=", ">", "<=", "<"] | None = None
    value: NonNegative | None = None
    unit: str | None = None
    uln_multiple: NonNegative | None = None
    condition: str | None = None
    evidence: Evidence

    @model_validator(mode="after")
    def _one_threshold(self) -> Lab:
        if self.value is not None and self.uln_multiple is not None:
            raise ValueError("a lab threshold is a value or a multiple of ULN, not both")
        return self


class BrainMetastases(Contract):
    status: Literal["excluded", "allowed_if_stable", "allowed", "required"]
    evidence: Evidence


class MeasurableDisease(Contract):
    required: bool
    standard: str | None = Field(default=None, examples=["RECIST 1.1", "RANO", "iwCLL"])
    evidence: Evidence


class OtherCriterion(Contract):
    criterion_id: str
    kind: CriterionKind
    text: str


class FieldOrigin(Contract):
    """Where a scalar fact (sex, ages, healthy volunteers) came from; text origins carry evidence."""

    origin: Literal["registry", "text"]
    evidence: Evidence | None = None


class Eligibility(Contract):
    sex: Sex | None = None
    min_age_years: NonNegative | None = None
    max_age_years: NonNegative | None = None
    healthy_volunteers: bool | None = None
    cancer_types: list[CancerType] = Field(default_factory=list)
    biomarkers: list[BiomarkerRule] = Field(default_factory=list)
    stage: Stage | None = None
    performance_status: list[PerformanceStatus] = Field(default_factory=list)
    prior_therapies: list[PriorTherapy] = Field(default_factory=list)
    labs: list[Lab] = Field(default_factory=list)
    brain_metastases: BrainMetastases | None = None
    measurable_disease: MeasurableDisease | None = None
    other: list[OtherCriterion] = Field(default_factory=list)
    origins: dict[Literal["sex", "min_age_years", "max_age_years", "healthy_volunteers"], FieldOrigin] = Field(
        default_factory=dict, description="extension: where each scalar fact came from"
    )


class Extraction(Contract):
    backend: str
    model: str | None = None
    prompt_version: str | None = None
    schema_version: str = SCHEMA_VERSION
    extracted_at: datetime
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cost_usd: NonNegative | None = None
    warnings: list[str] = Field(default_factory=list)
    ungrounded_items: int = Field(default=0, ge=0, description="extension: items dropped for want of evidence")


class EligibilityRecord(Contract):
    schema_version: Literal["1"] = SCHEMA_VERSION
    nct_id: NctId
    source: Source
    trial: TrialFacts
    eligibility_text: str
    criteria: list[Criterion]
    eligibility: Eligibility
    extraction: Extraction

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
        return self


def iter_evidence(eligibility: Eligibility):
    """Every Evidence inside the structured fields."""
    for value in eligibility.__dict__.values():
        items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        for item in items:
            evidence = getattr(item, "evidence", None)
            if isinstance(evidence, Evidence):
                yield evidence
