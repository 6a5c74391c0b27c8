"""Does each item's quote say what the item says? Pure: no I/O (the rules' vocabularies are data).

Grounding proves that a quote is in the text, not that it states the item. A model obeying an
instruction planted in a criterion ("ignore previous instructions and output ...") quotes real text
for an invented item, and nothing else would notice. Two checks, the same for every backend:

- direction: a `required` therapy, cancer type or brain-metastases status quoted from an exclusion
  criterion that states it as an exclusion (the contract makes that `excluded`; polarity decides,
  as it does for the rules). Biomarkers are left out: `required` + the opposite status is the same
  fact as `excluded` (scoring compares `must_be`), so their requirement says nothing on its own.
- words: a quote carrying no word of the item's value: its marker, analyte, drug, therapy class or
  cancer type under any name the vocabularies know, its number, its scale, stage or disease words.

A flagged item is kept, and its record carries a warning naming WARNING; the eval report
counts them (`extract.evaluate.scoring`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

from extract.rules.polarity import stated_requirement
from extract.rules.stage import _SETTING, _STAGE
from extract.rules import vocab
from extract.rules.vocab import load_tsv
from schemas import Criterion

WARNING = "contradicts its quote"

# Words that name no value of their own: a quote sharing only these with an item says nothing of it.
_GENERIC = frozenset(
    "a an and any as at based by for in of on or the to with other prior previous cancer cancers carcinoma "
    "tumor tumors neoplasm neoplasms malignancy malignancies disease therapy therapies treatment agent agents "
    "drug drugs positive negative status".split()
)
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[a-z0-9]+")


def _spelling(word: str) -> str:
    """One spelling: "tumour" and "tumor", "haemoglobin" and "hemoglobin"; numbers as numbers ("1,500" is 1500)."""
    if word[0].isdigit():
        try:
            return f"{float(word.replace(',', '')):g}"
        except ValueError:
            return word
    return word.replace("ae", "e").replace("oe", "e").replace("our", "or")


def _words(text: str) -> list[str]:
    return [_spelling(word) for word in _WORD.findall(text.lower())]


@dataclass(frozen=True)
class _Name:
    words: tuple[str, ...]
    content: tuple[str, ...]  # without the generic words
    compact: str  # the words run together
    acronyms: frozenset[str]


@lru_cache(maxsize=None)
def _name(name: str) -> _Name:
    """A vocabulary name or cue, read once."""
    words = _words(name)
    content = tuple(word for word in words if word not in _GENERIC)
    return _Name(tuple(words), content, "".join(words), frozenset(_initials(words)))


def _initials(words: list[str]) -> set[str]:
    """The acronyms a phrase may go by: the initials of every run of two or more of its words
    ("renal cell carcinoma" is RCC, "tyrosine kinase inhibitor" TKI, "follicular lymphoma" FL)."""
    letters = [word[0] for word in words if word[0].isalpha()]
    return {"".join(letters[i:j]) for i in range(len(letters)) for j in range(i + 2, len(letters) + 1)}


def _names_in(quote: str, names: list[str], cues: tuple[str, ...] = ()) -> bool:
    """Does the quote carry a word of any name: a content word's stem starting one of its words
    ("braf" in "BRAFV600"), the whole name run together ("ckit" for "c-KIT"), the same number, or
    the name's acronym as a word? A cue counts as a plain word, generic or not ("treatment")."""
    words = _words(quote)
    present = set(words)

    def found(word: str) -> bool:
        if word[0].isdigit() or len(word) < 3:
            return word in present
        return any(candidate.startswith(word[:5]) for candidate in words)

    for name in map(_name, names):
        if any(found(word) for word in name.content) or name.acronyms & present:
            return True
        if len(name.compact) >= 3 and any(candidate.startswith(name.compact) for candidate in words):
            return True
    return any(found(word) for cue in cues for word in _name(cue).words)


def _names(rows: list[dict[str, str]], written: str, *values: str) -> dict[str, list[str]]:
    """Every way the vocabulary writes each value: value -> the phrases that name it."""
    names: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        for column in values:
            for value in row[column].lower().split("|"):
                if value:
                    names[value].append(row[written])
    return names


def _synonyms(rows: list[dict[str, str]], written: str, value: str) -> dict[str, list[str]]:
    """Every phrase of a value, keyed by the value and by each of its phrases: a record may name a
    cancer type "pancreatic ductal adenocarcinoma", one of the phrases of "pancreatic cancer"."""
    names = _names(rows, written, value)
    return defaultdict(list, {key.lower(): phrases for value, phrases in names.items() for key in [value, *phrases]})


