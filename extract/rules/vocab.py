"""Load the rules backend's vocabularies: plain TSV files in `vocab/`, for curators to extend.

Each file has a header row naming the columns; lines starting with `#` are comments. Empty cells
are empty strings.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

VOCAB_DIR = Path(__file__).parent / "vocab"


def load_tsv(name: str) -> list[dict[str, str]]:
    """The rows of `vocab/<name>` as dicts keyed by the header's column names."""
    with open(VOCAB_DIR / name, encoding="utf-8", newline="") as handle:
        lines = [line for line in handle if line.strip() and not line.startswith("#")]
    rows = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    return [{key: (value or "").strip() for key, value in row.items()} for row in rows]


def phrase_regex(phrases: list[str]) -> str:
    """One regex matching any of `phrases`, built as a trie so a long vocabulary stays fast.

    Where a phrase has a space or a hyphen, any run of spaces and hyphens, or none, matches
    ("PD-L1" also matches "PD L1" and "PDL1"). Longer phrases win over their prefixes.
    """
    trie: dict = {}
    for phrase in phrases:
        node = trie
        for char in phrase:
            if char in " -":
                node[_SEPARATOR] = True
            else:
                node = node.setdefault(char, {})
        node[_END] = True
    return _trie_regex(trie)


_SEPARATOR, _END = 0, 1  # trie flags; every other key is a character


def _trie_regex(node: dict) -> str:
    branches = [re.escape(char) + _trie_regex(child) for char, child in sorted(node.items(), key=str) if isinstance(char, str)]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if node.get(_SEPARATOR):
        body = r"[\s-]*" + body
    return f"(?:{body})?" if node.get(_END) else body
