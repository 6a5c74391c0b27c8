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

from extract.rules.context import annotate
from extract.rules.polarity import (
    clause_bounds,
    cohort_specific,
    evidence,
    scoped_to_cohort,
    sentence_bounds,
    stated_requirement,
)
from schemas import Criterion

_BRAIN_METASTASES = re.compile(
    r"""(?ix)(?:\(|\b)(?:brain|cns|central\s+nervous\s+system|intracranial|cerebral)(?:\s*\((?:CNS)\)|\))?
        (?:\s+(?:or|and|and/or)\s+(?:leptomeningeal|spinal\s+cord|cns|central\s+nervous\s+system)(?:\s*\(CNS\))?)?
        \s+(?:metastas[ie]s|metastatic\s+disease|mets|lesions?|involvement|disease\s+(?:metastas[ie]s|involvement))\b
      |(?<![\w-])(?:CNS|central\s+nervous\s+system)\s+(?:lymphoma|leuka?emia)\b
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
    r"|\b(?:eligible|allowed|permitted)\b[^.;]{0,40}\b(?:if|provided|as\s+long\s+as|after)\b"
    r"|\b(?:unless|except)\b[^.;]{0,80}\b(?:treated|stable|asymptomatic)\b"
)

# "RECIST-evaluable disease" counts; "non-measurable" does not.
_MEASURABLE = re.compile(r"(?i)(?<!\w)(?<!non-)(?<!non\s)(?:measurable|evaluable)\b")
# "Evaluable disease progression": how progression is judged, not what disease the patient must have.
_PROGRESSION_AFTER = re.compile(r"(?i)\s+(?:disease\s+)?progression\b")
def _states_measurability(text: str, match: re.Match) -> bool:
    return not _PROGRESSION_AFTER.match(text, match.end()) and not scoped_to_cohort(text, match.start())
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


# A stability statement about metastases elsewhere ("treated, stable dural metastases are eligible") is not about the brain.
_OTHER_SITE = re.compile(r"(?i)\b(?:dural|bone|osseous|skull|spinal|liver|hepatic|lung|adrenal|leptomeningeal)\s+(?:metastas[ie]s|mets|lesions?)\b")
# In the inclusions, brain metastases qualified as treated or stable are let in on a condition.
_STABLE_BEFORE = re.compile(r"(?i)\b(?:treated|stable|asymptomatic|inactive|controlled)\b[\w\s,-]{0,30}$")


def _brain_metastases(criterion: Criterion) -> dict[str, Any] | None:
    text = criterion.text
    matches = [m for m in _BRAIN_METASTASES.finditer(text) if not scoped_to_cohort(text, m.start())]
    if not matches:
        return None
    match = matches[0]
    stable_allowed = _STABLE_ALLOWED.search(text)
    if stable_allowed and _OTHER_SITE.search(stable_allowed.group()):
        stable_allowed = None  # "Participants with treated, asymptomatic, and clinically stable dural metastases are eligible"
    # Each mention's own qualifiers: "any (CNS) metastases, symptomatic CNS metastases" excludes them all.
    qualified = [_only_active(text, m, matches[i + 1].start() if i + 1 < len(matches) else None) for i, m in enumerate(matches)]
    only_active = qualified[0]
    if stated_requirement(criterion, match.start(), match.end()) == "excluded":
        if criterion.kind == "exclusion" and len(matches) > 1:
            # Only the first sentence's mentions: a later sentence may let treated ones in.
            _, sentence_end = sentence_bounds(text, match.start(), match.end())
            unqualified = [m for m, q in zip(matches, qualified) if q is None and m.start() < sentence_end]
            if unqualified and not stable_allowed:
                match, only_active = unqualified[0], None
        status = "allowed_if_stable" if only_active or stable_allowed else "excluded"
    elif stable_allowed:
        status = "allowed_if_stable"
    elif criterion.kind == "inclusion" and (
        stable_before := _STABLE_BEFORE.search(text, max(0, match.start() - 60), match.start())
    ):
        status = "allowed_if_stable"  # "Asymptomatic brain metastases must meet ALL criteria of the following"
        only_active = stable_before
    elif annotate(text).triggers("permitted", match.end()):
        status = "allowed"
    elif criterion.kind == "inclusion" and "metasta" in match.group(0).lower() and not _in_parentheses(text, match.start()):
        status = "required"  # not "ECOG 0-2 (for patients with CNS involvement)"
    else:
        return None  # an exclusion that negates brain metastases ("without brain metastases") says nothing clear
    end = stable_allowed.end() if stable_allowed and stable_allowed.start() < match.end() + 200 else match.end()
    start = only_active.start() if only_active and only_active.start() < match.start() else match.start()
    return {"status": status, "evidence": evidence(criterion, text[start : max(end, match.end())])}


def _only_active(text: str, match: re.Match, next_mention: int | None) -> re.Match | None:
    """ "active", "untreated", "symptomatic" ... qualifying this mention, before it or after it up to the next mention."""
    clause_start, clause_end = clause_bounds(text, match.start(), match.end())
    before = _ONLY_ACTIVE.search(text, clause_start, match.start())
    limit = clause_end
    if next_mention is not None and next_mention < clause_end:
        # "(CNS) metastases, symptomatic CNS metastases": "symptomatic" belongs to the next mention.
        gap = text[match.end() : next_mention]
        cut = max(gap.rfind(","), gap.rfind(";"), gap.rfind(" and "), gap.rfind(" or "))
        limit = match.end() + cut if cut >= 0 else next_mention
    return before or _ONLY_ACTIVE.search(text, match.end(), limit)


def _in_parentheses(text: str, position: int) -> bool:
    return text.count("(", 0, position) > text.count(")", 0, position)


def _measurable_disease(criterion: Criterion) -> dict[str, Any] | None:
    text = criterion.text
    match = next((m for m in _MEASURABLE.finditer(text) if _states_measurability(text, m)), None)
    if not match or criterion.kind != "inclusion" or stated_requirement(criterion, match.start(), match.end()) != "required":
        return None
    sentence_start, sentence_end = sentence_bounds(text, match.start(), match.end())
    if annotate(text).is_("conditional", match.start(), match.end()):
        return None  # "Patients with treated brain metastases are eligible if there is evidence of measurable extracranial disease"
    alternatives = _NOT_REQUIRED.search(text, sentence_start, sentence_end)
    required = match.group(0).lower() == "measurable" and not alternatives
    standard = _STANDARD.search(text, match.start(), sentence_end)
    end = max(match.end(), alternatives.end() if alternatives else 0, standard.end() if standard else 0)
    return {
        "required": required,
        "standard": _STANDARDS[int(standard.lastgroup[1:])][0] if standard else None,
        "evidence": evidence(criterion, text[match.start() : end]),
    }
