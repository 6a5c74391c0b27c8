"""Cancer types: the tumour types a trial requires or excludes, named through vocab.cancer_types()
(OncoTree, Mondo and DO names with their OncoTree code, and the curated cancer_types.tsv).

Conservative on purpose. A required type comes from an inclusion criterion that states the
disease ("histologically confirmed metastatic breast cancer"); an excluded type from an exclusion
criterion that opens with it ("Small cell lung cancer or mixed histology"). A criterion about another
or an earlier cancer ("history of another malignancy"), a negated mention, a cohort-specific
criterion, or a prior-therapy context yields nothing.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from extract.rules.gate import gated
from extract.rules.polarity import cohort_specific, evidence, requirement
from extract.rules.vocab import cancer_types
from schemas import Criterion

# The inclusion states the diagnosis: "histologically confirmed", "diagnosis of", "patients with".
_DIAGNOSIS = re.compile(
    r"(?i)\b(?:histolog\w*|cytolog\w*|patholog\w*|confirmed|diagnos\w*|documented|proven|"
    r"(?:patients?|participants?|subjects?|women|men)\s+with|has|have|metastatic|advanced|unresectable|recurrent)\b"
)
_OTHER_CANCER = gated(re.compile(
    r"(?i)\b(?:history|other|another|prior|previous|second|secondary|concurrent|additional|treated|curative|survivors?|"
    r"therapy|treatment|regimen|chemotherapy|except|including)\b"
))
# An exclusion names the tumour type near its start ("Known small cell lung cancer ...").
_EXCLUSION_OPENER = re.compile(
    r"(?i)^\W*(?:(?:known|confirmed|documented|any|prior|active)\s+)*(?:(?:patients?|participants?|subjects?)\s+with\s+|"
    r"(?:a\s+)?diagnosis\s+of\s+|presence\s+of\s+|has\s+|have\s+)?(?:known\s+|an?\s+)?(?:[\w-]+\s+){0,2}?$"
)
_LABEL_AFTER = re.compile(r"\s*[:;]")


def find(criterion: Criterion) -> Iterator[tuple[str, dict[str, Any]]]:
    text = criterion.text
    if cohort_specific(text):
        return
    # whole words, not glued by a hyphen to a word before or after ("breast cancer-related")
    matches = [hit for hit in cancer_types().scan(text) if not _glued(text, hit.start, hit.end)]
    # An exclusion that speaks of another cancer anywhere excludes no type of its own: searched once, not per match.
    other_cancer = bool(matches) and criterion.kind == "exclusion" and bool(_OTHER_CANCER.search(text))
    seen = set()
    for match in matches:
        found = match.value
        if found.name in seen or not _states_the_type(criterion, match.start, match.end, other_cancer):
            continue
        seen.add(found.name)
        yield "cancer_types", {
            "name": found.name,
            "requirement": requirement(criterion, match.start, match.end),
            "code": {"system": "oncotree", "code": found.oncotree} if found.oncotree else None,
            "evidence": evidence(criterion, text[match.start : match.end]),
        }


def _glued(text: str, start: int, end: int) -> bool:
    return (start >= 1 and text[start - 1] == "-") or text.startswith("-", end)


def _states_the_type(criterion: Criterion, start: int, end: int, other_cancer: bool) -> bool:
    text = criterion.text
    if _LABEL_AFTER.match(text, end):
        return False  # "Cervical Cancer:", "For pancreatic cancer; ...": a label for what follows
    sentence_start = max(text.rfind(". ", 0, start), text.rfind("\n", 0, start)) + 1
    before = text[sentence_start:start]
    if _OTHER_CANCER.search(before):
        return False
    if criterion.kind == "inclusion":
        return bool(_DIAGNOSIS.search(before)) or start - sentence_start < 5
    return bool(_EXCLUSION_OPENER.match(text[:start])) and not other_cancer
