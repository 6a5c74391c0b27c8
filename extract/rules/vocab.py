"""Load the rules backend's vocabularies (plain TSV files in `vocab/`, for curators to extend) and
match their phrases with one regex each.

Each file has a header row naming the columns; lines starting with `#` are comments. Empty cells
are empty strings.
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

VOCAB_DIR = Path(__file__).parent / "vocab"


def load_tsv(name: str) -> list[dict[str, str]]:
    """The rows of `vocab/<name>` as dicts keyed by the header's column names."""
    with open(VOCAB_DIR / name, encoding="utf-8", newline="") as handle:
        lines = [line for line in handle if line.strip() and not line.startswith("#")]
    rows = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    return [{key: (value or "").strip() for key, value in row.items()} for row in rows]


def phrase_key(written: str) -> str:
    """A phrase without its spaces and hyphens: "PD-L1", "PD L1" and "PDL1" are one key."""
    return re.sub(r"[\s-]+", "", written)


def by_case(rows: list[dict[str, str]], column: str) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """The rows by the `phrase_key` of their `column`: (exact, folded). A row whose `case` is "exact"
    matches only as written ("AR", not "ar"); the others match in any case, keyed in lower case."""
    exact = {phrase_key(row[column]): row for row in rows if row["case"] == "exact"}
    folded = {phrase_key(row[column]).lower(): row for row in rows if row["case"] != "exact"}
    return exact, folded


def lookup(exact: dict[str, dict[str, str]], folded: dict[str, dict[str, str]], written: str) -> dict[str, str]:
    """The row a matched phrase names: the exact-case row first, else the case-folded one."""
    key = phrase_key(written)
    return exact.get(key) or folded[key.lower()]


def is_abbreviation(phrase: str) -> bool:
    """Short with a capital ("PT", "Hb"): matched as written, where a name ignores case."""
    return len(phrase) <= 5 and any(char.isupper() for char in phrase)


def phrase_regex(phrases: list[str]) -> str:
    """One regex matching any of `phrases`, built as a trie so a long vocabulary stays fast.

    Where a phrase has a space or a hyphen, any run of spaces and hyphens, or none, matches
    ("PD-L1" also matches "PD L1" and "PDL1"). Longer phrases win over their prefixes.
    """
    return _trie_regex(_trie(phrases, separators=" -"), re.escape)


def trie_alternation(phrases: list[str]) -> str:
    """Like `phrase_regex`, but stricter about separators: a space matches a run of at least one
    white space or hyphen ("anti PD-1", "anti-PD-1"), and a hyphen only a hyphen."""
    return _trie_regex(_trie(phrases, separators=""), _space_or_char)


# Python's `re` tries the branches of `a|b|c` one by one at every position; a few hundred phrases
# make that slow. Sharing prefixes ("platelet", "platelet count", "platelets") lets a failing
# position fail after one character instead of after every phrase.
_SEPARATOR, _END = 0, 1  # trie flags; every other key is a character


def _trie(phrases: list[str], separators: str) -> dict:
    """The phrases as a trie; a character in `separators` flags its node instead of opening a branch."""
    trie: dict = {}
    for phrase in phrases:
        node = trie
        for char in phrase:
            if char in separators:
                node[_SEPARATOR] = True
            else:
                node = node.setdefault(char, {})
        node[_END] = True
    return trie


def _trie_regex(node: dict, atom) -> str:
    """The regex for a trie node; `atom` writes one character."""
    # Sorted, so a vocabulary's regex does not depend on the order of its rows.
    children = sorted((char, child) for char, child in node.items() if isinstance(char, str))
    branches = [atom(char) + _trie_regex(child, atom) for char, child in children]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if node.get(_SEPARATOR):
        body = r"[\s-]*" + body
    return f"(?:{body})?" if node.get(_END) else body


def _space_or_char(char: str) -> str:
    return r"[\s-]+" if char == " " else re.escape(char)


@functools.cache
def _classes_by_drug() -> dict[str, tuple[str, ...]]:
    classes: dict[str, list[str]] = {}
    for row in load_tsv("drugs.tsv"):
        if row["class"] and row["class"] not in classes.setdefault(row["inn"], []):
            classes[row["inn"]].append(row["class"])
    return {inn: tuple(found) for inn, found in classes.items()}


def drug_classes(inn: str) -> tuple[str, ...]:
    """The project's classes of a drug by its lower-case INN ("trastuzumab" -> ("anti-her2 therapy",))."""
    return _classes_by_drug().get(inn, ())
