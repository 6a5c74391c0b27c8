"""Disease status: brain metastases (excluded / allowed_if_stable / allowed / required) and measurable disease.

Brain metastases: an exclusion of "active", "untreated" or "symptomatic" brain metastases, or one
that goes on to allow treated or stable ones, is `allowed_if_stable`; a plain exclusion is
`excluded`. In the inclusions, "brain metastases are allowed" is `allowed` (with a stability
condition, `allowed_if_stable`); a trial for patients with brain metastases is `required`.
Leptomeningeal disease alone does not set the field.

Measurable disease: "measurable disease per RECIST 1.1" is required with its standard; "measurable
or evaluable" / "evaluable disease" is not required.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from extract.rules.polarity import clause_bounds, cohort_specific, requirement
from schemas import Criterion

_BRAIN_METASTASES = re.compile(
    r"""(?ix)\b(?:brain|cns|central\s+nervous\s+system|intracranial|cerebral)(?:\s*\((?:CNS)\))?
        (?:\s+(?:or|and|and/or)\s+(?:leptomeningeal|spinal\s+cord|cns|central\s+nervous\s+system)(?:\s*\(CNS\))?)?
        \s+(?:metastas[ie]s|metastatic\s+disease|mets|lesions?|disease\s+(?:metastas[ie]s|involvement))\b
      |\bmetastas[ie]s\s+(?:to|in)\s+the\s+(?:brain|central\s+nervous\s+system|CNS)\b
      |\bbrain[\s-]metastatic\s+disease\b|(?<![\w-])CNS\s+(?:disease|involvement)\b"""
)
# Words that exclude only part of the brain metastases (the active ones) or let treated ones in.
_ONLY_ACTIVE = re.compile(
    r"(?i)\b(?:active|untreated|symptomatic|progressive|progressing|unstable|uncontrolled|new|growing|"
    r"not\s+(?:been\s+)?(?:treated|stable|controlled)|requir\w*\s+(?:steroids|corticosteroids|treatment|therapy))\b"
)
_STABLE_ALLOWED = re.compile(
    r"(?i)\b(?:treated|stable|asymptomatic|inactive|controlled)\b[^.;]{0,200}?\b(?:eligible|allowed|permitted|"
    r"may\s+(?:participate|be\s+(?:included|enrolled|eligible))|can\s+(?:participate|be\s+(?:included|enrolled)))\b"
    r"|\b(?:eligible|allowed|permitted)\b[^.;]{0,40}\b(?:if|provided|as\s+long\s+as)\b"
    r"|\b(?:unless|except)\b[^.;]{0,80}\b(?:treated|stable|asymptomatic)\b"
)
_ALLOWED = re.compile(r"(?i)\b(?:eligible|allowed|permitted|may\s+(?:participate|be\s+(?:included|enrolled)))\b")

_MEASURABLE = re.compile(r"(?i)(?<![\w-])(?:measurable|evaluable)\b")
_NOT_REQUIRED = re.compile(
    r"(?i)\bmeasurable\s+(?:disease\s+|lesions?\s+)?(?:and/or|or)\s+(?:non[\s-]?measurable|evaluable)|\bevaluable\s+(?:and/or\s+|or\s+)?measurable"
    r"|\b(?:and/or|or)\s+(?:non[\s-]?measurable|evaluable)\s+(?:disease|lesions?)"
)
_STANDARDS = (
    ("RECIST 1.1", r"RECIST[\s,]*(?:v(?:ersion)?\.?\s*)?1\.1|Response\s+Evaluation\s+Criteria\s+in\s+Solid\s+Tumou?rs\s*(?:\(RECIST\)\s*)?(?:,?\s*v(?:ersion)?\.?\s*)?1\.1"),
    ("mRECIST", r"\bmRECIST\b|modified\s+RECIST"),
    ("iRECIST", r"\biRECIST\b"),
    ("iRANO", r"\biRANO\b"),
    ("RANO", r"\bRANO\b|Response\s+Assessment\s+in\s+Neuro-?Oncology"),
    ("PCWG3", r"\bPCWG\s*-?3\b|Prostate\s+Cancer\s+(?:Clinical\s+Trials\s+)?Working\s+Group\s+3"),
    ("iwCLL", r"\biwCLL\b"),
    ("Lugano", r"\bLugano\b"),
    ("IMWG", r"\bIMWG\b|International\s+Myeloma\s+Working\s+Group"),
    ("RECIST", r"\bRECIST\b|Response\s+Evaluation\s+Criteria\s+in\s+Solid\s+Tumou?rs"),
)
_STANDARD = re.compile("|".join(f"(?P<s{index}>{pattern})" for index, (_, pattern) in enumerate(_STANDARDS)), re.IGNORECASE)
_SENTENCE_BREAK = re.compile(r"[.;]\s|\n")


# Cheap substring tests first: most criteria speak of neither, and the regexes are slow to rule that out.
_BRAIN_WORDS = ("brain", "cns", "nervous", "intracranial", "cerebral")
_MEASURABLE_WORDS = ("measurable", "evaluable")


def find(criterion: Criterion) -> Iterator[tuple[str, dict[str, Any]]]:
    lowered = criterion.text.lower()
    if cohort_specific(criterion.text):
        return
    brain = _brain_metastases(criterion) if any(word in lowered for word in _BRAIN_WORDS) else None
    if brain:
        yield "brain_metastases", brain
    measurable = _measurable_disease(criterion) if any(word in lowered for word in _MEASURABLE_WORDS) else None
    if measurable:
        yield "measurable_disease", measurable


def _brain_metastases(criterion: Criterion) -> dict[str, Any] | None:
    text = criterion.text
    match = _BRAIN_METASTASES.search(text)
    if not match:
        return None
    clause_start, clause_end = clause_bounds(text, match.start(), match.end())
    only_active = _ONLY_ACTIVE.search(text, clause_start, match.start()) or _ONLY_ACTIVE.search(text, match.end(), clause_end)
    stable_allowed = _STABLE_ALLOWED.search(text)
    if requirement(criterion, match.start(), match.end()) == "excluded":
        status = "allowed_if_stable" if only_active or stable_allowed else "excluded"
    elif stable_allowed:
        status = "allowed_if_stable"
    elif _ALLOWED.search(text, match.end()):
        status = "allowed"
    elif criterion.kind == "inclusion" and "metasta" in match.group(0).lower() and not _in_parentheses(text, match.start()):
        status = "required"  # not "ECOG 0-2 (for patients with CNS involvement)"
    else:
        return None  # an exclusion that negates brain metastases ("without brain metastases") says nothing clear
    end = stable_allowed.end() if stable_allowed and stable_allowed.start() < match.end() + 200 else match.end()
    start = only_active.start() if only_active and only_active.start() < match.start() else match.start()
    return {"status": status, "evidence": {"criterion_id": criterion.id, "quote": text[start : max(end, match.end())]}}


def _in_parentheses(text: str, position: int) -> bool:
    return text.count("(", 0, position) > text.count(")", 0, position)


def _measurable_disease(criterion: Criterion) -> dict[str, Any] | None:
    text = criterion.text
    match = _MEASURABLE.search(text)
    if not match or criterion.kind != "inclusion" or requirement(criterion, match.start(), match.end()) != "required":
        return None
    breaks = [m.end() for m in _SENTENCE_BREAK.finditer(text, 0, match.start())]
    following = _SENTENCE_BREAK.search(text, match.end())
    sentence_start, sentence_end = (breaks[-1] if breaks else 0), (following.start() if following else len(text))
    alternatives = _NOT_REQUIRED.search(text, sentence_start, sentence_end)
    required = match.group(0).lower() == "measurable" and not alternatives
    standard = _STANDARD.search(text, match.start(), sentence_end)
    end = max(match.end(), alternatives.end() if alternatives else 0, standard.end() if standard else 0)
    return {
        "required": required,
        "standard": _STANDARDS[int(standard.lastgroup[1:])][0] if standard else None,
        "evidence": {"criterion_id": criterion.id, "quote": text[match.start() : end]},
    }
