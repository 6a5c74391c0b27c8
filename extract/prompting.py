"""What the prompt is made of besides its own text: the labelling conventions, included from the one place
the project keeps them (evals/GUIDE.md, between markers), and few-shot examples from the dev gold, chosen
per trial by similarity of criteria text (TF-IDF cosine, in pure Python).

The examples go in the user message, after the system prompt, so that the request's leading part stays
identical across trials (what a provider's prompt cache serves). They come from the dev split only: the
test split is never a source of examples (`FewShot` refuses one).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Collection

from extract.errors import InputError
from extract.hashing import canonical_sha256
from schemas import Criterion
from schemas.fields import ITEM_FIELDS

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "evals" / "GUIDE.md"
GOLD = ROOT / "evals" / "gold"
SPLITS = ROOT / "evals" / "splits.json"

METHOD = "tfidf-cosine-v1"  # how examples are chosen: part of the prompt's version
DEFAULT_K = 2  # examples per request (ELIGEX_FEWSHOT_K; 0 sends none)
MAX_CRITERIA = 4  # criteria per example: a few, for a compact example

# `<!-- include evals/GUIDE.md#name -->` in a prompt file stands for the guide's text between
# `<!-- prompt:name -->` and `<!-- /prompt:name -->`.
_INCLUDE = re.compile(r"<!-- include evals/GUIDE\.md#([a-z-]+) -->")
_TOKEN = re.compile(r"[a-z0-9]+(?:[./][a-z0-9]+)*")


def guide_section(name: str, guide: Path = GUIDE, text: str | None = None) -> str:
    """The guide's section marked `name`; `text` is the guide's text when the caller has read it."""
    text = guide.read_text(encoding="utf-8") if text is None else text
    match = re.search(rf"<!-- prompt:{name} -->\n(.*?)\n<!-- /prompt:{name} -->", text, re.S)
    if match is None:
        raise InputError(f"{guide.name} has no section marked <!-- prompt:{name} -->")
    return match.group(1).strip()


def expand(system: str, guide: Path = GUIDE) -> str:
    """The prompt's text with each include replaced by the guide's marked section (the guide read once)."""
    text = guide.read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda match: guide_section(match.group(1), guide, text), system)


# -- few-shot examples ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    nct_id: str
    criteria: tuple[str, ...]  # the gold quotes, shown as criteria (inc-1, inc-2, exc-1...: ids the answer quotes)
    answer: dict[str, Any]  # the gold items grounded in those criteria, in the answer's shape
    ids: tuple[str, ...]  # each criterion's id, numbered within its section as the trial's are

    def render(self, fields: Collection[str] | None = None) -> str:
        """The example as the model reads it; its answer's items of `fields` only, when given."""
        # "inc-1: text", not the trial's "[inc-1] text": an example's ids are never taken for the trial's
        lines = [f"{id_}: {text}" for id_, text in zip(self.ids, self.criteria)]
        answer = self.answer if fields is None else {name: value for name, value in self.answer.items() if name in fields}
        return "Criteria:\n" + "\n".join(lines) + "\nAnswer: " + json.dumps(answer, ensure_ascii=False)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def example(nct_id: str, eligibility: dict[str, Any], most: int = MAX_CRITERIA) -> Example | None:
    """A gold trial as an example: its first quotes, one field after another in turn (variety over
    depth), and every gold item grounded in those quotes, with evidence as the model must give it."""
    quoted: dict[str, list[dict[str, Any]]] = {}
    for field in ITEM_FIELDS:
        value = eligibility.get(field.name)
        for item in (value or []) if field.many else ([value] if value else []):
            quoted.setdefault(field.name, []).append(item)
    order: list[str] = []
    for round_ in range(max((len(items) for items in quoted.values()), default=0)):
        for items in quoted.values():
            if round_ < len(items) and (quote := items[round_]["evidence"]["quote"]) not in order and len(order) < most:
                order.append(quote)
    if not order:
        return None
    # a quote inside another chosen one is a span of that criterion, not a criterion of its own
    shown = [quote for quote in order if not any(quote != other and quote in other for other in order)]
    items = [item for field_items in quoted.values() for item in field_items]
    sections = {quote: _section(quote, items) for quote in shown}
    shown.sort(key=lambda quote: sections[quote] != "inc")  # inclusions first, as a trial lists them
    numbered: Counter[str] = Counter()
    ids = []
    for quote in shown:
        numbered[sections[quote]] += 1
        ids.append(f"{sections[quote]}-{numbered[sections[quote]]}")
    answer: dict[str, Any] = {}
    for field in ITEM_FIELDS:
        kept = [item | {"evidence": {"criterion_id": ids[home], "quote": item["evidence"]["quote"]}}
                for item in quoted.get(field.name, []) if (home := _home(item["evidence"]["quote"], shown)) is not None]  # fmt: skip
        if kept:
            answer[field.name] = kept if field.many else kept[0]
    return Example(nct_id, tuple(shown), answer, tuple(ids))


