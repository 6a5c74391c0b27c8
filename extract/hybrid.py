"""The `hybrid` backend: the rules draft, confirmed, corrected or completed by the model.

The rules read every criterion first. A criterion the rules captured with high confidence is not sent:
`confident` says so when the rules made at least one item quoting it and their quotes cover at least
`COVERAGE` of its text (what is left is too little to hold another fact). The others go to the model
(the openai backend's one request path: its prompt, retries, re-asks, usage and cache) with the
rules' items for them appended to the user message as a draft; a trial whose every criterion is
confident costs no request at all.

The model's answer for a sent criterion is merged item by item: per field and criterion, its items
replace the rules' when every one of their quotes is in that criterion's text; a change whose quote is
not is rejected with a warning and the rules' items are kept. What the model adds where the rules had
nothing is grounded by `extract.backend.assemble` like any LLM item. Pure but for the model's requests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from extract.backend import Draft
from extract.grounding import locate
from extract.hashing import canonical_sha256
from extract.llm import NO_ITEMS, OpenAIBackend
from extract.rules import RulesBackend, extract_eligibility
from schemas import Criterion, Trial
from schemas.fields import LIST_FIELDS, RULE_KEY, SINGLE_FIELDS, STRICTER

RELEVANT_FILE = Path(__file__).with_name("hybrid_relevant.txt")
COVERAGE = 0.5  # share of a criterion's characters the rules' quotes must cover for it not to be sent
AGE_FIELDS = tuple(STRICTER)  # min_age_years, max_age_years: evidence in `origins`
DRAFT_HEADING = ("Draft from deterministic rules for the criteria above (confirm, correct or complete it; "
                 "answer every item these criteria state, quoting them):")  # fmt: skip
HYBRID_VERSION = "hybrid-v1"  # the draft's wording and the merge: a change redoes every hybrid record


def items_of(eligibility: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every (field, item) of a draft, ages as {"value", "evidence"} items."""
    found = [(name, item) for name in LIST_FIELDS for item in eligibility.get(name) or []]
    found += [(name, eligibility[name]) for name in SINGLE_FIELDS if eligibility.get(name)]
    for name in AGE_FIELDS:
        origin = (eligibility.get("origins") or {}).get(name) or {}
        if eligibility.get(name) is not None and origin.get("evidence"):
            found.append((name, {"value": eligibility[name], "evidence": origin["evidence"]}))
    return found


def criterion_of(item: dict[str, Any]) -> str | None:
    return (item.get("evidence") or {}).get("criterion_id")


def load_relevant(path: Path = RELEVANT_FILE) -> re.Pattern:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return re.compile("|".join(f"(?:{line})" for line in lines if line and not line.startswith("#")), re.I)


RELEVANT = load_relevant()


def confident(criterion: Criterion, eligibility: dict[str, Any]) -> bool:
    """The rules made items quoting the criterion and their quotes cover `COVERAGE` of its text, or the
    rules found nothing in it and it names nothing the contract's fields record (hybrid_relevant.txt)."""
    quotes = [item["evidence"].get("quote") or "" for _, item in items_of(eligibility) if criterion_of(item) == criterion.id]
    if not quotes:
        return RELEVANT.search(criterion.text) is None
    covered = [False] * len(criterion.text)
    for quote in quotes:
        span = locate(criterion.text, quote, [])
        if span:
            covered[span[0] : span[1]] = [True] * (span[1] - span[0])
    return sum(covered) >= COVERAGE * len(criterion.text.strip())


def draft_note(criteria: list[Criterion]) -> str:
    """The rules' items for these criteria, as the model reads them (recomputed: the rules are pure)."""
    items = [{"field": name, **{key: value for key, value in item.items() if key != RULE_KEY}}
             for name, item in items_of(extract_eligibility(criteria))]  # fmt: skip
    if not items:
        return f"{DRAFT_HEADING}\n(nothing)"
    return DRAFT_HEADING + "\n" + "\n".join(json.dumps(item, ensure_ascii=False) for item in items)


def supported(item: dict[str, Any], criteria: dict[str, Criterion]) -> bool:
    """The item's quote is in the text of the criterion it names."""
    evidence = item.get("evidence") or {}
    criterion = criteria.get(evidence.get("criterion_id"))
    return criterion is not None and locate(criterion.text, evidence.get("quote") or "", []) is not None


