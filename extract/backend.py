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

from extract.consistency import contradictions
from extract.grounding import ground, unaccounted
from schemas import SCHEMA_VERSION, Criterion, EligibilityRecord, Extraction, Trial


@dataclass
class Draft:
    eligibility: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    warnings: list[str] = field(default_factory=list)


class Backend(Protocol):
    name: str  # "rules", "openai"
    model: str | None
    prompt_version: str | None  # for rules: the version of its rules and vocabularies

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft: ...


# Registry facts, and which way "the text wins where it is stricter" points for each.
_STRICTER = {"min_age_years": max, "max_age_years": min}
_REGISTRY_FIELDS = ("sex", "min_age_years", "max_age_years", "healthy_volunteers")


def assemble(trial: Trial, criteria: list[Criterion], draft: Draft, backend: Backend) -> EligibilityRecord:
    grounded = ground(draft.eligibility, trial.eligibility_text, criteria)
    eligibility = grounded.eligibility
    origins = eligibility.setdefault("origins", {})
    for name in _REGISTRY_FIELDS:
        registry, text = getattr(trial, name), eligibility.get(name)
        if text is None or (origins.get(name) or {}).get("origin") != "text":
            text = None
        if registry is not None and (text is None or (name in _STRICTER and _STRICTER[name](registry, text) == registry)):
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
        warnings=draft.warnings + grounded.warnings + contradictions(eligibility, criteria),
        ungrounded_items=grounded.ungrounded,
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