def _home(quote: str, criteria: list[str]) -> int | None:
    """The index of the first criterion holding the quote, None when none does."""
    return next((index for index, text in enumerate(criteria) if quote in text), None)


def _section(quote: str, items: list[dict[str, Any]]) -> str:
    """"inc" or "exc": the section of the gold criterion the quote is from, by the criterion ids of the
    gold quotes within it (evals/add_criterion_ids.py); "inc" when the gold does not say."""
    for item in items:
        evidence = item["evidence"]
        if evidence.get("criterion_id") and evidence["quote"] in quote:
            return evidence["criterion_id"].split("-")[0]
    return "inc"


def split(name: str, splits: Path = SPLITS) -> list[str]:
    from extract.evaluate.harness import split_ids  # the one reader of splits.json (imported late: it brings the reports)

    return split_ids(name, splits)


@functools.lru_cache(maxsize=4)
def dev_examples(gold: Path = GOLD, splits: Path = SPLITS) -> tuple[Example, ...]:
    """The dev gold as examples, read once a process: every backend built reads the same 118 files."""
    examples = []
    for nct_id in sorted(split("dev", splits)):
        document = json.loads((gold / f"{nct_id}.json").read_text(encoding="utf-8"))
        if (found := example(nct_id, document["eligibility"])) is not None:
            examples.append(found)
    return tuple(examples)


@dataclass(frozen=True)
class FewShot:
    """k examples per trial, the most similar by TF-IDF cosine of criteria text, ties by NCT id."""

    examples: tuple[Example, ...]
    k: int = DEFAULT_K
    splits: Path = SPLITS

    def __post_init__(self) -> None:
        leaked = sorted({e.nct_id for e in self.examples} & set(split("test", self.splits)))
        if leaked:
            raise InputError(f"few-shot examples may come from the dev gold only, not the test split: {', '.join(leaked)}")

    @classmethod
    def from_environment(cls) -> FewShot:
        value = os.environ.get("ELIGEX_FEWSHOT_K", "")
        if value and not (value.isdigit()):
            raise InputError(f"ELIGEX_FEWSHOT_K must be a whole number (0 for none), not {value!r}")
        return cls(dev_examples(), int(value) if value else DEFAULT_K)

    @cached_property
    def version(self) -> str:
        """Changes with the example set, k and the selection method."""
        return canonical_sha256({"method": METHOD, "k": self.k, "examples": [asdict(e) for e in self.examples]})[:12]

    @cached_property
    def _index(self) -> tuple[dict[str, float], list[tuple[dict[str, float], float]]]:
        documents = [Counter(tokens(" ".join(e.criteria))) for e in self.examples]
        frequency = Counter(token for document in documents for token in document)
        idf = {token: math.log((1 + len(documents)) / (1 + count)) + 1 for token, count in frequency.items()}
        return idf, [_weighted(document, idf) for document in documents]

    def select(self, nct_id: str | Collection[str], criteria: list[Criterion]) -> list[Example]:
        """The k examples most like these criteria; never the trial's own gold (a pack's: any of its trials')."""
        if self.k == 0 or not self.examples:
            return []
        own = {nct_id} if isinstance(nct_id, str) else set(nct_id)
        idf, vectors = self._index
        query, query_norm = _weighted(Counter(tokens(" ".join(c.text for c in criteria))), idf)
        scored = []
        for example_, (vector, norm) in zip(self.examples, vectors):
            if example_.nct_id in own:
                continue
            dot = sum(weight * vector.get(token, 0.0) for token, weight in query.items())
            scored.append((-(dot / (norm * query_norm)) if norm and query_norm else 0.0, example_.nct_id, example_))
        return [example_ for _, _, example_ in sorted(scored, key=lambda s: s[:2])[: self.k]]

    def message(self, nct_id: str | Collection[str], criteria: list[Criterion], fields: Collection[str] | None = None,
                then: str = "Now the trial to read.") -> str:  # fmt: skip
        """The examples as the opening of the trial's message (a pack's), or nothing; answering `fields`
        only, when given."""
        chosen = self.select(nct_id, criteria)
        if not chosen:
            return ""
        parts = [f"Example {number} (another trial, labelled):\n{e.render(fields)}" for number, e in enumerate(chosen, 1)]
        return "\n\n".join(parts) + f"\n\n{then}\n\n"


def _weighted(counts: Counter[str], idf: dict[str, float]) -> tuple[dict[str, float], float]:
    vector = {token: count * idf.get(token, 0.0) for token, count in counts.items() if token in idf}
    return vector, math.sqrt(sum(weight * weight for weight in vector.values()))
