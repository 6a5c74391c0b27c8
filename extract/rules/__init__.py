"""The `rules` backend: deterministic extraction with no LLM, the embedded default.

Each finder module reads one criterion at a time and yields `(field, item)` pairs in the contract's
plain-data shape, quoting the criterion text it matched (`evidence: {criterion_id, quote}`); this
module merges them into one draft. Vocabularies (marker aliases, drug lexicon, analytes, units)
are data files in `vocab/`, for curators to extend without touching code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from extract.hashing import canonical_sha256, files_sha256
from extract.rules import ages, biomarkers, cancer_types, disease, labs, performance, stage, therapies
from extract.rules.vocab import VOCAB_DIR
from extract.text import SEGMENTER_VERSION
from schemas import Criterion, Trial

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
_LIST_FIELDS = ("cancer_types", "biomarkers", "performance_status", "prior_therapies", "labs")
_SCALAR_FIELDS = ("min_age_years", "max_age_years")


def rules_version(code_dir: Path = RULES_DIR, vocab_dir: Path = VOCAB_DIR, segmenter: str = SEGMENTER_VERSION) -> str:
    """What made a rules record: the rules' code, every vocabulary file (in sub-folders too) and the
    segmenter. Any edit to one of them is a new version, so `extract` redoes the records it may change."""
    code = files_sha256(code_dir, code_dir.glob("*.py"))
    vocabularies = files_sha256(vocab_dir, (path for path in vocab_dir.rglob("*") if _is_data(path, vocab_dir)))
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
    eligibility: dict[str, Any] = {name: [] for name in _LIST_FIELDS}
    eligibility.update(stage=None, brain_metastases=None, measurable_disease=None, origins={})
    for criterion in criteria:
        for name, item in _found(criterion):
            _merge(eligibility, name, item)
    return eligibility


def _found(criterion: Criterion) -> Iterator[tuple[str, dict[str, Any]]]:
    for finder in FINDERS:
        yield from finder(criterion)


def _without_evidence(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key != "evidence"}


def _merge(eligibility: dict[str, Any], name: str, item: dict[str, Any]) -> None:
    if name in _LIST_FIELDS:
        # The same fact stated again (a definition restating "HER2-positive", an exclusion restating
        # an inclusion's threshold) is kept once, grounded on its first statement.
        fact = _without_evidence(item)
        if all(fact != _without_evidence(kept) for kept in eligibility[name]):
            eligibility[name].append(item)
    elif name in _SCALAR_FIELDS:
        # `item` is {"value": years, "evidence": ...}; the stricter of several statements wins.
        current = eligibility.get(name)
        stricter = max if name == "min_age_years" else min
        if current is None or stricter(current, item["value"]) == item["value"]:
            eligibility[name] = item["value"]
            eligibility["origins"][name] = {"origin": "text", "evidence": item["evidence"]}
    elif name == "stage" and eligibility["stage"] is not None:
        # Several criteria may each name part of the stage: the union, grounded on the first.
        merged = eligibility["stage"]
        for key in ("groups", "settings"):
            merged[key] = merged[key] + [v for v in item[key] if v not in merged[key]]
    elif eligibility.get(name) is None:
        eligibility[name] = item  # brain_metastases, measurable_disease: the first statement
