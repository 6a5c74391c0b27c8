"""Performance status: ECOG (also WHO, Zubrod), Karnofsky (KPS) and Lansky, in their common wordings.

"ECOG 0-1", "ECOG <= 1", "ECOG PS 0, 1 or 2", "Karnofsky >= 70%", "Karnofsky or Lansky >= 60".
ECOG always has both ends ("<= 1" is 0-1); Karnofsky and Lansky "70 or more" is min 70, max null.
An exclusion ("ECOG >= 2") is restated as what the patient must meet (0-1).
"""

from __future__ import annotations

import re
from typing import Iterator

from extract.rules.polarity import cohort_specific, evidence
from extract.rules.quantities import COMPARATOR_AFTER, COMPARATOR_BEFORE, comparator, paired_bound, restated
from schemas import Criterion

_SCALES = (
    ("ECOG", r"ECOG|Eastern\s+Co\w+(?:\s+Oncology)?\s+Group|Eastern\s+clinical\s+oncology\s+group|Zubrod|WHO(?=[\s-]*(?:performance|PS))"),
    ("KARNOFSKY", r"Karnofsky|KPS"),
    ("LANSKY", r"Lansky"),
    ("", r"performance\s+status"),  # no scale named: told by the values
)
_SCALE = "|".join(rf"(?P<{name or 'GENERIC'}>\b(?:{pattern})\b)" for name, pattern in _SCALES)
# Words between the scale and its value: "(ECOG) performance status (PS) of", "Performance Score must be".
_FILLER = (
    r"(?:[\s,:-]+|=(?!\s*[<>])|\([^()]{0,30}\)|\[[^\[\]]{0,30}\]|\b(?:performance|status|scores?|scale|play|of|must|be|is|"
    r"should|either|that|a|an|level|ps|oncology|group|criteria|has|have|equal\s+to|value|rating|from|between)\b)*?"
)
_SCORE = r"\d{1,3}(?![.,]?\d)"
_VALUE = (
    rf"(?:(?P<lo>{_SCORE})\s*%?\s*(?:-|–|\bto\b)\s*(?P<hi>{_SCORE})\s*%?"
    rf"|(?P<after_n>{_SCORE})\s*%?\s*(?P<after>{COMPARATOR_AFTER})"
    rf"|(?P<listed>{_SCORE}(?:\s*,\s*{_SCORE})*\s*,?\s*(?:\bor\b|\band\b|,|/)\s*{_SCORE})"
    rf"|(?P<before>{COMPARATOR_BEFORE})\s*(?P<before_n>{_SCORE})\s*%?)"
)
# "Karnofsky or Lansky score >= 60" names two scales for one value.
_STATEMENT = re.compile(
    rf"(?i)(?P<scales>(?:{_SCALE})(?:\s*(?:\bor\b|\band\b|/|,)\s*(?:\b(?:Karnofsky|KPS|Lansky|ECOG)\b))*){_FILLER}{_VALUE}"
)
_SCALE_NAME = re.compile(rf"(?i){_SCALE}")
# Plain substring tests on the lower-cased text: far faster than a case-insensitive alternation.
_QUICK_WORDS = ("ecog", "karnofsky", "kps", "lansky", "zubrod", "performance")
_DIGITS = re.compile(r"\d+")
_TOP = {"ECOG": 5, "KARNOFSKY": 100, "LANSKY": 100}
_STEP = {"ECOG": 1, "KARNOFSKY": 10, "LANSKY": 10}  # Karnofsky and Lansky move in tens
# "ECOG 0 or 1 for Cohorts A1, A2": a value for some cohorts only, which v1 cannot state.
_FOR_COHORT = re.compile(r"(?i)\s*(?:\(\s*)?(?:for|in)\s+(?:the\s+)?(?:cohorts?|arms?|parts?|phase\s+\w+|dose[\s-]+(?:escalation|expansion))\b")


def _bounds(scale: str, match: re.Match, exclusion: bool) -> tuple[int | None, int | None] | None:
    """(min, max) the statement allows on the scale, or None when it makes no sense there."""
    if match["lo"]:
        low, high = int(match["lo"]), int(match["hi"])
        if exclusion:  # "ECOG 2-4" excludes: 0-1
            if high < _TOP[scale] - (1 if scale == "ECOG" else 0) or low == 0:
                return None
            return _at_most(scale, low, "<")
        return low, high
    if match["listed"]:
        scores = [int(s) for s in _DIGITS.findall(match["listed"])]
        return None if exclusion else (min(scores), max(scores))
    written, score = (match["after"], match["after_n"]) if match["after"] else (match["before"], match["before_n"])
    canonical = comparator(written)
    if scale == "ECOG" and written.lower().replace(" ", "") == "orbetter":
        canonical = "<="  # a lower ECOG is better
    if exclusion:
        canonical = restated(canonical)
    if canonical in ("<=", "<"):
        return _at_most(scale, int(score), canonical)
    low = int(score) + (_STEP[scale] if canonical == ">" else 0)
    return low, (_TOP[scale] if scale == "ECOG" else None)


def _paired(text: str, match: re.Match, scale: str, bounds: tuple, quote: str) -> tuple[tuple, str]:
    """ "ECOG of minimum 0 and maximum 1": a one-sided value with its other end written after it."""
    canonical = comparator(match["before"])
    paired = paired_bound(text, match.start("before"), match.end(), canonical)
    if paired is None:
        return bounds, quote
    other, value, _, end = paired
    score = int(value)
    if other in ("<=", "<"):
        bounds = (bounds[0], score - (_STEP[scale] if other == "<" else 0))
    else:
        bounds = (score + (_STEP[scale] if other == ">" else 0), bounds[1])
    return bounds, text[match.start() : max(end, match.end())].strip()


def _at_most(scale: str, score: int, canonical: str) -> tuple[int | None, int]:
    return (0 if scale == "ECOG" else None), score - (_STEP[scale] if canonical == "<" else 0)


def _fits(scale: str, bounds: tuple[int | None, int | None]) -> bool:
    values = [v for v in bounds if v is not None]
    if scale == "ECOG":
        return all(0 <= v <= 5 for v in values)
    return all(10 <= v <= 100 for v in values)


def find(criterion: Criterion) -> Iterator[tuple[str, dict]]:
    text = criterion.text
    lower = text.lower()
    if not any(word in lower for word in _QUICK_WORDS) or cohort_specific(text):
        return
    found: dict[tuple, str] = {}
    for match in _STATEMENT.finditer(text):
        for named in _SCALE_NAME.finditer(match["scales"]):
            scale = named.lastgroup
            if scale == "GENERIC":  # "performance status 0-1" is ECOG, "performance status >= 70" Karnofsky
                scale = "ECOG" if max(int(n) for n in _DIGITS.findall(match.group(), named.end())) <= 5 else "KARNOFSKY"
            if _FOR_COHORT.match(text, match.end()):
                continue
            bounds = _bounds(scale, match, criterion.kind == "exclusion")
            quote = match.group().strip()
            if bounds is not None and match["before"] and criterion.kind != "exclusion":
                bounds, quote = _paired(text, match, scale, bounds, quote)
            if bounds is None or not _fits(scale, bounds):
                continue
            if scale != "ECOG" and bounds[1] == 100:
                bounds = (bounds[0], None)  # "Karnofsky 70-100" is 70 or more
            key = (scale, *bounds)
            if key not in found or len(quote) < len(found[key]):
                found[key] = quote
    for (scale, low, high), quote in found.items():
        yield "performance_status", {"scale": scale, "min": low, "max": high, "evidence": evidence(criterion, quote)}
