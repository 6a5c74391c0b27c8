"""A trial under review: the extraction as a draft of its gold file, corrections, and how the draft
compares with gold. Pure: no I/O.

A draft holds, per eligibility field, a list of entries `{"value", "status"}` in the gold file's
shape (evidence is a quote and its criterion; offsets are recomputed by the aligner when shown).
List fields have any number of entries, single fields and scalars (sex, ages) at most one: no entry
is null. A correction replaces one field's entries, so the audit can store a field before and after
and undo is putting `before` back.
"""

from __future__ import annotations

from typing import Any

from extract.evaluate.report import segments
from extract.evaluate.scoring import VIEWS, score_trial
from extract.grounding import criterion_at, locate
from extract.review.forms import EDITABLE_FIELDS, FORMS, shown
from schemas import Criterion
from schemas.fields import SCALAR_FIELDS
from schemas.gold import GoldFile

Entries = list[dict[str, Any]]
Draft = dict[str, Entries]
ACTIONS = ("accept", "edit", "delete", "add")
# The status an entry has: as the extractor gave it, or what the reviewer did to it.
STATUS_OF = {"accept": "accepted", "edit": "edited", "add": "added"}


class CorrectionError(ValueError):
    """A correction that cannot be made: {input name: message}, shown next to the inputs."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


def _gold_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item of a record in the gold file's shape: its evidence is the quote and the criterion."""
    evidence = item.get("evidence")
    if not isinstance(evidence, dict):
        return item
    return dict(item, evidence={"quote": evidence.get("quote"), "criterion_id": evidence.get("criterion_id")})


def base_draft(eligibility: dict[str, Any]) -> Draft:
    """The draft a review starts from: a record's `eligibility` (or a trial's registry facts)."""
    draft: Draft = {}
    for name in EDITABLE_FIELDS:
        value = eligibility.get(name)
        values = value if isinstance(value, list) else [] if value is None else [value]
        draft[name] = [{"value": v if name in SCALAR_FIELDS else _gold_item(v), "status": "extracted"} for v in values]
    return draft


def current(base: Draft, changes: list[dict[str, Any]]) -> Draft:
    """The base with each field's latest change (audit rows in order, undone ones left out) on top."""
    draft = dict(base)
    for change in changes:
        if change["field"] in draft:
            draft[change["field"]] = change["after"]
    return draft


def correct(entries: Entries, field: str, action: str, index: int | None, value: Any = None) -> Entries:
    """The field's entries after one correction; `value` is validated and grounded already."""
    if action not in ACTIONS:
        raise CorrectionError({"action": f"unknown action {action!r}"})
    if action == "add":
        if not FORMS[field].many and entries:
            raise CorrectionError({"value": f"{field} holds one value: edit it or delete it first"})
        return [*entries, {"value": value, "status": "added"}]
    if index is None or not 0 <= index < len(entries):
        raise CorrectionError({"item": f"{field} has no item {index}: reload the page"})
    if action == "delete":
        return entries[:index] + entries[index + 1 :]
    changed = {"value": entries[index]["value"] if action == "accept" else value, "status": STATUS_OF[action]}
    return entries[:index] + [changed] + entries[index + 1 :]


def ground_value(field: str, value: Any, text: str, criteria: list[Criterion]) -> Any:
    """A validated value whose quote is found by the aligner: the quote as the text has it, with its
    criterion. An item of the text must quote it (the reviewer selects its words)."""
    if field in SCALAR_FIELDS:
        return value
    evidence = value.get("evidence") or {}
    if not evidence.get("quote"):
        raise CorrectionError({"evidence": "select the words of the criterion that state it"})
    span = locate(text, evidence["quote"], criteria, evidence.get("criterion_id"))
    if span is None:
        raise CorrectionError({"evidence": "these words are not in the eligibility text"})
    start, end = span
    return dict(value, evidence={"quote": text[start:end], "criterion_id": criterion_at(criteria, start, end)})


def gold_eligibility(draft: Draft) -> dict[str, Any]:
    """The draft as a gold file's `eligibility`."""
    result: dict[str, Any] = {}
    for name in EDITABLE_FIELDS:
        values = [entry["value"] for entry in draft.get(name, [])]
        result[name] = values if FORMS[name].many else (values[0] if values else None)
    return result