def combine(rules: dict[str, Any], model: dict[str, Any], sent: list[Criterion]) -> tuple[dict[str, Any], list[str]]:
    """The rules draft with the model's answer for the `sent` criteria merged in (module docstring)."""
    by_id = {c.id: c for c in sent}
    warnings: list[str] = []
    ruled: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for name, item in items_of(rules):
        ruled.setdefault((name, criterion_of(item)), []).append(item)
    answered: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for name, item in items_of(model):
        cid = criterion_of(item)
        if cid in by_id or (name, cid) not in ruled:  # the model speaks only for the criteria it was sent
            answered.setdefault((name, cid), []).append(item)
    merged = dict(ruled)
    for key, items in answered.items():
        if key not in ruled:
            merged[key] = items  # an addition: grounded by assemble
        elif all(supported(item, by_id) for item in items):
            merged[key] = items  # a correction (or confirmation) the criterion's text supports
        else:
            bad = next(item for item in items if not supported(item, by_id))
            warnings.append(f"hybrid: rejected the model's {key[0]} for {key[1]}: its quote "
                            f"{(bad.get('evidence') or {}).get('quote', '')[:80]!r} is not in that criterion; "
                            "kept the rules' item")  # fmt: skip
    eligibility: dict[str, Any] = {name: [] for name in LIST_FIELDS}
    eligibility.update({name: None for name in SINGLE_FIELDS}, origins={})
    for (name, _), items in merged.items():
        for item in items:
            if name in LIST_FIELDS:
                eligibility[name].append(item)
            elif name in AGE_FIELDS:
                current = eligibility.get(name)
                if current is None or STRICTER[name](current, item["value"]) == item["value"]:
                    eligibility[name] = item["value"]
                    eligibility["origins"][name] = {"origin": "text", "evidence": item["evidence"]}
            elif eligibility.get(name) is None:
                eligibility[name] = item
    return eligibility, warnings


class HybridBackend:
    """A RulesBackend and an OpenAIBackend composed (module docstring)."""

    name = "hybrid"

    def __init__(self, rules: RulesBackend, llm: OpenAIBackend) -> None:
        self.rules, self.llm = rules, llm
        llm.note = draft_note

    @property
    def model(self) -> str | None:
        return self.llm.model

    @property
    def client(self) -> Any:
        return self.llm.client

    @property
    def prompt_version(self) -> str:
        """Both versions: a record redoes when the rules or the model's prompt change."""
        return f"{HYBRID_VERSION}+{self.rules.prompt_version}+{self.llm.prompt_version}"

    @property
    def answer_version(self) -> str:
        return canonical_sha256({"hybrid": HYBRID_VERSION, "coverage": COVERAGE, "rules": self.rules.prompt_version,
                                 "llm": self.llm.answer_version})  # fmt: skip

    @property
    def prices(self) -> dict[str, dict[str, float]]:
        return self.llm.prices

    def to_send(self, eligibility: dict[str, Any], criteria: list[Criterion]) -> list[Criterion]:
        return [c for c in criteria if not confident(c, eligibility)]

    def parts(self, criteria: list[Criterion]) -> list[list[Criterion]]:
        """The requests a trial costs (for the estimate before a run): none when the rules account for it."""
        return self.llm.parts(self.to_send(extract_eligibility(criteria), criteria))

    def input_tokens_estimate(self, trial: Trial, criteria: list[Criterion]) -> int:
        return self.llm.input_tokens_estimate(trial, self.to_send(extract_eligibility(criteria), criteria))

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        rules = (await self.rules.extract(trial, criteria)).eligibility
        sent = self.to_send(rules, criteria)
        if not sent:
            return Draft(eligibility=rules, cost_usd=0.0)
        return merged(rules, await self.llm.extract(trial, sent), sent)


def merged(rules: dict[str, Any], answer: Draft, sent: list[Criterion]) -> Draft:
    """The model's draft for the `sent` criteria merged into the rules' (`combine`), its usage kept."""
    eligibility, warnings = combine(rules, answer.eligibility, sent)
    return Draft(eligibility=eligibility, input_tokens=answer.input_tokens, output_tokens=answer.output_tokens,
                 cost_usd=answer.cost_usd, warnings=[w for w in answer.warnings if w != NO_ITEMS] + warnings)  # fmt: skip
