"""The rules backend on hostile sizes: linear in criterion length, and a time budget per trial."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from extract.rules import polarity

# Break-heavy text: the characters and words the clause and sentence breaks are made of.
PIECES = st.sampled_from(["a", "b", " ", ".", ";", ":", "\n", "but", "except", "unless", "butter", "EGFR", "x."])
TEXTS = st.lists(PIECES, max_size=60).map("".join)


def rescanned_bounds(pattern: re.Pattern, text: str, start: int, end: int) -> tuple[int, int]:
    """The bounds as they were first written: text[:start] scanned again from its beginning."""
    before = [m.end() for m in pattern.finditer(text, 0, start)]
    after = pattern.search(text, end)
    return (before[-1] if before else 0), (after.start() if after else len(text))


@settings(max_examples=400, deadline=None)
@given(TEXTS, st.data())
def test_bounds_are_those_of_a_rescan_from_the_start(text, data):
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    for pattern in (polarity._CLAUSE_BREAK, polarity._SENTENCE_BREAK):
        assert polarity._bounds(pattern, text, start, end) == rescanned_bounds(pattern, text, start, end)


def test_bounds_far_into_a_long_text_are_those_of_a_rescan():
    text = ("No prior EGFR inhibitor, but KRAS-mutant; ANC >= 1.5 except in arm B.\n" * 300) + "tail without breaks"
    for start in range(0, len(text), 97):
        end = min(len(text), start + 5)
        for pattern in (polarity._CLAUSE_BREAK, polarity._SENTENCE_BREAK):
            assert polarity._bounds(pattern, text, start, end) == rescanned_bounds(pattern, text, start, end)


def rescanned_scope(text: str, start: int) -> bool:
    """scoped_to_cohort as first written: the term's line searched again for every term."""
    if polarity.cohort_specific(text) or polarity._PHASE_OPENER.match(text):
        return True
    line_start = text.rfind("\n", 0, start) + 1
    if polarity.cohort_specific(text[line_start:start]) or polarity._PHASE_OPENER.match(text, line_start):
        return True
    return bool(polarity._INLINE_COHORT_LABEL.search(text, line_start, start))


LABEL_PIECES = st.sampled_from(
    ["Cohort A", "cohort 2", "Arm 3", "Part 2A", "EXP-1", "phase I", "Phase 2", ":", " ", "\n", "x", "ROS1+", ",", "only"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(LABEL_PIECES, max_size=30).map("".join), st.data())
def test_cohort_scope_is_that_of_a_rescan_of_the_line(text, data):
    start = data.draw(st.integers(0, len(text)))
    assert polarity.scoped_to_cohort(text, start) == rescanned_scope(text, start)
