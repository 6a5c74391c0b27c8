"""Stage: the required stage groups ("stage IIIB-IV") and settings ("locally advanced or metastatic").

Only inclusion criteria speak for the required stage; an excluded stage ("no metastatic disease")
is not representable in v1, so negated mentions yield nothing. Settings that only qualify a prior
therapy ("one prior chemotherapy for metastatic disease") or another cancer ("history of early-stage
cancer") are not the trial's stage.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from extract.rules.gate import gated
from extract.rules.polarity import cohort_specific, evidence, negated, scoped_to_cohort, sentence_bounds
from schemas import Criterion

_ROMAN = ("0", "I", "II", "III", "IV")
# "IIIB", "III (B/C/D)": a substage letter, or letters in parentheses.
_GROUP = r"(?:IV|I{1,3}|[0-4])(?:[A-D]\d?|\s*\([A-D](?:\s*[/,]\s*[A-D])*\))?"
_GROUP_LIST = rf"{_GROUP}(?:\s*(?:-|–|to|through|/|,|or|and|and/or)\s*(?:(?i:stage)\s+)?{_GROUP})*"
_STAGE = re.compile(rf"\b(?i:stages?)\s+(?:group\s+)?(?P<groups>{_GROUP_LIST})(?![\w+])")
_ONE_GROUP = re.compile(r"(IV|I{1,3}|[0-4])(?:[A-D]\d?)?")
_RANGE_JOIN = re.compile(r"\s*(?:-|–|to|through)\s*$")

# What a setting word must qualify for "advanced", "early" or "resectable" to be a stage ("advanced age" is not).
_DISEASE_AHEAD = (
    r"(?=(?:\s*\([^()]{0,100}\))?[\s,/-]+(?:[\w()-]+\s+){0,3}?(?:cancers?|carcinomas?|tumou?rs?|malignan\w*|disease|neoplasms?|NSCLC|SCLC|CRC|HCC|"
    r"RCC|PDAC|melanoma|lymphoma|sarcoma|mesothelioma|breast|stage|or\s+metastatic|and/or\s+metastatic|/metastatic|solid|"
    r"recurrent|unresectable|inoperable|relapsed|refractory|metastatic))"
)
_SETTING = gated(re.compile(
    rf"""(?ix)(?<![\w-])(?:
        (?P<locally_advanced>locally[\s-]+advanced|loco-?regionally[\s-]+advanced)
        |(?P<advanced>advanced){_DISEASE_AHEAD}
        |(?P<metastatic>metastatic|mCRPC|mCRC|mNSCLC|MBC|mBC)
        |(?P<unresectable>unresectable|non[\s-]?resectable|inoperable|not\s+(?:amenable|suitable|eligible|a\s+candidate)
            \s+(?:to|for)\s+(?:(?:curative|complete|surgical|definitive|radical|intent|curative-intent)\s+)*(?:resection|surgery))
        |(?P<recurrent>recurrent|relapsed|refractory|relapsing)
        |(?P<early>(?:early(?:[\s-]+stage)?|operable|(?<!borderline\s)resectable){_DISEASE_AHEAD})
    )(?![\w-])"""
))
# A setting that only qualifies a prior therapy: "chemotherapy for metastatic disease", "in the advanced setting".
_THERAPY_BEFORE = re.compile(
    r"(?i)\b(?:therap\w*|treatments?|treated|chemotherapy|regimens?|lines?|received|prior|previous(?:ly)?|progressed)\b"
    r"[^.;:\n]{0,40}\b(?:for|in|of)\s+(?:the\s+)?(?:[\w-]+[\s/]+){0,2}$|\bnegative\s+for\s+$"
)
_SETTING_AFTER = re.compile(r"(?i)[\w\s/-]{0,25}?\bsetting\b")
_OTHER_CANCER = gated(re.compile(
    r"(?i)\b(?:history\s+of|other|another|prior|previous|second|secondary|concurrent|additional)\s+(?:[\w-]+\s+){0,3}?"
    r"(?:malignan\w*|cancers?|tumou?rs?|neoplasms?)"
))


def find(criterion: Criterion) -> Iterator[tuple[str, dict[str, Any]]]:
    text = criterion.text
    if criterion.kind != "inclusion" or cohort_specific(text) or _about_other_cancers(text):
        return
    for match in _STAGE.finditer(text):
        if _speaks_for_the_trial(criterion, match):
            yield "stage", _stage(criterion, match, groups=_groups(match.group("groups")), settings=[])
    for match in _SETTING.finditer(text):
        if _speaks_for_the_trial(criterion, match) and not _qualifies_a_therapy(text, match):
            setting = match.lastgroup
            settings = ["locally_advanced", "metastatic"] if setting == "advanced" else [setting]
            yield "stage", _stage(criterion, match, groups=[], settings=settings)


def _about_other_cancers(text: str) -> bool:
    """ "History of other malignancies ... eligible if ...: DCIS, stage I prostate cancer": the criterion's opening speaks of other cancers."""
    _, first_sentence_end = sentence_bounds(text, 0, 0)
    return bool(_OTHER_CANCER.search(text, 0, first_sentence_end))


def _speaks_for_the_trial(criterion: Criterion, match: re.Match) -> bool:
    """Not negated, not for one cohort, and not about another cancer ("history of another malignancy")."""
    text = criterion.text
    if _negated(text, match) or scoped_to_cohort(text, match.start()):
        return False
    sentence_start, sentence_end = sentence_bounds(text, match.start(), match.end())
    return not _OTHER_CANCER.search(text[sentence_start:sentence_end])


def _negated(text: str, match: re.Match) -> bool:
    """A negation reaching the stage ("no metastatic disease", "... are not eligible"); "not amenable to
    surgery" is itself the unresectable setting, so a negation inside that one does not count."""
    return negated(text, match.start(), match.end(), inside=match.lastgroup != "unresectable")


def _qualifies_a_therapy(text: str, match: re.Match) -> bool:
    """ "one prior chemotherapy for metastatic disease", "in the advanced/metastatic setting"."""
    return bool(_THERAPY_BEFORE.search(text, max(0, match.start() - 80), match.start()) or _SETTING_AFTER.match(text, match.end()))


def _groups(written: str) -> list[str]:
    """ "IIIB-IV" -> III, IV; "II or III" -> II, III; "3 or 4" -> III, IV."""
    groups: list[int] = []
    for match in _ONE_GROUP.finditer(written):
        number = _ROMAN.index(match.group(1)) if match.group(1) in _ROMAN else int(match.group(1))
        if groups and _RANGE_JOIN.search(written[: match.start()]):
            groups += range(groups[-1] + 1, number + 1)
        elif number not in groups:
            groups.append(number)
    return [_ROMAN[number] for number in sorted(set(groups))]


def _stage(criterion: Criterion, match: re.Match, groups: list[str], settings: list[str]) -> dict[str, Any]:
    return {
        "groups": groups,
        "settings": settings,
        "evidence": evidence(criterion, match.group(0)),
    }