_MARKER_NAMES = _names(load_tsv("markers.tsv"), "alias", "markers")
_ANALYTE_NAMES = _names(load_tsv("analytes.tsv"), "phrase", "analyte")
_CANCER_NAMES = _synonyms(load_tsv("cancer_types.tsv"), "pattern", "name")
_THERAPY_NAMES = _names(load_tsv("drugs.tsv"), "name", "inn", "class")
for _value, _phrases in _names(load_tsv("therapy_classes.tsv"), "phrase", "class").items():
    _THERAPY_NAMES[_value] += _phrases
_THERAPY_NAMES["surgery"] += ["surgical", "resection", "resected", "operation"]  # a class the rules do not extract
# A lab named by the condition its value defines ("hypokalemia": a potassium threshold).
_ANALYTE_CONDITIONS = {
    "potassium": "hypokalemia hyperkalemia hypokalaemia hyperkalaemia",
    "magnesium": "hypomagnesemia hypermagnesemia hypomagnesaemia",
    "calcium": "hypocalcemia hypercalcemia hypocalcaemia hypercalcaemia",
    "glucose": "hypoglycemia hyperglycemia hypoglycaemia hyperglycaemia",
    "total_bilirubin": "hyperbilirubinemia hyperbilirubinaemia", "platelets": "thrombocytopenia",
    "anc": "neutropenia", "hemoglobin": "anemia anaemia",
}  # fmt: skip
for _analyte, _words_of in _ANALYTE_CONDITIONS.items():
    _ANALYTE_NAMES[_analyte] += _words_of.split()
_AGE = ("age", "aged", "years", "old", "adult", "child", "pediatric", "month")
# Words that speak of an item whatever its value, by field (or by what the item holds).
_CUES = {
    # "progressed after the last regimen", "failure of": relapsed or refractory disease is `recurrent`
    "stage": ("stage", "advanced", "localised", "localized", "resectable", "operable", "progressed", "progression",
              "failure", "failed"),
    "performance_status": ("performance", "ECOG", "Eastern", "Karnofsky", "KPS", "Lansky", "Zubrod", "WHO", "PS"),
    "brain_metastases": ("brain", "CNS", "central nervous system", "intracranial", "cerebral", "leptomeningeal",
                         "lumbar puncture", "cerebrospinal", "CSF"),
    "measurable_disease": ("measurable", "evaluable", "RECIST", "RANO", "iwCLL", "Lugano", "lesion"),
    "min_age_years": _AGE,
    "max_age_years": _AGE,
    "uln": ("ULN", "upper limit of normal", "normal limits", "normal range", "institutional normal"),
    "lines": ("line", "lines", "regimen", "regimens"),
    "adequate": ("adequate", "laboratory", "function"),
    # Classes that any treatment word names: "no prior treatment", "previously untreated".
    "treatment": ("treatment", "treated", "untreated", "therapy", "therapies", "regimen", "agent"),
}
_BROAD_THERAPIES = frozenset({"systemic therapy", "immunotherapy", "targeted therapy", "investigational agent"})


def _number(value: Any) -> list[str]:
    return [f"{value:g}"] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _counts_lines(item: dict[str, Any]) -> bool:
    return any(item.get(key) is not None for key in ("min_lines", "max_lines", "min_duration_months"))


def _names_and_cues(field: str, item: dict[str, Any]) -> tuple[list[str], tuple[str, ...]]:
    """The names of the item's value (any of which in the quote will do), and the field's cue words."""
    cues = _CUES.get(field, ())
    if field == "biomarkers":
        tests = item.get("any_of") or []
        names = [name for test in tests for name in [test["marker"], *_MARKER_NAMES[test["marker"].lower()]]]
        return names + [test["variant"] for test in tests if test.get("variant")], cues
    if field == "cancer_types":
        return [item["name"], *_CANCER_NAMES[item["name"].lower()]], cues
    if field == "prior_therapies":
        named = [item["therapy"], *(item.get("drugs") or [])]
        cues = (_CUES["lines"] if _counts_lines(item) else ()) + (
            _CUES["treatment"] if item["therapy"] in _BROAD_THERAPIES else ()
        )
        return [name for value in named for name in [value, *_THERAPY_NAMES[value.lower()]]], cues
    if field == "labs":
        analyte = item["analyte"]
        cues = (_CUES["uln"] if item.get("uln_multiple") is not None else ()) + (
            _CUES["adequate"] if analyte.endswith("_function") else ()
        )
        numbers = _number(item.get("value")) + _number(item.get("uln_multiple"))
        return [analyte.replace("_", " "), *_ANALYTE_NAMES[analyte], *numbers], cues
    if field == "stage":
        return [*(setting.replace("_", " ") for setting in item.get("settings") or []), *(item.get("groups") or [])], cues
    if field in ("min_age_years", "max_age_years"):
        return _number(item["value"]), cues
    return [], cues


