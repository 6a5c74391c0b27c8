"""A pattern's required words: a substring test that tells, far faster than the regex engine, when a
pattern cannot match a text.

Most of the finders' patterns are searched in every criterion and match in few. A pattern whose every
match holds one of a few literal words ("defined", "determined" or "confirmed") cannot match a text that
holds none of them, and `in` finds that out at memory speed. The words are read off the pattern's own
parse tree, never written by hand, so a gate cannot disagree with its pattern: it only skips work.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

try:  # the parser of the `re` module (Python 3.11 names it re._parser, earlier ones sre_parse)
    from re import _constants as _c, _parser
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

# A word shorter than this is in nearly every text: testing for it would cost more than it saves.
MIN_WORD = 3
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT)}

WordSets = tuple[frozenset[str], ...]  # every match holds a word of each set


def required_words(pattern: re.Pattern) -> WordSets:
    """Sets of words such that every match of `pattern` holds one word of each set; lower case for a
    case-insensitive pattern. Empty when nothing can be said."""
    parsed = _parser.parse(pattern.pattern, pattern.flags)
    folded = bool(parsed.state.flags & re.IGNORECASE)
    return tuple(words for words in _sequence(list(parsed), folded) if min(map(len, words)) >= MIN_WORD)


def _sequence(items: list, folded: bool) -> list[frozenset[str]]:
    """The word sets of a sequence of parsed items: each run of literal characters, and what each group,
    branch or repeat that must match requires."""
    found: list[frozenset[str]] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            found.append(frozenset(["".join(run)]))
            run.clear()

    for op, argument in items:
        if op is _c.LITERAL and argument < 128:  # ASCII only: case-insensitive non-ASCII letters match ASCII ones
            run.append(chr(argument).lower() if folded else chr(argument))
            continue
        end_run()
        if op is _c.SUBPATTERN:
            _group, added, removed, inner = argument
            if not (added or removed):  # a group with flags of its own ("(?i:...)") is left alone
                found.extend(_sequence(list(inner), folded))
        elif op is _c.BRANCH:
            best = [_best(_sequence(list(branch), folded)) for branch in argument[1]]
            if all(best):
                found.append(frozenset().union(*best))
        elif op in _REPEATS:
            low, _high, inner = argument
            if low >= 1:
                found.extend(_sequence(list(inner), folded))
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            found.extend(_sequence(list(argument), folded))
        # anything else (a class, an assertion, an anchor, a back-reference) requires no word we can name
    end_run()
    return found


def _best(sets: list[frozenset[str]]) -> frozenset[str] | None:
    """The most telling set: its shortest word the longest, then the fewest words."""
    usable = [words for words in sets if min(map(len, words)) >= MIN_WORD]
    return max(usable, key=lambda words: (min(map(len, words)), -len(words)), default=None)


class Gated:
    """A compiled pattern that first tests its required words; used like the pattern itself."""

    __slots__ = ("pattern", "words", "folded")

    def __init__(self, pattern: re.Pattern, words: WordSets) -> None:
        self.pattern = pattern
        self.words = words
        self.folded = bool(pattern.flags & re.IGNORECASE)

    def may_match(self, text: str) -> bool:
        if self.folded:
            if not text.isascii():
                return True  # case-insensitive matching pairs some non-ASCII letters with ASCII ones ("K", "ſ")
            text = text.lower()
        return all(any(word in text for word in words) for words in self.words)

    def search(self, text: str, *args: Any) -> re.Match | None:
        return self.pattern.search(text, *args) if self.may_match(text) else None

    def match(self, text: str, *args: Any) -> re.Match | None:
        return self.pattern.match(text, *args) if self.may_match(text) else None

    def fullmatch(self, text: str, *args: Any) -> re.Match | None:
        return self.pattern.fullmatch(text, *args) if self.may_match(text) else None

    def finditer(self, text: str, *args: Any) -> Iterator[re.Match]:
        return self.pattern.finditer(text, *args) if self.may_match(text) else iter(())

    def findall(self, text: str, *args: Any) -> list:
        return self.pattern.findall(text, *args) if self.may_match(text) else []

    def sub(self, replacement: Any, text: str, count: int = 0) -> str:
        return self.pattern.sub(replacement, text, count) if self.may_match(text) else text

    def __getattr__(self, name: str) -> Any:  # groupindex, flags, ...: the pattern's own
        return getattr(self.pattern, name)


def gated(pattern: re.Pattern) -> re.Pattern | Gated:
    """The pattern behind a gate of its required words, or the pattern itself when it requires none."""
    words = required_words(pattern)
    return Gated(pattern, words) if words else pattern
