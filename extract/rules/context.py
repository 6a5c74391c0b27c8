"""The language of criteria, handled once: modifiers as data, in the style of ConText.

Every criterion is annotated once (`annotate`); the finders ask the annotation what modifies the words
they found instead of each solving negation, cohort scope or "allowed if" in its own regexes. A
modifier is a trigger ("no", "Cohort B:", "within 4 weeks", "are allowed") with its kind and its scope:
the characters of the criterion it reaches. The triggers are rows of `context.tsv`.

Kinds:
  negated      "no", "without", "never", "-naive": what the scope names is absent
  pseudo       "not limited to", "no later than": holds a negation cue and negates nothing
  prohibition  "must not", "cannot": negates in the inclusions, restates the exclusion in the exclusions
  excluded     "... are excluded", "... not eligible": after the words it excludes
  cohort       "Cohort B:", "PHASE I:", "in cohort 2": stated for part of the trial only
  conditional  "If ...", "Patients with X must ...": X conditions another requirement
  permitted    "are allowed", "may have received", "are eligible": an exclusion letting patients in
  exception    "except", "other than", "unless": what follows is let in
  window       "within 4 weeks", "28 days prior", "washout": a time window, not a history
  historical   "history of", "prior", "previously": had before
  planned      "planned", "candidate for", "concurrent": to come or ongoing, not had
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

RULES_FILE = Path(__file__).with_name("context.tsv")

KINDS = ("negated", "pseudo", "prohibition", "excluded", "cohort", "conditional", "permitted", "exception", "window", "historical", "planned")
# Triggers of one family compete: a trigger inside a longer one of its family is no trigger ("must not" holds "not").
_FAMILY = {"negated": "polarity", "pseudo": "polarity", "prohibition": "polarity", "excluded": "polarity"}
_DIRECTIONS = ("forward", "backward", "both")
_SCOPES = ("clause", "sentence", "line", "criterion", "adjacent", "opener", "self")

_CLAUSE_BREAK = re.compile(r"[.;:]\s|\n|\bexcept\b|\bunless\b|\bbut\b", re.IGNORECASE)
_SENTENCE_BREAK = re.compile(r"[.;]\s|\n")


@dataclass(frozen=True)
class Rule:
    kind: str
    direction: str
    scope: str
    pattern: re.Pattern
    gate: frozenset[str] = frozenset()  # words one of which the text must hold for the pattern to be tried
    lowered: re.Pattern | None = None  # the pattern without IGNORECASE, for the lower-cased text (far faster)

    def finditer(self, text: str, words: set[str], lower: str):
        if self.gate and self.gate.isdisjoint(words):
            return iter(())  # a set test is far cheaper than a case-insensitive alternation over the text
        if self.lowered is not None and len(lower) == len(text):
            return self.lowered.finditer(lower)  # same offsets: no character changed length
        return self.pattern.finditer(text)


def _case_free(pattern: str) -> bool:
    """Does the pattern name no capital letter (outside escapes like \\W, \\S)? Then it may run on lower case."""
    return not re.search(r"[A-Z]", re.sub(r"\\.", "", pattern))


_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def words_of(text: str) -> set[str]:
    """The lower-cased words of a text, as the gates of context.tsv name them ("28days" holds "days")."""
    return set(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class Modifier:
    """A trigger and the span of text it modifies."""

    kind: str
    trigger_start: int
    trigger_end: int
    scope_start: int
    scope_end: int
    adjacent: bool = False  # reaches only words that end where the trigger starts
    inclusive: bool = False  # reaches the trigger's own words ("self" scope, cohort labels)

    def covers(self, start: int, end: int) -> bool:
        """Does it modify the words at [start, end)? Never the trigger's own words."""
        if self.adjacent:
            return end == self.trigger_start
        if self.inclusive:
            return self.scope_start <= start and end <= self.scope_end
        return self.scope_start <= start and end <= self.scope_end and not (start < self.trigger_end and self.trigger_start < end)


