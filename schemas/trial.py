"""A registry record normalised: what segmentation and extraction start from."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from schemas.record import Contract, NctId, NonNegative, Sex, Source, TrialFacts


class Trial(Contract):
    nct_id: NctId
    source: Source
    trial: TrialFacts
    eligibility_text: str = Field(description="normalised: every offset of the record points into it")
    sex: Sex | None = None
    min_age_years: NonNegative | None = None
    max_age_years: NonNegative | None = None
    healthy_volunteers: bool | None = None
    last_update: date | None = None
