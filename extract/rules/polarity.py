"""Polarity: does a criterion require what it names, or does having it exclude the patient?

The section sets the default (inclusion: required, exclusion: excluded); a negation cue in the
same clause before the term flips it ("no prior CDK4/6 inhibitor" in the inclusions is excluded,
"patients who have not received platinum" in the exclusions is required).
"""

from __future__ import annotations

import re

from schemas import Criterion

# Cues that negate what follows them within a clause.
_NEGATION = re.compile(
    r"(?i)\b(?:no|not|never|without|none|nor|neither|absence\s+of|free\s+of|lack\s+of|"
    r"must\s+not|may\s+not|cannot|can't|excluding|other\s+than|unless)\b|-naive\b|-naïve\b|\bnaive\b|\bnaïve\b"
)
# Cues after the term that turn an inclusion statement into an exclusion ("patients with X are excluded").
_EXCLUDED_AFTER = re.compile(r"(?i)\b(?:are|is|will\s+be)\s+(?:not\s+eligible|ineligible|excluded)\b|\bnot\s+(?:allowed|permitted)\b")
_NAIVE_AFTER = re.compile(r"(?i)[\s-]*(?:na[iï]ve|free)\b")
_CLAUSE_BREAK = re.compile(r"[.;:]\s|\n|\bexcept\b|\bunless\b|\bbut\b", re.IGNORECASE)


def clause_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The clause of `text` around [start, end): from the last break before to the first after."""
    before = [m.end() for m in _CLAUSE_BREAK.finditer(text, 0, start)]
    after = _CLAUSE_BREAK.search(text, end)
    return (before[-1] if before else 0), (after.start() if after else len(text))


def negated(text: str, start: int, end: int) -> bool:
    """Is the term at text[start:end] negated within its clause?"""
    clause_start, clause_end = clause_bounds(text, start, end)
    if _NEGATION.search(text, clause_start, start) or _NEGATION.search(text[start:end]):
        return True
    if _NAIVE_AFTER.match(text, end):
        return True  # "chemotherapy-naive", "EGFR TKI naïve"
    return bool(_EXCLUDED_AFTER.search(text, end, clause_end))


def requirement(criterion: Criterion, start: int, end: int) -> str:
    """`required` or `excluded` for the term at criterion.text[start:end]."""
    flipped = negated(criterion.text, start, end)
    if criterion.kind == "inclusion":
        return "excluded" if flipped else "required"
    return "required" if flipped else "excluded"


# "Cohort B:", "Part 2A (ER+HER2- breast cancer):", "Arm 3 only:": criteria for one cohort, which v1 cannot state.
_COHORT_LABEL = re.compile(r"(?i)^[^:\n]{0,40}\b(?:cohorts?|arms?|parts?|groups?|phase\s+\d\w*)\b[^:\n]{0,60}:")


def cohort_specific(text: str) -> bool:
    """Does the criterion state itself for one cohort only ("Cohort A: HER2-positive ...")?"""
    return bool(_COHORT_LABEL.match(text))