@lru_cache(maxsize=1)
def rules() -> tuple[Rule, ...]:
    """The trigger rules of context.tsv; a malformed row is an error naming its line."""
    found = []
    for number, line in enumerate(RULES_FILE.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) not in (4, 5) or fields[0] not in KINDS or fields[1] not in _DIRECTIONS or fields[2] not in _SCOPES:
            raise ValueError(f"{RULES_FILE.name}:{number}: expected kind, direction, scope, pattern, gate (tab-separated)")
        kind, direction, scope, pattern = fields[:4]
        gate = frozenset(word for word in (fields[4].split(",") if len(fields) == 5 else []) if word)
        try:
            compiled = re.compile(pattern, re.IGNORECASE | re.MULTILINE)
        except re.error as error:
            raise ValueError(f"{RULES_FILE.name}:{number}: bad pattern: {error}") from None
        lowered = re.compile(pattern, re.MULTILINE) if _case_free(pattern) else None
        found.append(Rule(kind, direction, scope, compiled, gate, lowered))
    return tuple(found)


@lru_cache(maxsize=1)
def _rules_by_family() -> dict[str, tuple[Rule, ...]]:
    """The rules of each family, in file order: annotating a family tries its own rules only."""
    by_family: dict[str, list[Rule]] = {}
    for rule in rules():
        by_family.setdefault(_family(rule.kind), []).append(rule)
    return {family: tuple(found) for family, found in by_family.items()}


class _Breaks:
    """Where a text breaks (clauses, sentences), searched by bisection."""

    def __init__(self, pattern: re.Pattern, text: str) -> None:
        found = [(m.start(), m.end()) for m in pattern.finditer(text)]
        self.starts = [start for start, _ in found]
        self.ends = sorted(end for _, end in found)
        self.length = len(text)

    def around(self, start: int, end: int) -> tuple[int, int]:
        """From the last break ending at or before `start` to the first starting at or after `end`."""
        before = bisect_right(self.ends, start)
        after = bisect_left(self.starts, end)
        return (self.ends[before - 1] if before else 0), (self.starts[after] if after < len(self.starts) else self.length)


