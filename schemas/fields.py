"""The eligibility fields, read once from the contract's `Eligibility` model. Pure: no I/O.

`Eligibility` is the one list of fields. Every module that needs to know which fields there are
(the LLM's answer model, the aligner, the rules composer, gold validation, scoring) reads it from
here, so a new field is its model in `schemas/record.py`, its finder, its prompt section and its
scoring rule, and nothing else.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, create_model

from schemas.record import Contract, Eligibility


@dataclass(frozen=True)
class ItemField:
    """A field whose values are items that quote their evidence: a list of them, or one (or null)."""

    name: str
    model: type[Contract]
    many: bool


def _evidence_model(annotation: Any) -> type[Contract] | None:
    """The item model inside `list[X]` or `X | None` when X carries evidence, else None."""
    for candidate in typing.get_args(annotation) or (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel) and "evidence" in candidate.model_fields:
            return candidate
    return None


def _item_fields() -> tuple[ItemField, ...]:
    fields = []
    for name, info in Eligibility.model_fields.items():
        annotation = info.annotation
        if typing.get_origin(annotation) is list:
            model = _evidence_model(typing.get_args(annotation)[0])
            many = True
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            model, many = _evidence_model(annotation), False
        else:
            model = None
        if model is not None:
            fields.append(ItemField(name, model, many))
    return tuple(fields)


ITEM_FIELDS = _item_fields()
ITEM_FIELD = {field.name: field for field in ITEM_FIELDS}
LIST_FIELDS = tuple(field.name for field in ITEM_FIELDS if field.many)
SINGLE_FIELDS = tuple(field.name for field in ITEM_FIELDS if not field.many)
# Scalar facts (sex, ages, healthy volunteers): the keys `Eligibility.origins` may carry.
SCALAR_FIELDS: tuple[str, ...] = typing.get_args(typing.get_args(Eligibility.model_fields["origins"].annotation)[0])
# Lists that point at criteria by id instead of quoting evidence: the criteria no field captures
# (`other`) and those that bind one cohort only (`cohorts`). Grounding leaves them as they are.
CRITERIA_LISTS = ("other", "cohorts")
# A draft item may name what made it (a rules finder) under this key: reported when the item is
# dropped, never stored.
RULE_KEY = "_rule"
# Where the registry and the text both state a scalar, the stricter wins; this is which way is stricter.
STRICTER = {"min_age_years": max, "max_age_years": min}


def with_evidence(model: type[Contract], evidence: type[BaseModel], prefix: str, *, required: bool) -> type[Contract]:
    """`model` with another kind of evidence: the quote a model gives, or the optional quote of a gold file."""
    annotation: Any = evidence if required else evidence | None
    return create_model(
        f"{prefix}{model.__name__}",
        __base__=model,
        __doc__=model.__doc__,
        __module__=model.__module__,
        evidence=(annotation, Field(... if required else None, description=model.model_fields["evidence"].description)),
    )
