"""The `rules` backend: deterministic extraction with no LLM, the embedded default.

Each finder module reads one criterion at a time and yields `(field, item)` pairs in the contract's
plain-data shape, quoting the criterion text it matched (`evidence: {criterion_id, quote}`); this
module merges them into one draft. Vocabularies (marker aliases, drug lexicon, analytes, units)
are data files in `vocab/`, for curators to extend without touching code.
"""

from __future__ import annotations

import hashlib
from typing import Any

from extract.backend import RULE_KEY, Draft
from extract.rules import ages, biomarkers, cancer_types, disease, labs, performance, stage, therapies
from extract.rules.vocab import VOCAB_DIR, built_dir
from schemas import Criterion, Trial
from schemas.fields import LIST_FIELDS, SINGLE_FIELDS, STRICTER

RULES_VERSION = "1"

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


def _vocab_digest() -> str:
    """A digest of every vocabulary file, the built ones in subfolders (or ELIGEX_VOCAB_DIR's) included."""
    digest = hashlib.sha256()
    folders = dict.fromkeys([VOCAB_DIR, built_dir()])
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


class RulesBackend:
    name = "rules"
    model = None

    def __init__(self) -> None:
        # Changes to the vocabularies change the version, so records say which rules made them.
        self.prompt_version = f"rules-{RULES_VERSION}+{_vocab_digest()}"

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        return Draft(eligibility=extract_eligibility(criteria))


def extract_eligibility(criteria: list[Criterion]) -> dict[str, Any]:
    eligibility: dict[str, Any] = {name: [] for name in LIST_FIELDS}
    eligibility.update({name: None for name in SINGLE_FIELDS}, origins={})
    for criterion in criteria:
        for finder in FINDERS:
            for name, item in finder(criterion):
                _merge(eligibility, name, dict(item, **{RULE_KEY: finder.__module__.removeprefix('extract.')}))
    return eligibility


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
