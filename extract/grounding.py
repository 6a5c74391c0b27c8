"""One aligner for every backend: quotes in, exact character offsets out. Pure: no I/O.

A backend says what it found and quotes the text it found it in (with the criterion id when it
knows it). Only this module computes offsets, so a record can never carry invented ones: an item
whose quote is not in the text is dropped, with a warning, and counted as ungrounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from extract.text import unescape_markdown
from schemas import Criterion
from schemas.fields import CRITERIA_LISTS, SINGLE_FIELDS


def locate(text: str, quote: str, criteria: list[Criterion], criterion_id: str | None = None) -> tuple[int, int] | None:
    """The span of `quote` in `text`: exact first, then ignoring case and runs of white space.

    The named criterion is searched before the whole text, so a phrase that occurs twice
    ("ECOG 0-1" in two cohorts) is tied to the criterion the backend meant.
    """
    quote = unescape_markdown(quote).strip()
    if not quote:
        return None
    named = next((c for c in criteria if c.id == criterion_id), None)
    windows = [(named.start, named.end)] if named else []
    windows.append((0, len(text)))
    for start, end in windows:
        found = text.find(quote, start, end)
        if found >= 0:
            return found, found + len(quote)
    loose = re.compile(r"\s+".join(re.escape(token) for token in quote.split()), re.IGNORECASE)
    for start, end in windows:
        match = loose.search(text, start, end)
        if match:
            return match.span()
    return None


def criterion_at(criteria: list[Criterion], start: int, end: int) -> str | None:
    """The id of the criterion holding the span (or, failing that, the one it starts in)."""
    for criterion in criteria:
        if criterion.start <= start and end <= criterion.end:
            return criterion.id
    for criterion in criteria:
        if criterion.start <= start < criterion.end:
            return criterion.id
    return None


@dataclass
class Grounded:
    eligibility: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    ungrounded: int = 0


def ground(eligibility: dict[str, Any], text: str, criteria: list[Criterion]) -> Grounded:
    """Give every item's evidence exact offsets; drop (and report) the items whose quote is not there.

    `eligibility` is the contract's `eligibility` object as plain data, each evidence holding at
    least `quote` (and optionally `criterion_id`). Returns a new dict; the input is not changed.
    """
    result = Grounded(eligibility={})

    def place(item: dict[str, Any], name: str) -> dict[str, Any] | None:
        evidence = item.get("evidence") or {}
        quote = evidence.get("quote") or ""
        span = locate(text, quote, criteria, evidence.get("criterion_id"))
        if span is None:
            result.ungrounded += 1
            result.warnings.append(f"{name}: dropped an item whose quote is not in the text: {quote[:80]!r}")
            return None
        start, end = span
        grounded = dict(evidence, quote=text[start:end], start=start, end=end)
        grounded["criterion_id"] = criterion_at(criteria, start, end)
        return dict(item, evidence=grounded)

    for name, value in eligibility.items():
        if name == "origins":
            result.eligibility[name] = {
                key: origin if origin.get("evidence") is None else (place(origin, name) or {"origin": "registry"})
                for key, origin in value.items()
            }
        elif isinstance(value, list) and name not in CRITERIA_LISTS:
            result.eligibility[name] = [placed for item in value if (placed := place(item, name)) is not None]
        elif name in SINGLE_FIELDS and value is not None:
            result.eligibility[name] = place(value, name)
        else:
            result.eligibility[name] = value
    return result


def evidences(eligibility: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every evidence in a plain-data eligibility object (schemas.iter_evidence for plain data)."""
    for name, value in eligibility.items():
        items = list(value.values()) if name == "origins" else value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("evidence"), dict):
                yield item["evidence"]


def evidence_spans(eligibility: dict[str, Any]) -> list[tuple[int, int]]:
    """The (start, end) of every grounded evidence in a plain-data eligibility object."""
    return [(evidence["start"], evidence["end"]) for evidence in evidences(eligibility) if "start" in evidence]


def unaccounted(eligibility: dict[str, Any], criteria: list[Criterion]) -> list[Criterion]:
    """Criteria that no evidence overlaps and that `other` does not list."""
    spans = evidence_spans(eligibility)
    listed = {entry["criterion_id"] for entry in eligibility.get("other", [])}
    return [
        c
        for c in criteria
        if c.id not in listed and not any(start < c.end and c.start < end for start, end in spans)
    ]
