"""What every extraction backend provides, and how its draft becomes a contract record. Pure: no I/O.

A backend reads a trial and its criteria and returns a `Draft`: the contract's `eligibility`
object as plain data whose evidence holds only `quote` (and `criterion_id` when known). It never
computes offsets; `assemble` grounds the draft with the one aligner, fills `other` with every
criterion nothing captured, merges registry facts, and validates the whole record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from pydantic import ValidationError

from extract.consistency import contradictions
from extract.errors import one_line
from extract.grounding import ground, unaccounted
from schemas import SCHEMA_VERSION, Criterion, EligibilityRecord, Extraction, Trial
from schemas.fields import ITEM_FIELDS, RULE_KEY, SCALAR_FIELDS, STRICTER



@dataclass
class Draft:
    eligibility: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    warnings: list[str] = field(default_factory=list)
    # False for a partial answer (the hybrid's rules alone, its model failed): the answer cache does not
    # keep it, and its record, marked incomplete, is not up to date for the next run
    complete: bool = True


class Backend(Protocol):
    name: str  # "rules", "openai"
    model: str | None
    prompt_version: str | None  # for rules: the version of its rules and vocabularies

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft: ...


def assemble(trial: Trial, criteria: list[Criterion], draft: Draft, backend: Backend) -> EligibilityRecord:
    grounded = ground(draft.eligibility, trial.eligibility_text, criteria)
    eligibility = grounded.eligibility
    invalid = drop_invalid_items(eligibility, made_by=backend.name)
    origins = eligibility.setdefault("origins", {})
    for name in SCALAR_FIELDS:
        registry, text = getattr(trial, name), eligibility.get(name)
        if text is None or (origins.get(name) or {}).get("origin") != "text":
            text = None
        if registry is not None and (text is None or (name in STRICTER and STRICTER[name](registry, text) == registry)):
            eligibility[name] = registry
            origins[name] = {"origin": "registry"}
        elif text is None:
            eligibility[name] = None
            origins.pop(name, None)
    eligibility["other"] = list(eligibility.get("other") or []) + [
        {"criterion_id": c.id, "kind": c.kind, "text": c.text} for c in unaccounted(eligibility, criteria)
    ]
    extraction = Extraction(
        backend=backend.name,
        model=backend.model,
        prompt_version=backend.prompt_version,
        schema_version=SCHEMA_VERSION,
        extracted_at=datetime.now(timezone.utc),
        input_tokens=draft.input_tokens,
        output_tokens=draft.output_tokens,
        cost_usd=draft.cost_usd,
        warnings=draft.warnings + grounded.warnings + invalid + contradictions(eligibility, criteria),
        ungrounded_items=grounded.ungrounded,
        incomplete=not draft.complete,
    )
    return EligibilityRecord(
        nct_id=trial.nct_id,
        source=trial.source,
        trial=trial.trial,
        eligibility_text=trial.eligibility_text,
        criteria=criteria,
        eligibility=eligibility,
        extraction=extraction,
    )


def drop_invalid_items(eligibility: dict[str, Any], made_by: str) -> list[str]:
    """Drop, in place, every item its contract model refuses (one slip never costs the trial its record);
    a warning for each names the item and what made it (the item's rule, else `made_by`). Strips the
    items' provenance."""
    warnings = []
    for field in ITEM_FIELDS:
        value = eligibility.get(field.name)
        items = [] if value is None else value if field.many else [value]
        kept = []
        for item in items:
            maker = item.pop(RULE_KEY, None) or made_by
            try:
                field.model.model_validate(item)
            except ValidationError as error:
                problem = error.errors()[0]
                where = ".".join(map(str, problem["loc"])) or field.name
                quote = (item.get("evidence") or {}).get("quote", "")
                warnings.append(one_line(
                    f"{field.name}: dropped an item that does not validate ({where}: {problem['msg']}), "
                    f"quote {quote[:80]!r}, made by {maker}", limit=400
                ))
                continue
            kept.append(item)
        eligibility[field.name] = kept if field.many else (kept[0] if kept else None)
    return warnings
