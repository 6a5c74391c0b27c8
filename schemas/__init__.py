"""Pydantic models of the eligex contract (../shared/SCHEMA.md). Pure: no I/O."""

from schemas.record import (
    NCT_ID_PATTERN,
    SCHEMA_VERSION,
    BiomarkerRule,
    BiomarkerTest,
    BrainMetastases,
    CancerType,
    CohortScope,
    Criterion,
    Eligibility,
    EligibilityRecord,
    Evidence,
    Extraction,
    FieldOrigin,
    Intervention,
    Lab,
    MeasurableDisease,
    OtherCriterion,
    PerformanceStatus,
    PriorTherapy,
    Source,
    Stage,
    TrialFacts,
    is_nct_id,
    iter_evidence,
    normalise_nct_id,
)
from schemas.trial import Trial

__all__ = [
    "NCT_ID_PATTERN", "SCHEMA_VERSION", "BiomarkerRule", "BiomarkerTest", "BrainMetastases", "CancerType",
    "CohortScope", "Criterion", "Eligibility", "EligibilityRecord", "Evidence", "Extraction", "FieldOrigin", "Intervention",
    "Lab", "MeasurableDisease", "OtherCriterion", "PerformanceStatus", "PriorTherapy", "Source", "Stage",
    "Trial", "TrialFacts", "is_nct_id", "iter_evidence", "normalise_nct_id",
]  # fmt: skip
