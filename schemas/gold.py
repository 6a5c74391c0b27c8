"""Gold files (`evals/gold/NCT....json`): the contract's `eligibility`, as a labeller writes it. Pure: no I/O.

A gold file says what the text says in the record's own shape; only evidence differs: offsets
depend on normalisation, so a gold item carries at most a `quote` (and the criterion it is in).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model

from schemas.fields import ITEM_FIELDS, ItemField, with_evidence
from schemas.record import Contract, Eligibility, NctId


class GoldQuote(Contract):
    quote: str | None = Field(default=None, description="verbatim words of the normalised text that state the item")
    criterion_id: str | None = Field(default=None, description="the criterion the quote is in, when known")


def _gold_field(field: ItemField) -> tuple[Any, Any]:
    item = with_evidence(field.model, GoldQuote, "Gold", required=False)
    return (list[item], Field(default_factory=list)) if field.many else (item | None, None)


GoldEligibility = create_model(
    "GoldEligibility",
    __base__=Contract,
    __doc__="The structured fields a labeller read in the text; `other` is computed, never labelled.",
    **{name: (info.annotation, info) for name, info in Eligibility.model_fields.items()
       if name not in {field.name for field in ITEM_FIELDS} | {"other", "origins"}},
    **{field.name: _gold_field(field) for field in ITEM_FIELDS},
)  # fmt: skip


class GoldFile(Contract):
    nct_id: NctId
    source: str = Field(description="where the record lives: ctgov-2026, ctgov-v2, ctgov-classic-xml, evals/records")
    category: str = Field(description="a free label the dev/test split is stratified by")
    eligibility: GoldEligibility  # type: ignore[valid-type]