def gold_document(nct_id: str, source: str, category: str, draft: Draft) -> dict[str, Any]:
    """The gold file of a reviewed draft, validated against the contract (raises ValidationError)."""
    document = {"nct_id": nct_id, "source": source, "category": category, "eligibility": gold_eligibility(draft)}
    return GoldFile.model_validate(document).model_dump(mode="json")


def located(eligibility: dict[str, Any], text: str, criteria: list[Criterion]) -> dict[str, Any]:
    """Gold-shaped eligibility with offsets on every evidence the aligner finds (as a record has them)."""
    result: dict[str, Any] = {}
    for name, value in eligibility.items():
        items = value if isinstance(value, list) else [value]
        placed = []
        for item in items:
            evidence = item.get("evidence") if isinstance(item, dict) else None
            span = locate(text, evidence.get("quote") or "", criteria, evidence.get("criterion_id")) if evidence else None
            if span is not None:
                item = dict(item, evidence=dict(evidence, start=span[0], end=span[1]))
            placed.append(item)
        result[name] = placed if isinstance(value, list) else placed[0]
    return result


def against_gold(nct_id: str, draft: Draft, gold: dict[str, Any], text: str, criteria: list[Criterion]) -> dict[str, Any]:
    """The draft scored against a gold file's `eligibility` (scoring.score_trial), and a verdict per
    entry: `found`, `spurious` or `polarity` (for the headline views and cancer types)."""
    eligibility = located(gold_eligibility(draft), text, criteria)
    record = {"eligibility_text": text, "criteria": [c.model_dump() for c in criteria], "eligibility": eligibility,
              "extraction": {}}  # fmt: skip
    scored = score_trial(nct_id, gold, record)
    verdicts: dict[tuple, set[str]] = {}
    for kind in ("found", "spurious"):
        for fact in scored[kind]:
            view = VIEWS[fact["field"]]
            if view.headline or fact["field"] == "cancer_types":
                verdicts.setdefault((view.field, fact["start"], fact["end"]), set()).add(kind)
    flipped = {(error["field"], error["quote"]) for error in scored["polarity_errors"]}
    for name in EDITABLE_FIELDS:
        for entry, item in zip(draft.get(name, []), items_of(eligibility, name)):
            evidence = item.get("evidence") if isinstance(item, dict) else None
            key = (name, evidence.get("start"), evidence.get("end")) if evidence else (name, None, None)
            kinds = verdicts.get(key, set())
            if evidence and (name, evidence.get("quote")) in flipped:
                entry["verdict"] = "polarity"
            elif kinds:
                entry["verdict"] = "spurious" if "spurious" in kinds else "found"
    return scored


def locate_quote(text: str, quote: str | None, criteria: list[Criterion]) -> tuple[int, int] | None:
    return locate(text, quote, criteria) if quote else None


def criterion_segments(criterion: Criterion, marks: list[tuple[int, int, str, str]]) -> list[dict[str, Any]]:
    """The criterion's text cut at the marks that overlap it (report.segments, offsets made relative)."""
    start, end = criterion.start, criterion.end
    inside = [(max(s, start) - start, min(e, end) - start, kind, label) for s, e, kind, label in marks if s < end and start < e]
    return segments(criterion.text, inside)


def items_of(eligibility: dict[str, Any], name: str) -> list[Any]:
    """A field's values as a list: a list field's items, or a single one (none for null)."""
    value = eligibility.get(name)
    return value if isinstance(value, list) else [] if value is None else [value]


def summary(value: Any) -> str:
    """One line for an entry, in the contract's order: words as they are, numbers and lists after
    their name ("anc >= 1.5 x10^9/L", "ECOG min 0 max 1"), alternatives joined by OR; no evidence."""
    if not isinstance(value, dict):
        return "–" if value is None else shown(value)
    parts = []
    for key, part in value.items():
        name = key.replace("_", " ")
        if key == "evidence" or part in (None, [], ""):
            continue
        if isinstance(part, list) and isinstance(part[0], dict):
            parts.append(" OR ".join(map(summary, part)))
        elif isinstance(part, dict):
            parts.append(summary(part))
        elif isinstance(part, bool):
            parts.append(name if part else f"not {name}")
        elif isinstance(part, str):
            parts.append(part)
        else:
            parts.append(shown(part) if key == "value" else f"{name} {shown(part)}")
    return " ".join(parts) or "–"
