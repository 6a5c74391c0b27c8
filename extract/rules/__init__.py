"""The `rules` backend: deterministic extraction with no LLM, the embedded default.

Each finder module reads one criterion at a time and yields `(field, item)` pairs in the contract's
plain-data shape, quoting the criterion text it matched (`evidence: {criterion_id, quote}`); this
module merges them into one draft. Vocabularies (marker aliases, drug lexicon, analytes, units)
are data files in `vocab/`, for curators to extend without touching code.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extract.errors import positive_env
from extract.hashing import canonical_sha256, files_sha256
from extract.rules import ages, biomarkers, cancer_types, disease, labs, performance, stage, therapies
from extract.rules.vocab import VOCAB_DIR, built_dir, load_all
from extract.text import SEGMENTER_VERSION, Reading, reading
from schemas import Criterion, Trial
from schemas.fields import LIST_FIELDS, RULE_KEY, SINGLE_FIELDS, STRICTER

if TYPE_CHECKING:
    from extract.backend import Draft

RULES_DIR = Path(__file__).parent

FINDERS = (
    ages.find,
    cancer_types.find,
    biomarkers.find,
    stage.find,
    performance.find,
    therapies.find,
    labs.find,
    disease.find,
)


def rules_version(code_dir: Path = RULES_DIR, vocab_dir: Path = VOCAB_DIR, segmenter: str = SEGMENTER_VERSION) -> str:
    """What made a rules record: the rules' code (and its trigger rules, context.tsv), every vocabulary file (in sub-folders too, and the built
    ones wherever ELIGEX_VOCAB_DIR puts them) and the segmenter. Any edit to one of them is a new version,
    so `extract` redoes the records it may change."""
    code = files_sha256(code_dir, [*code_dir.glob("*.py"), *code_dir.glob("*.tsv")])  # context.tsv is code as data
    built = built_dir()  # ELIGEX_VOCAB_DIR may put the built files outside vocab/
    folders = [vocab_dir] if vocab_dir != VOCAB_DIR or built.is_relative_to(vocab_dir) else [vocab_dir, built]
    vocabularies = [files_sha256(folder, (p for p in folder.rglob("*") if _is_data(p, folder))) for folder in folders]
    return "rules-" + canonical_sha256({"code": code, "vocabularies": vocabularies, "segmenter": segmenter})[:12]


def _is_data(path: Path, root: Path) -> bool:
    """A vocabulary file: not a folder, and nothing hidden or cached (an editor's swap file, __pycache__)."""
    parts = path.relative_to(root).parts
    return path.is_file() and not any(part.startswith((".", "__")) for part in parts)


# Seconds of rules work one trial may take (ELIGEX_RULES_BUDGET): a trial takes milliseconds, a
# hostile one (megabytes in one criterion) would hold the run for minutes; it becomes that trial's error.
DEFAULT_BUDGET_SECONDS = 10.0


class BudgetExceeded(Exception):
    """A trial's rules took longer than the budget: its error row, and the run goes on."""


class RulesBackend:
    name = "rules"
    model = None

    def __init__(self) -> None:
        self.prompt_version = rules_version()
        self.budget_seconds = positive_env("ELIGEX_RULES_BUDGET", DEFAULT_BUDGET_SECONDS)

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        # Imported here: extract.backend checks every record with extract.consistency, which reads the
        # rules' own patterns, so the rules cannot import extract.backend while they load.
        from extract.backend import Draft

        load_all()  # once: the first trial's budget does not pay for loading the vocabularies
        return Draft(eligibility=extract_eligibility(criteria, budget_seconds=self.budget_seconds))


def extract_eligibility(criteria: list[Criterion], budget_seconds: float | None = None) -> dict[str, Any]:
    """The draft eligibility of a trial's criteria; BudgetExceeded once the finders have taken longer than
    `budget_seconds` (checked after each finder's criterion, so a slow one overruns by its own time)."""
    eligibility: dict[str, Any] = {name: [] for name in LIST_FIELDS}
    eligibility.update({name: None for name in SINGLE_FIELDS}, origins={})
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    for criterion in criteria:
        # The finders read entities decoded and comparators in ASCII; their quotes are given back in the
        # criterion's own words, so that evidence stays exact in the registry's text.
        read = reading(criterion.text)
        as_read = criterion if read.text is criterion.text else criterion.model_copy(update={"text": read.text})
        for finder in FINDERS:
            for name, item in finder(as_read):
                item = _quoted_in_original(read, dict(item, **{RULE_KEY: finder.__module__.removeprefix('extract.')}))
                _merge(eligibility, name, item)
            if deadline is not None and time.monotonic() > deadline:
                raise BudgetExceeded(
                    f"the rules took longer than the trial's time budget of {budget_seconds:g} s (ELIGEX_RULES_BUDGET) "
                    f"at criterion {criterion.id} of {len(criteria)} ({len(criterion.text):,} characters)"
                )
    eligibility["biomarkers"] = biomarkers.merge_definitions(eligibility["biomarkers"], criteria)
    return eligibility


def _quoted_in_original(read: Reading, item: dict[str, Any]) -> dict[str, Any]:
    evidence = item.get("evidence")
    if read.text is read.original or not evidence or not evidence.get("quote"):
        return item
    return dict(item, evidence=dict(evidence, quote=read.quote_in_original(evidence["quote"])))


def _without_provenance(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key not in ("evidence", RULE_KEY)}


def _merge(eligibility: dict[str, Any], name: str, item: dict[str, Any]) -> None:
    if name in LIST_FIELDS:
        # The same fact stated again (a definition restating "HER2-positive", an exclusion restating
        # an inclusion's threshold) is kept once, grounded on its first statement.
        fact = _without_provenance(item)
        if all(fact != _without_provenance(kept) for kept in eligibility[name]):
            eligibility[name].append(item)
    elif name in STRICTER:
        # `item` is {"value": years, "evidence": ...}; the stricter of several statements wins.
        current, stricter = eligibility.get(name), STRICTER[name]
        if current is None or stricter(current, item["value"]) == item["value"]:
            eligibility[name] = item["value"]
            eligibility["origins"][name] = {"origin": "text", "evidence": item["evidence"]}
    elif eligibility.get(name) is None:
        eligibility[name] = item  # the first statement, grounded on it
    else:
        # Several criteria each state part of one fact (stage groups in one, settings in another):
        # its lists are the union, the rest stays as first stated.
        kept = eligibility[name]
        for key, values in item.items():
            if isinstance(values, list):
                kept[key] = kept.get(key, []) + [value for value in values if value not in kept.get(key, [])]