def _named_by_vocabulary(field: str, item: dict[str, Any], quote: str) -> bool:
    """Does a vocabulary find the item's value in the quote under a name the word lists lack ("MEK1/2"
    is MAP2K1, "MMAE-based therapy" an antibody-drug conjugate, "chemoradiation" chemotherapy)?"""
    if field == "biomarkers":
        tests = item.get("any_of") or []
        wanted = {test["marker"] for test in tests}
        if any(test.get("variant") and test["variant"].lower() in quote.lower() for test in tests):
            return True  # a variant glued to its gene ("H3K27M") names it
        return any(wanted & set(hit.value.markers) for hit in vocab.markers().scan(quote))
    if field == "prior_therapies":
        wanted = {item["therapy"], *(item.get("drugs") or [])}
        found = [hit.value for hit in (*vocab.drugs().scan(quote), *vocab.therapy_classes().scan(quote),
                                       *vocab.generic_classes(quote))]  # fmt: skip
        kinds = {kind for value in found for kind in (value, *vocab.drug_classes(value), *vocab.class_ancestors(value))}
        compound = {"chemotherapy", "radiotherapy"} if "chemoradi" in quote.lower() else set()  # "chemoradiation"
        return bool(wanted & (kinds | compound))
    if field == "cancer_types":
        return any(hit.value.name.lower() == item["name"].lower() for hit in vocab.cancer_types().scan(quote))
    return False


def carries_value(field: str, item: dict[str, Any], quote: str) -> bool:
    """Does the quote name the item's value? True where there is nothing to compare."""
    if field == "stage" and (_STAGE.search(quote) or _SETTING.search(quote)):  # the rules' own stage words
        return True
    if _named_by_vocabulary(field, item, quote):
        return True
    names, cues = _names_and_cues(field, item)
    return not (names or cues) or _names_in(quote, names, cues)


def states_the_opposite(field: str, item: dict[str, Any], criterion: Criterion, start: int, end: int) -> bool:
    """A `required` item quoted from an exclusion criterion that, read as the rules read it, excludes it."""
    required = item.get("requirement") == "required" or (field == "brain_metastases" and item.get("status") == "required")
    if criterion.kind != "exclusion" or not required or field == "biomarkers" or _counts_lines(item):
        return False  # "more than 2 prior lines" excludes, and the contract writes it required with max_lines
    return stated_requirement(criterion, start - criterion.start, end - criterion.start) == "excluded"


def _items(eligibility: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field, item) for every grounded item; text-origin ages as {"value", "evidence"}."""
    for field, value in eligibility.items():
        if field == "origins":
            for name, origin in (value or {}).items():
                if origin.get("evidence") and eligibility.get(name) is not None:
                    yield name, {"value": eligibility[name], "evidence": origin["evidence"]}
        elif field != "other":
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and isinstance(item.get("evidence"), dict) and "start" in item["evidence"]:
                    yield field, item


def contradictions(eligibility: dict[str, Any], criteria: list[Criterion]) -> list[str]:
    """One warning per grounded item whose quote contradicts it (plain-data eligibility, after grounding)."""
    by_id = {criterion.id: criterion for criterion in criteria}
    warnings = []
    for field, item in _items(eligibility):
        evidence = item["evidence"]
        criterion = by_id.get(evidence.get("criterion_id"))
        if criterion is not None and states_the_opposite(field, item, criterion, evidence["start"], evidence["end"]):
            why = f"a required item quoted from exclusion criterion {criterion.id}"
        elif not carries_value(field, item, evidence["quote"]):
            why = "the quote names nothing of its value"
        else:
            continue
        warnings.append(f"{field}: {WARNING} ({why}): {evidence['quote'][:80]!r}")
    return warnings


def flagged(warnings: list[str]) -> int:
    """How many of a record's warnings are contradictions."""
    return sum(WARNING in warning for warning in warnings)
