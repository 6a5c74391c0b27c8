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
_SENTENCE_BREAK = re.compile(r"[.;]\s|\n")


def _bounds(pattern: re.Pattern, text: str, start: int, end: int) -> tuple[int, int]:
    """From the last `pattern` break before `start` to the first after `end`."""
    before = [m.end() for m in pattern.finditer(text, 0, start)]
    after = pattern.search(text, end)
    return (before[-1] if before else 0), (after.start() if after else len(text))


def clause_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The clause of `text` around [start, end)."""
    return _bounds(_CLAUSE_BREAK, text, start, end)


def sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence of `text` around [start, end): broken by ". ", "; " or a new line, not by ":" or "but"."""
    return _bounds(_SENTENCE_BREAK, text, start, end)


def evidence(criterion: Criterion, quote: str) -> dict[str, str]:
    """Where a finder's item came from: the criterion, and the words of it that state the item."""
    return {"criterion_id": criterion.id, "quote": quote}


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
    return ":" in text and bool(_COHORT_LABEL.match(text))  # the label ends in a colon: a cheap test first


# A cohort, arm, part or phase label inside a line ("i. EXP-1: ROS1+ NSCLC ii. EXP-2: ...", "Cohort 2: Relapsed ...").
_INLINE_COHORT_LABEL = re.compile(
    r"\b(?i:cohorts?|arms?|parts?|EXP|expansion|phase)(?:[\s-]*#?\d+[A-Za-z]?\d?|[\s-]+#?(?:[A-Z]\d?|I{1,3}V?|IV))\b[\w\s,/&-]{0,40}?:"
)
# A criterion that opens with a phase in Roman numerals ("PHASE I:") or "In the phase I study, ...".
_PHASE_OPENER = re.compile(
    r"(?i)^\W*(?:phase\s+(?:I{1,3}V?|IV|\d\w*)\b[^:\n]{0,30}:|(?:in|for)\s+(?:the\s+)?(?:phase\s+(?:I{1,3}|IV|\d\w*)|dose[\s-]+"
    r"(?:escalation|expansion))\b[^,:.\n]{0,30}[,:])"
)


def scoped_to_cohort(text: str, start: int) -> bool:
    """Is the term at `start` stated for one cohort, arm, part or phase only?

    The whole criterion opens with a label ("Cohort B: ...", "PHASE I:", "In the phase I study, ..."), or the
    term's own line or sentence has a label before it ("* Cohort A1: Presence of ...", "EXP-1: ROS1+ NSCLC").
    """
    if cohort_specific(text) or _PHASE_OPENER.match(text):
        return True
    line_start = text.rfind("\n", 0, start) + 1
    if cohort_specific(text[line_start:start]) or _PHASE_OPENER.match(text, line_start):
        return True
    return bool(_INLINE_COHORT_LABEL.search(text, line_start, start))


# "must not have", "should not have": an exclusion criterion restating itself as a prohibition.
_PROHIBITION = re.compile(r"(?i)\b(?:must|should|shall|may)\s+not\b|\bcannot\b")


def stated_requirement(criterion: Criterion, start: int, end: int) -> str:
    """Like `requirement`, but an exclusion criterion that restates itself ("Patients must not have MSI-H
    colorectal cancer", "participants with RET mutations are excluded") stays an exclusion: in the
    exclusion section "must not" and "are excluded" repeat the exclusion, they do not negate it again."""
    if criterion.kind != "exclusion":
        return requirement(criterion, start, end)
    text = criterion.text
    clause_start, _ = clause_bounds(text, start, end)
    before = text[clause_start:start]
    cues = [cue for cue in _NEGATION.finditer(before) if not _PROHIBITION.search(before, max(0, cue.start() - 8), cue.end())]
    if cues or _NEGATION.search(text[start:end]) or _NAIVE_AFTER.match(text, end):
        return "required"
    return "excluded"
