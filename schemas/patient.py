"""A patient's profile, in the record's own vocabulary, for "check if I qualify". Pure: no I/O.

Every field is optional: a fact the patient does not give is unknown, never assumed absent. A list
given empty says "none" (no prior therapies); a list not given says nothing. `eligex schema --patient`
exports the JSON Schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.record import Contract, LabAnalyte, NonNegative

StageGroup = Literal["0", "I", "II", "III", "IV"]
Setting = Literal["early", "locally_advanced", "unresectable", "metastatic", "recurrent"]


class PatientCancer(Contract):
    name: str | None = Field(default=None, description="the diagnosis in plain words", examples=["breast cancer"])
    oncotree: str | None = Field(default=None, description="its OncoTree code, where known", examples=["BRCA"])


class PatientStage(Contract):
    group: StageGroup | None = Field(default=None, description="the stage group (IV, not IVB)")
    settings: list[Setting] = Field(default_factory=list, description="the disease settings that apply now")


class PatientPerformance(Contract):
    scale: Literal["ECOG", "KARNOFSKY", "LANSKY"] = Field(description="the scale the score is on")
    value: int = Field(ge=0, le=100, description="the patient's score")


class PatientBiomarker(Contract):
    """One test result, as the record's biomarker tests write them."""

    marker: str = Field(pattern=r"^[A-Z][A-Z0-9-]*$", description="HGNC symbol, or MSI, TMB, HRD, MRD, ...")
    status: Literal["positive", "negative"] = Field(description="positive: the finding is present")
    alteration: (
        Literal["mutation", "amplification", "overexpression", "fusion", "deletion", "expression", "loss", "other"]
        | None
    ) = Field(default=None, description="what was found or looked for")
    variant: str | None = Field(default=None, description="the variant found", examples=["V600E", "G12C"])
    method: Literal["IHC", "ISH", "NGS", "PCR", "ctDNA", "other"] | None = Field(default=None, description="the test")
    value: str | None = Field(default=None, description="score or level as reported", examples=["3+", "TPS 60%"])


class PatientTherapy(Contract):
    therapy: str = Field(description="lower-case INN (or a class when the drug is not known)", examples=["trastuzumab"])
    setting: Literal["metastatic", "adjuvant", "neoadjuvant"] | None = Field(default=None, description="where it was given")
    lines: int | None = Field(default=None, ge=0, description="lines of therapy it made up")
    duration_months: NonNegative | None = Field(default=None, description="how long it was given, in months")


class PatientLab(Contract):
    analyte: LabAnalyte = Field(description="the record's analyte key")
    value: NonNegative = Field(description="the patient's value")
    unit: str | None = Field(default=None, description="the unit of `value`", examples=["x10^9/L", "/mm3", "mg/dL"])
    uln: NonNegative | None = Field(
        default=None, description="the laboratory's upper limit of normal, in `unit`: needed for 'x ULN' thresholds"
    )


class Patient(Contract):
    """What a patient (or an app on the patient's behalf) knows; every field may be left out."""

    age_years: NonNegative | None = Field(default=None, description="age in years")
    sex: Literal["FEMALE", "MALE"] | None = Field(default=None, description="sex")
    cancer: PatientCancer | None = Field(default=None, description="the diagnosis")
    stage: PatientStage | None = Field(default=None, description="stage group and settings")
    performance_status: list[PatientPerformance] = Field(default_factory=list, description="scores, any scales")
    biomarkers: list[PatientBiomarker] = Field(
        default_factory=list, description="test results; a marker not listed is unknown, not negative"
    )
    prior_therapies: list[PatientTherapy] | None = Field(
        default=None, description="every prior cancer therapy; [] for none, left out when unknown"
    )
    prior_lines: int | None = Field(
        default=None, ge=0, description="lines of systemic therapy in all, when known (else summed from prior_therapies)"
    )
    labs: list[PatientLab] = Field(default_factory=list, description="recent laboratory values")
    brain_metastases: Literal["none", "stable", "active"] | None = Field(
        default=None, description="none; stable (treated, stable or asymptomatic); active"
    )
    measurable_disease: bool | None = Field(default=None, description="has at least one measurable lesion")

