"""Polarity: does a criterion require what it names, or does having it exclude the patient?

The section sets the default (inclusion: required, exclusion: excluded); a negation cue in the
same clause before the term flips it ("no prior CDK4/6 inhibitor" in the inclusions is excluded,
"patients who have not received platinum" in the exclusions is required).
"""

from __future__ import annotations

import bisect
import functools
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


# Longer than any break's match and the look-ahead of its \b: a scan only that far back from a
# position can be cut short by it.
_BREAK_REACH = 32


@functools.lru_cache(maxsize=16)
def _breaks(pattern: re.Pattern, text: str) -> tuple[list[int], list[int]]:
    """Starts and ends of the breaks of `text`, found once per text (not again for every term in it)."""
    spans = [match.span() for match in pattern.finditer(text)]
    return [start for start, _ in spans], [end for _, end in spans]


def _bounds(pattern: re.Pattern, text: str, start: int, end: int) -> tuple[int, int]:
    """From the last `pattern` break before `start` to the first after `end`: the same bounds as
    rescanning text[:start] and searching from `end`, found by bisection in the breaks of the whole
    text. Only the last _BREAK_REACH characters before `start` are scanned again, where a break of
    the whole text can differ from one of text[:start] (a \b at the cut)."""
    starts, ends = _breaks(pattern, text)
    # Breaks starting well before `start` are the same in text[:start]; rescan from the last of them.
    settled = bisect.bisect_right(starts, start - _BREAK_REACH) - 1
    resume = max(ends[settled], start - _BREAK_REACH) if settled >= 0 else max(0, start - _BREAK_REACH)
    tail = [match.end() for match in pattern.finditer(text, resume, start)]
    before = tail[-1] if tail else (ends[settled] if settled >= 0 else 0)
    # The first break at or after `end`; one that began before `end` and runs over it hides positions
    # that a search from `end` tries, so those are tried one by one.
    following = bisect.bisect_left(starts, end)
    if following > 0 and ends[following - 1] > end:
        hit = next((p for p in range(end, ends[following - 1]) if pattern.match(text, p)), None)
        if hit is not None:
            return before, hit
    after = starts[following] if following < len(starts) else len(text)
    return before, after


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
    lines = _labels(text)
    if lines.whole:
        return True
    line = bisect.bisect_right(lines.starts, start) - 1
    line_start = lines.starts[line]
    colon, labelled, inline = lines.line(line)
    if (labelled and colon < start) or _PHASE_OPENER.match(text, line_start):
        return True
    if inline is None or inline.end() <= start:
        return inline is not None
    return bool(_INLINE_COHORT_LABEL.search(text, line_start, start))  # the line's first label runs past `start`


class _Labels:
    """The cohort labels of one text, found once per text and line rather than again for every term:
    a long single-line criterion made scoped_to_cohort rescan its line for each term."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.whole = cohort_specific(text) or bool(_PHASE_OPENER.match(text))
        self.starts = [0] + [match.end() for match in re.finditer("\n", text)]
        self._lines: dict[int, tuple[int, bool, re.Match | None]] = {}

    def line(self, number: int) -> tuple[int, bool, re.Match | None]:
        """The line's first colon; whether the line opens with a label ending at that colon (a label
        is the line's text up to its first colon, which no label contains); its first inline label."""
        if number not in self._lines:
            start = self.starts[number]
            end = self.starts[number + 1] - 1 if number + 1 < len(self.starts) else len(self.text)
            colon = self.text.find(":", start, end)
            labelled = colon >= 0 and cohort_specific(self.text[start : colon + 1])
            self._lines[number] = (colon, labelled, _INLINE_COHORT_LABEL.search(self.text, start, end))
        return self._lines[number]


@functools.lru_cache(maxsize=16)
def _labels(text: str) -> _Labels:
    return _Labels(text)


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