class Context:
    """The modifiers of one criterion's text, and the questions finders ask of them."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._lower = text.lower()
        self._words = set(_WORD.findall(self._lower))
        self._families: dict[str, tuple[Modifier, ...]] = {}  # annotated when first asked: most finders stop early

    @property
    def modifiers(self) -> tuple[Modifier, ...]:
        """Every modifier of the text, in the order of their triggers."""
        found = [m for family in dict.fromkeys(_family(kind) for kind in KINDS) for m in self._family(family)]
        return tuple(sorted(found, key=lambda m: (m.trigger_start, m.kind)))

    def _family(self, family: str) -> tuple[Modifier, ...]:
        if family not in self._families:
            self._families[family] = tuple(self._annotate(family))
        return self._families[family]

    def _of(self, kinds: tuple[str, ...]) -> list[Modifier]:
        return [m for family in dict.fromkeys(_family(kind) for kind in kinds) for m in self._family(family) if m.kind in kinds]

    # -- bounds ---------------------------------------------------------------------------------
    @cached_property
    def _clauses(self) -> _Breaks:
        return _Breaks(_CLAUSE_BREAK, self.text)

    @cached_property
    def _sentences(self) -> _Breaks:
        return _Breaks(_SENTENCE_BREAK, self.text)

    def clause(self, start: int, end: int) -> tuple[int, int]:
        """The clause around [start, end): broken by ". ", "; ", ": ", a new line, "but", "except", "unless"."""
        return self._clauses.around(start, end)

    def sentence(self, start: int, end: int) -> tuple[int, int]:
        """The sentence around [start, end): broken by ". ", "; " or a new line, not by ":" or "but"."""
        return self._sentences.around(start, end)

    def line(self, start: int, end: int) -> tuple[int, int]:
        line_end = self.text.find("\n", end)
        return self.text.rfind("\n", 0, start) + 1, (len(self.text) if line_end < 0 else line_end)

    # -- annotation -----------------------------------------------------------------------------
    def _annotate(self, family: str) -> list[Modifier]:
        text, words, lower = self.text, self._words, self._lower
        hits = [
            (m.start(), m.end(), rule)
            for rule in _rules_by_family().get(family, ())
            for m in rule.finditer(text, words, lower) if m.end() > m.start()
        ]
        kept = _outermost(hits)
        return sorted((self._modifier(start, end, rule) for start, end, rule in kept), key=lambda m: (m.trigger_start, m.kind))

    def _modifier(self, start: int, end: int, rule: Rule) -> Modifier:
        text = self.text
        if rule.scope == "adjacent":
            return Modifier(rule.kind, start, end, start, start, adjacent=True)
        if rule.scope == "self":
            return Modifier(rule.kind, start, end, start, end, inclusive=True)
        if rule.scope == "opener":
            scope = (0, len(text)) if start == 0 else (start, self.line(start, end)[1])
            return Modifier(rule.kind, start, end, *scope)
        bounds = {"clause": self.clause, "sentence": self.sentence, "line": self.line}.get(rule.scope)
        low, high = bounds(start, end) if bounds else (0, len(text))
        if rule.direction == "forward":
            low = end
            closing = _closing_parenthesis(text, start, high)
            high = closing if closing is not None else high
        elif rule.direction == "backward":
            high = start
        return Modifier(rule.kind, start, end, low, high)

    # -- questions ------------------------------------------------------------------------------
    def covering(self, kinds: str | tuple[str, ...], start: int, end: int) -> list[Modifier]:
        """The modifiers of these kinds whose scope reaches the words at [start, end)."""
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        return [m for m in self._of(kinds) if m.covers(start, end)]

    def triggers(self, kinds: str | tuple[str, ...], start: int = 0, end: int | None = None) -> list[Modifier]:
        """The modifiers of these kinds whose trigger lies inside [start, end)."""
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        end = len(self.text) if end is None else end
        return [m for m in self._of(kinds) if start <= m.trigger_start and m.trigger_end <= end]

    def opening(self, kind: str) -> list[Modifier]:
        """The modifiers of a kind whose trigger opens the text ("Cohort B: ..."): anchored matches only, so
        asking costs little when nothing else about that kind was asked yet."""
        if _family(kind) in self._families:
            return [m for m in self._of((kind,)) if m.trigger_start == 0]
        found = []
        for rule in _rules_by_family().get(_family(kind), ()):
            if rule.kind != kind or (rule.gate and rule.gate.isdisjoint(self._words)):
                continue
            lowered = rule.lowered is not None and len(self._lower) == len(self.text)
            match = rule.lowered.match(self._lower) if lowered else rule.pattern.match(self.text)
            if match and match.end() > 0:
                found.append(self._modifier(0, match.end(), rule))
        return found

    def is_(self, kinds: str | tuple[str, ...], start: int, end: int) -> bool:
        return bool(self.covering(kinds, start, end))


def _family(kind: str) -> str:
    return _FAMILY.get(kind, kind)


def _outermost(hits: list[tuple[int, int, Rule]]) -> list[tuple[int, int, Rule]]:
    """The triggers not strictly inside a longer one of their family (two of one span both stay)."""
    kept = []
    by_family: dict[tuple[str, bool], list] = {}
    for hit in hits:
        rule = hit[2]  # an adjacent trigger ("-naive" after a term) does not compete with the forward one
        by_family.setdefault((_family(rule.kind), rule.scope == "adjacent"), []).append(hit)
    for family_hits in by_family.values():
        family_hits.sort(key=lambda hit: (hit[0], -hit[1]))
        widest: tuple[int, int] | None = None  # the span reaching furthest so far
        for start, end, rule in family_hits:
            if widest is not None and widest != (start, end) and widest[1] >= end:
                continue
            if widest is None or end > widest[1]:
                widest = (start, end)
            kept.append((start, end, rule))
    return kept


def _closing_parenthesis(text: str, start: int, limit: int) -> int | None:
    """Where the parenthesis open at `start` closes, before `limit`; None when `start` is in none."""
    depth = text.count("(", 0, start) - text.count(")", 0, start)
    if depth <= 0:
        return None
    opened = text.rfind("(", 0, start)
    if text.find(")", opened, start) != -1:
        return None  # the nearest parenthesis closed already: a rough count, the common case is one level
    closing = text.find(")", start, limit)
    return closing if closing != -1 else None


@lru_cache(maxsize=64)
def annotate(text: str) -> Context:
    """The annotation of a criterion's text, made once and shared by every finder."""
    return Context(text)
