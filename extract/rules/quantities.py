"""Numbers and comparators as eligibility text writes them: the one parser every finder uses.

"≥ 1.5", ">/= 100,000", "at least 18", "18 or older", "=< 2" all come down to a canonical
comparator (`>=`, `>`, `<=`, `<`) and a float.
"""

from __future__ import annotations

import re

# Written comparators before a number, by canonical form; longest first inside the alternation.
_BEFORE = {
    ">=": [
        "≥", "⩾", "≧", "＞＝", "＞=", ">＝", ">=", "=>", ">/=", "> /=", ">or=", "> or =", "> or equal to", "=/>", ">_",
        "greater than or equal to", "greater than or equal", "greater or equal to", "equal to or greater than",
        "equal or greater than", "higher than or equal to", "more than or equal to", "at least", "atleast",
        "no less than", "not less than", "not below", "a minimum of", "minimum of", "minimum",
    ],
    "<=": [
        "≤", "⩽", "≦", "＜＝", "＜=", "<＝", "<=", "=<", "</=", "< /=", "<or=", "< or =", "< or equal to", "=/<",
        "less than or equal to", "less than or equal", "lower than or equal to", "equal to or less than",
        "equal or less than", "no more than", "not more than", "no greater than", "not greater than",
        "not to exceed", "not exceeding", "not above", "does not exceed", "up to", "a maximum of", "maximum of", "maximum",
    ],
    ">": [">", "＞", "greater than", "more than", "higher than", "above", "over", "exceeding", "exceeds", "older than"],
    "<": ["<", "＜", "less than", "lower than", "below", "under", "younger than", "fewer than"],
}
# Written comparators after a number ("18 years or older", "2 or less").
_AFTER = {
    ">=": ["or more", "or greater", "or higher", "or above", "or older", "or over", "and above", "and over",
           "and older", "or better", "+"],
    "<=": ["or less", "or lower", "or below", "or fewer", "or younger", "or under", "and below", "and under",
           "and younger"],
}


def _alternation(forms: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
    lookup = {form.lower(): canonical for canonical, written in forms.items() for form in written}
    ordered = sorted(lookup, key=len, reverse=True)
    parts = [
        rf"\b{re.escape(form)}(?![A-Za-z])".replace(r"\ ", r"\s+") if form[0].isalpha() else re.escape(form).replace(r"\ ", r"\s*")
        for form in ordered
    ]
    return "|".join(parts), {re.sub(r"\s+", "", form): canonical for form, canonical in lookup.items()}


COMPARATOR_BEFORE, _BEFORE_LOOKUP = _alternation(_BEFORE)
COMPARATOR_AFTER, _AFTER_LOOKUP = _alternation(_AFTER)

# "100,000" and "1,500" are thousands; "1,5" is a European decimal; "0.5", ".5", "18".
NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+(?:[.,]\d+)?|\.\d+)"
WORD_NUMBERS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "twelve": 12}


# A count as written in words or digits: "2", "two".
COUNT = rf"(?:{NUMBER}|\b(?:{'|'.join(WORD_NUMBERS)})\b)"

# The other end of a bound stated beside it: "at least 1 but no more than 3", ">= 1 line (no more than 3)",
# "a minimum of 2 and a maximum of 5". Before a bound: "<comparator> <n> and|but|,"; after one: "(<comparator> <n>)".
_PAIRED_BEFORE = re.compile(
    rf"(?i)(?P<c>{COMPARATOR_BEFORE})\s*(?P<n>{COUNT})\s*(?:,\s*)?(?:and|but|,)\s*(?:also\s+|a\s+)?$"
)
_PAIRED_AFTER = re.compile(
    rf"(?i)\s*(?:\(\s*|,\s*(?:(?:and|but)\s+)?|\b(?:and|but)\s+)(?:a\s+)?(?P<c>{COMPARATOR_BEFORE})\s*(?P<n>{COUNT})(?!\w)"
    r"(?!\s*(?:%|days?|weeks?|months?|years?|hours?|cycles?|doses?|mg|g/|x\b|×))(?:\s*\))?"
)
_PAIR_WINDOW = 40


def paired_bound(text: str, start: int, end: int, canonical: str) -> tuple[str, float, int, int] | None:
    """The opposite bound written next to the one at text[start:end] whose comparator is `canonical`:
    (its comparator, its value, and the span it adds), or None."""
    lower_side = canonical in (">=", ">")
    before = _PAIRED_BEFORE.search(text, max(0, start - _PAIR_WINDOW), start)
    after = _PAIRED_AFTER.match(text, end)
    for found, span in ((after, (end, after.end()) if after else None), (before, (before.start(), start) if before else None)):
        if found is None:
            continue
        other = comparator(found["c"])
        if (other in (">=", ">")) != lower_side:
            return other, number(found["n"]), *span
    return None


def comparator(written: str) -> str:
    """The canonical comparator for a written one ("=<" -> "<=", "or more" -> ">=")."""
    key = re.sub(r"\s+", "", written.lower())
    return _BEFORE_LOOKUP.get(key) or _AFTER_LOOKUP[key]


def number(written: str) -> float:
    """The value of a written number ("100,000" -> 100000.0, "1,5" -> 1.5, "two" -> 2.0)."""
    written = written.strip().lower()
    if written in WORD_NUMBERS:
        return float(WORD_NUMBERS[written])
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", written):
        return float(written.replace(",", ""))
    return float(written.replace(",", "."))


def restated(canonical: str) -> str:
    """What the patient must meet when an exclusion states the threshold ("ANC < 1.5" excludes: ">=")."""
    return {">=": "<", ">": "<=", "<=": ">", "<": ">="}[canonical]


def clean_number(value: float) -> int | float:
    """18.0 -> 18, 1.5 -> 1.5: values as written, without a spurious decimal."""
    return int(value) if value == int(value) else value
