"""The finders' pattern gates: the words read off a pattern, and a gate that never changes a result."""

from __future__ import annotations

import importlib
import re

import pytest

from extract.rules.gate import Gated, gated, required_words
from extract.text import segment
from tests.conftest import shared_trials

RULE_MODULES = ["ages", "biomarkers", "cancer_types", "context", "disease", "labs", "performance", "polarity", "stage", "therapies", "vocab"]


def words(pattern: str, flags: int = 0) -> list[list[str]]:
    return [sorted(found) for found in required_words(re.compile(pattern, flags))]


def test_the_words_every_match_holds():
    # a branch: one of its words; a case-insensitive pattern's words in lower case
    assert words(r"(?i)\b(?:Defined|determined|confirmed)\s+(?:as|by)\b") == [["confirmed", "defined", "determined"]]
    # two required parts: a word of each ("as" and "by" are too short to be worth a test)
    assert words(r"(?i)\b(?:history|prior)\s+(?:\w+\s+){0,3}?(?:cancers?|tumou?rs?)") == [["history", "prior"], ["cancer", "tumo"]]
    # a case-sensitive pattern keeps the case
    assert words(r"\bHER2\b[- ]positive") == [["HER2"], ["positive"]]


def test_what_may_be_absent_is_no_required_word():
    assert words(r"(?:monoclonal\s+)?antibod(?:y|ies)") == [["antibod"]]  # an optional group requires nothing
    assert words(r"(?i)(?:stage|)\s*\d") == []  # a branch that may be empty
    assert words(r"(?:inhibitors?)*") == []  # a repeat that may match nothing
    assert words(r"(?<=prior )therapy") == [["therapy"]]  # a look-behind is not part of the match
    assert words(r"(?i:stages?)\s+(?:IV|III)") == []  # a group with flags of its own is left alone
    assert words(r"[A-Z]{2,}\d") == []


def test_a_pattern_without_required_words_is_not_gated():
    pattern = re.compile(r"\d+\s*(?:yr|mo)s?")
    assert gated(pattern) is pattern
    assert isinstance(gated(re.compile(r"(?i)washout")), Gated)


def test_a_gate_answers_as_its_pattern():
    pattern = re.compile(r"(?i)\b(?P<word>anti)[\s-]*(?P<target>CD\d+)")
    gate = gated(pattern)
    text = "No prior Anti-CD38 therapy; anti CD20 allowed"
    assert gate.search(text).group("target") == pattern.search(text).group("target") == "CD38"
    assert [m.span() for m in gate.finditer(text)] == [m.span() for m in pattern.finditer(text)]
    assert gate.findall(text) == pattern.findall(text)
    assert gate.sub("X", text) == pattern.sub("X", text)
    assert gate.match(text) is None and gate.search("no such words") is None
    assert gate.groupindex == pattern.groupindex


def test_non_ascii_text_is_left_to_the_pattern():
    # case-insensitive matching pairs "ſ" (long s) and "K" (Kelvin sign) with ASCII letters: no substring test can know
    assert gated(re.compile(r"(?i)sample")).search("ſample") is not None
    assert gated(re.compile(r"(?i)kinase")).search("\u212aINASE") is not None


def gated_patterns() -> list[tuple[str, Gated]]:
    found = []
    for name in RULE_MODULES:
        module = importlib.import_module(f"extract.rules.{name}")
        found += [(f"{name}.{attribute}", value) for attribute, value in vars(module).items() if isinstance(value, Gated)]
    return found


def test_the_finders_gate_some_of_their_patterns():
    assert len(gated_patterns()) >= 3


@pytest.mark.usefixtures("shared_data")
def test_every_gate_agrees_with_its_pattern_on_every_shared_criterion():
    texts = [criterion.text for trial in shared_trials() for criterion in segment(trial.eligibility_text)]
    assert len(texts) > 20_000
    for name, gate in gated_patterns():
        for text in texts:
            expected = [m.span() for m in gate.pattern.finditer(text)]
            assert [m.span() for m in gate.finditer(text)] == expected, (name, text[:120])


@pytest.mark.usefixtures("shared_data")
def test_the_hand_made_gates_pass_every_shared_criterion_their_pattern_matches():
    from extract.rules import biomarkers, labs
    from extract.rules.vocab import token_forms

    texts = [criterion.text for trial in shared_trials() for criterion in segment(trial.eligibility_text)]
    analytes = [text for text in texts if labs._ANALYTE.search(text)]
    glued = [text for text in texts if biomarkers._GLUED.search(text)]
    assert len(analytes) > 1000 and len(glued) > 100
    # labs: a name's first token is among the criterion's tokens (ASCII text; other text is not gated)
    assert all(not labs._ANALYTE_FIRST_TOKENS.isdisjoint(token_forms(text)) for text in analytes if text.isascii())
    assert all(biomarkers._GLUED_CORE.search(text) for text in glued)
