"""The `rules` backend: deterministic extraction with no LLM, the embedded default.

Each finder module reads one criterion at a time and yields `(field, item)` pairs in the contract's
plain-data shape, quoting the criterion text it matched (`evidence: {criterion_id, quote}`); this
module merges them into one draft. Vocabularies (marker aliases, drug lexicon, analytes, units)
are data files in `vocab/`, for curators to extend without touching code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from extract.hashing import canonical_sha256, files_sha256
from extract.rules import ages, biomarkers, cancer_types, disease, labs, performance, stage, therapies
from extract.rules.vocab import VOCAB_DIR, built_dir
from extract.text import SEGMENTER_VERSION
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
    folders = dict.fromkeys([vocab_dir, built_dir()]) if vocab_dir == VOCAB_DIR else [vocab_dir]
    vocabularies = [files_sha256(folder, (p for p in folder.rglob("*") if _is_data(p, folder))) for folder in folders]
    return "rules-" + canonical_sha256({"code": code, "vocabularies": vocabularies, "segmenter": segmenter})[:12]


def _is_data(path: Path, root: Path) -> bool:
    """A vocabulary file: not a folder, and nothing hidden or cached (an editor's swap file, __pycache__)."""
    parts = path.relative_to(root).parts
    return path.is_file() and not any(part.startswith((".", "__")) for part in parts)


class RulesBackend:
    name = "rules"
    model = None

    def __init__(self) -> None:
        self.prompt_version = rules_version()

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        # Imported here: extract.backend checks every record with extract.consistency, which reads the
        # rules' own patterns, so the rules cannot import extract.backend while they load.
        from extract.backend import Draft

        return Draft(eligibility=extract_eligibility(criteria))


def extract_eligibility(criteria: list[Criterion]) -> dict[str, Any]:
    eligibility: dict[str, Any] = {name: [] for name in LIST_FIELDS}
    eligibility.update({name: None for name in SINGLE_FIELDS}, origins={})
    for criterion in criteria:
        for finder in FINDERS:
            for name, item in finder(criterion):
                _merge(eligibility, name, dict(item, **{RULE_KEY: finder.__module__.removeprefix('extract.')}))
    eligibility["biomarkers"] = biomarkers.merge_definitions(eligibility["biomarkers"], criteria)
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
