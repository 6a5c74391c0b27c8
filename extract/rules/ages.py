"""Ages the eligibility text states: "aged 18 to 75 years", ">= 18 years of age", "Age less than 16".

Only an age that is the subject of the criterion counts: its first line must open with the age
statement or with a few subject words ("Male or female patients aged ..."). So "within 6 months",
"life expectancy >= 3 months" and "Lansky for patients < 16 years" are not ages.
"""

from __future__ import annotations

import re
from typing import Iterator

from extract.rules.polarity import evidence
from extract.rules.quantities import COMPARATOR_AFTER, COMPARATOR_BEFORE, NUMBER, clean_number, comparator, number, restated
from schemas import Criterion

_UNIT = r"(?:years?|yrs?|months?)"
_OF_AGE = r"(?:[\s-]*(?:of[\s-]+age|old|'\s*old))?"
_KEYWORD = r"(?:\bage[ds]?\b\s*:?\s*(?:is\s+|of\s+|must\s+be\s+)?)?"
_STATEMENT = re.compile(
    rf"""(?ix){_KEYWORD}(?:
        (?:(?:between|from)\s+(?:the\s+ages?\s+of\s+)?)?(?P<lo>{NUMBER})\s*(?P<lo_unit>{_UNIT})?{_OF_AGE}\s*(?:-|–|\bto\b|\band\b)\s*
            (?:{COMPARATOR_BEFORE})?\s*(?P<hi>{NUMBER})\s*(?P<hi_unit>{_UNIT})?
      | (?P<after_n>{NUMBER})\s*(?P<after_unit>{_UNIT})?{_OF_AGE}\s*(?P<after>{COMPARATOR_AFTER})
      | (?P<before>{COMPARATOR_BEFORE})\s*(?:(?:the\s+)?age\s+(?:of\s*)?)?(?P<before_n>{NUMBER})\s*(?P<before_unit>{_UNIT})?
    ){_OF_AGE}"""
)
# What may come before the age on the criterion's first line: a section label and subject words.
_SUBJECT_WORD = (
    r"male|female|males|females|men|women|man|woman|adults?|patients?|patient's|participants?|participant's|"
    r"subjects?|subject's|individuals?|child|children|adolescents?|persons?|people|volunteers?|healthy|"
    r"and|or|either|sex|of|the|a|an|must|should|shall|will|be|is|are|have|has|to|who|age|aged|ages|all|"
    r"any|gender|both|between"
)
_PREFIX = re.compile(rf"(?:(?-i:[A-Z][A-Z0-9 ,/&'-]*):\s*)?(?:(?:{_SUBJECT_WORD})\b[\s,/():]*)*", re.IGNORECASE)
_AGE_WORD = re.compile(r"(?i)\bage")
_CONNECTOR = re.compile(r"[\s,;]*(?:\b(?:and|but|or)\b)?\s*", re.IGNORECASE)
# Ages that define menopause or index a creatinine table are not age limits of the trial.
_NOT_A_LIMIT = ("menopaus", "amenorr", "creatin")
_DIGIT = re.compile(r"\d")


def _years(value: str, unit: str | None) -> float:
    years = number(value) / 12 if unit and unit.lower().startswith("mo") else number(value)
    return clean_number(round(years, 2))


def _bounds(match: re.Match, keyword: bool) -> list[tuple[str, float]]:
    """(comparator, years) pairs one statement gives; none when nothing says it is an age."""
    if match["lo"]:
        unit = match["hi_unit"] or match["lo_unit"]
        if not (unit or keyword):
            return []
        return [(">=", _years(match["lo"], match["lo_unit"] or unit)), ("<=", _years(match["hi"], unit))]
    if match["after"]:
        written, value, unit = match["after"], match["after_n"], match["after_unit"]
    else:
        written, value, unit = match["before"], match["before_n"], match["before_unit"]
    if not (unit or keyword):
        return []
    return [(comparator(written), _years(value, unit))]


def find(criterion: Criterion) -> Iterator[tuple[str, dict]]:
    text = criterion.text
    line_end = text.find("\n")
    line = text if line_end < 0 else text[:line_end]
    if not _DIGIT.search(line):
        return  # every age statement has a number
    lower = line.lower()
    if any(word in lower for word in _NOT_A_LIMIT):
        return
    match = _STATEMENT.match(line, _PREFIX.match(line).end())
    if not match:
        return
    keyword = bool(_AGE_WORD.search(line, 0, match.end()))
    while match:
        bounds = _bounds(match, keyword)
        if criterion.kind == "exclusion":
            if len(bounds) > 1:
                return  # an excluded age range says nothing simple about the limits
            bounds = [(restated(written), years) for written, years in bounds]
        quoted = evidence(criterion, match.group().strip(" ,;"))
        for canonical, years in bounds:
            field = "min_age_years" if canonical in (">=", ">") else "max_age_years"
            yield field, {"value": years, "evidence": quoted}
        connector = _CONNECTOR.match(line, match.end())
        match = _STATEMENT.match(line, connector.end())
