"""Polarity: does a criterion require what it names, or does having it exclude the patient?

The section sets the default (inclusion: required, exclusion: excluded); a negation cue in the
same clause before the term flips it ("no prior CDK4/6 inhibitor" in the inclusions is excluded,
"patients who have not received platinum" in the exclusions is required).
"""

from __future__ import annotations

from functools import lru_cache

from extract.rules.context import annotate
from schemas import Criterion

_POLARITY = ("negated", "prohibition", "excluded")


def clause_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The clause of `text` around [start, end)."""
    return annotate(text).clause(start, end)


def sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence of `text` around [start, end): broken by ". ", "; " or a new line, not by ":" or "but"."""
    return annotate(text).sentence(start, end)


def evidence(criterion: Criterion, quote: str) -> dict[str, str]:
    """Where a finder's item came from: the criterion, and the words of it that state the item."""
    return {"criterion_id": criterion.id, "quote": quote}


def _negations(text: str, start: int, end: int, kinds: tuple[str, ...] = _POLARITY, inside: bool = True) -> bool:
    """A negation reaching the term at text[start:end], or (`inside`) one in its own words ("non-mutated")."""
    context = annotate(text)
    return bool(context.covering(kinds, start, end) or (inside and context.triggers(kinds, start, end)))


def negated(text: str, start: int, end: int, inside: bool = True) -> bool:
    """Is the term at text[start:end] negated: by a cue whose scope reaches it ("no", "-naive", "... are
    excluded"), or (`inside`) by a cue in its own words?"""
    return _negations(text, start, end, inside=inside)


def requirement(criterion: Criterion, start: int, end: int) -> str:
    """`required` or `excluded` for the term at criterion.text[start:end]."""
    flipped = negated(criterion.text, start, end)
    if criterion.kind == "inclusion":
        return "excluded" if flipped else "required"
    return "required" if flipped else "excluded"


@lru_cache(maxsize=256)  # every finder asks it of the same criterion (and of its lines)
def cohort_specific(text: str) -> bool:
    """Does the criterion state itself for one cohort only ("Cohort A: HER2-positive ...")?"""
    return any(m.scope_end == len(text) for m in annotate(text).opening("cohort"))


def scoped_to_cohort(text: str, start: int) -> bool:
    """Is the term at `start` stated for one cohort, arm, part or phase only?

    The whole criterion opens with a label ("Cohort B: ...", "PHASE I:", "In the phase I study, ..."), or the
    term's own line or sentence has a label before it ("* Cohort A1: Presence of ...", "EXP-1: ROS1+ NSCLC").
    """
    # a label's own words are in its scope ("Cohort A (HER2-positive): ..."), unlike a negation's
    return any(m.scope_start <= start <= m.scope_end or m.trigger_start <= start < m.trigger_end
               for m in annotate(text).triggers("cohort") if not m.adjacent)


def stated_requirement(criterion: Criterion, start: int, end: int) -> str:
    """Like `requirement`, but an exclusion criterion that restates itself ("Patients must not have MSI-H
    colorectal cancer", "participants with RET mutations are excluded") stays an exclusion: in the
    exclusion section "must not" and "are excluded" repeat the exclusion, they do not negate it again."""
    if criterion.kind != "exclusion":
        return requirement(criterion, start, end)
    return "required" if _negations(criterion.text, start, end, ("negated",)) else "excluded"
