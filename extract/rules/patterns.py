"""One regular expression for a whole vocabulary, built as a trie so matching stays fast.

Python's `re` tries the branches of `a|b|c` one by one at every position; a few hundred phrases
make that slow. Sharing prefixes ("platelet", "platelet count", "platelets") lets a failing
position fail after one character instead of after every phrase.
"""

from __future__ import annotations

import re


def trie_alternation(phrases: list[str]) -> str:
    """A regex matching any of `phrases` (longest first where one extends another).

    A space in a phrase matches any run of white space or a hyphen ("anti PD-1", "anti-PD-1").
    """
    trie: dict = {}
    for phrase in phrases:
        node = trie
        for char in phrase:
            node = node.setdefault(char, {})
        node[""] = {}
    return _pattern(trie)


def _pattern(node: dict) -> str:
    ends_here = "" in node
    branches = [_char(char) + _pattern(child) for char, child in sorted(node.items()) if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if ends_here else body


def _char(char: str) -> str:
    return r"[\s-]+" if char == " " else re.escape(char)
