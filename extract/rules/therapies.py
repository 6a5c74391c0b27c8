"""Prior therapies, required or excluded: "prior trastuzumab", "no prior CDK4/6 inhibitor",
"chemotherapy-naive", "no more than 2 prior lines of systemic therapy".

Drugs are named through the drug lexicon (generic, brand and code names -> INN and class) and classes
through the class vocabulary, both in `vocab/`. A class with the drugs it gives as examples
("anti-HER2 therapy including trastuzumab, pertuzumab") is one item; drugs named alone are one item
each. Washout windows ("no chemotherapy within 21 days"), allowed therapies, exceptions, toxicity
of prior therapy and planned therapy are not prior therapies: sentences saying so are skipped.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Iterator

from extract.rules.context import Context, Modifier, annotate
from extract.rules.polarity import clause_bounds, cohort_specific, evidence, requirement
from extract.rules.quantities import COMPARATOR_AFTER, COMPARATOR_BEFORE, COUNT, WORD_NUMBERS, clean_number, comparator, number, paired_bound, restated
from extract.rules.vocab import drugs, generic_classes_within, is_abbreviation, therapy_classes
from schemas import Criterion


class _Vocabulary:
    """Phrases of a vocabulary (vocab.drugs() or vocab.therapy_classes()) as found in criteria: whole
    words, not glued to a word before; "chemotherapy-naive" still names chemotherapy, "chemotherapy-induced"
    does not name it as given."""

    def __init__(self, lexicon, generic=None) -> None:
        self.lexicon = lexicon
        self.generic = generic  # a function finding more mentions (the class grammar), or None

    def mentions(self, text: str, lower: str, start: int, end: int) -> list[tuple[int, int, str]]:
        """(start, end, value) for every phrase named in text[start:end]."""
        found = [(hit.start, hit.end, hit.value) for hit in self.lexicon().scan(text, start, end)]
        if self.generic is not None:
            found = _longest([*found, *((h.start, h.end, h.value) for h in self.generic(text, start, end))])
        return [m for m in found if self._stands_alone(text, m[0], m[1]) and self._as_named(text[m[0] : m[1]], m[2], text)]

    @staticmethod
    def _stands_alone(text: str, start: int, end: int) -> bool:
        before = start >= 2 and text[start - 1] == "-" and not text[start - 2].isspace()
        after = _GLUED_AFTER.match(text, end)
        return not before and not after

    def _as_named(self, written: str, value: str, text: str) -> bool:
        """Does the text use an abbreviation as the vocabulary does? "Richter transformation (RT)" defines
        RT as something else."""
        if not is_abbreviation(written):
            return True
        defined = text.find(f"({written})")
        if defined < 0:
            return True
        return any(hit.value == value for hit in self.lexicon().scan(text, max(0, defined - 80), defined))


def _longest(found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Overlapping mentions: the longest, then the first."""
    kept: list[tuple[int, int, str]] = []
    for mention in sorted(found, key=lambda m: (m[0], -m[1])):
        if kept and mention[0] < kept[-1][1]:
            continue
        kept.append(mention)
    return kept


# "chemotherapy-induced": a phrase glued by a hyphen to a word after it, unless "-naive", "-free".
_GLUED_AFTER = re.compile(r"-(?!na[iï]ve\b|free\b)\w")
_DRUGS = _Vocabulary(drugs)
_CLASSES = _Vocabulary(therapy_classes, generic_classes_within)


_SENTENCE = re.compile(r"[^.;\n]+(?:\.(?=\d)[^.;\n]*)*")
# Words that make a therapy one the patient has (or has not) already had.
_EXPOSURE = re.compile(
    r"\b(?:(?:prior|previous)(?!\s+(?:to|research|testing|tests?|genomic|sequencing|biops\w*)\b)|previously|received|receipt|treated|pre-?treated|exposure|exposed|na[iï]ve|"
    r"progress(?:ed|ion|ing)?|refractory|failed|failure|resistant|relapsed|had|underwent|undergone|"
    r"lines?|regimens?|history\s+of|ever\s+(?:used|taken|been\s+treated))\b"
)
_CUE = re.compile(_EXPOSURE.pattern + r"|\b(?:no|not|never|without)\b")
_NAIVE = re.compile(r"[\s-]*na[iï]ve\b")
_NOT_EXPOSURE = re.compile(
    r"toxicit|adverse|recover|hypersensitiv|allerg|immune-related|\birAEs?\b|\bgrade\s*[≥>]|"
    r"contraindicat|unable\s+to|unwilling|refus|brain|\bcns\b|lesion|autoimmun|infection|"
    r"steroid|\baes?\b|unresolved|time\s+between|sensitive|registered|pneumonitis|\binability\s+to\b|"
    # "Capecitabine is not counted as a prior chemotherapy regimen": what counts as a line, not a requirement
    r"\bcount(?:s|ed)?\s+as\b|\bcounted\b"
)
# "progression following completion of this chemotherapy course": a therapy named again, stated already.
_ANAPHORA = re.compile(r"\b(?:this|that|these|those|such|said|the\s+same)\s+$")
# "Prior Systemic Therapy Criteria:": a heading over the criteria that follow, not a criterion.
_HEADING = re.compile(r"[^\n.;]{0,80}:\s*")
# "anti-HER2 therapy including trastuzumab, pertuzumab": the drugs are the class's examples.
_EXAMPLES = re.compile(
    r"[\s,:]*(?:(?:\(|\[)\s*|(?:\(|\[)?\s*(?:such\s+as|including|includes|e\.\s*g\.?|eg\.?|i\.\s*e\.?|like|for\s+example|namely|"
    r"for\s+instance)[\s,:]*(?:\(|\[)?)\s*(?:with\s+)?(?:a|an|any)?\s*$"
)
_ASIDE = re.compile(r"\s*\([^()]*\)")
_DURING = re.compile(r"\bduring\s+(?:[\w-]+\s+){0,5}$")
_LIST = re.compile(r"^[\s,/]*(?:and/or|and|or|plus|\+)?[\s,/]*(?:\(|\))?\s*$")
_UNTREATED = re.compile(
    r"\bpreviously\s+untreated\b|\b(?:treatment|therapy)[\s-]*na[iï]ve\b"
    r"|\bno\s+(?:prior|previous)\s+(?:systemic\s+|anti-?cancer\s+)?(?:treatment|therapy)\s+for\b"
)
# "(prior radiation therapy to the pelvis is acceptable if completed at least 2 weeks prior)": an aside
# that allows something says nothing of the rest of the sentence.
_PARENTHETICAL = re.compile(r"\([^()\n]*\)")
# "(see Introduction, Section 2 for ... previous research on targeted therapy)": a cross-reference states nothing.
_SEE = re.compile(r"\(\s*see\b")
_COUNT = r"(?:\d+|" + "|".join(WORD_NUMBERS) + r")"
_NOUN = re.compile(r"\b(?:lines?|regimens?|(?:chemo)?therap(?:y|ies)|treatments?)\b")
# A count of prior lines, read backwards from its noun so only a short window is searched.
_LINES = re.compile(
    rf"(?:(?P<before>{COMPARATOR_BEFORE}|\bonly\b)\s*)?(?P<n>\b{_COUNT})(?:\s*\(\d+\))?"
    rf"(?:\s*(?:-|–|\bto\b|\bor\b)\s*(?P<n2>{_COUNT}\b))?(?:\s*(?P<after>{COMPARATOR_AFTER}))?\s+"
    rf"(?P<middle>(?:(?!(?:days?|weeks?|months?|years?|hours?|cycles?|doses?)\b)[a-z][\w/()-]*\s+){{0,4}}?)"
    rf"(?P<noun>lines?|regimens?|(?:chemo)?therap(?:y|ies)|treatments?)$"
)
_LINES_WINDOW = 80
_ANY_COUNT = re.compile(r"\d|\b(?:" + "|".join(WORD_NUMBERS) + r")\b")
# "2 prior therapies" counts lines; "at least one novel AR-targeted therapy" names a therapy.
_COUNTED = re.compile(r"\b(?:prior|previous|systemic|anti-?cancer|lines?\s+of)\b")
_OF_CLASS = re.compile(r"\s*(?:of\s+|with\s+)?(?:prior\s+|previous\s+|standard\s+)?")
_SETTINGS = (
    ("any", re.compile(r"\bany\s+setting\b")),
    ("metastatic", re.compile(r"\bmetastatic\b|\badvanced\b")),
    ("neoadjuvant", re.compile(r"\bneo-?adjuvant\b")),
    ("adjuvant", re.compile(r"\badjuvant\b")),
)
_DURATION = re.compile(
    rf"(?:{COMPARATOR_BEFORE})\s*(?P<n>{COUNT})\s*(?P<unit>months?|years?)\b"
)


def _setting(clause: str) -> str | None:
    return next((name for name, pattern in _SETTINGS if pattern.search(clause)), None)


def _duration(clause: str) -> re.Match | None:
    """The minimum duration a clause states ("for at least 2 years"), or None."""
    if "month" not in clause and "year" not in clause:
        return None  # the comparator alternation is slow to search: most clauses state no duration
    return _DURATION.search(clause)


def _months(duration: re.Match | None) -> float | None:
    return None if duration is None else clean_number(number(duration["n"]) * (12 if duration["unit"].startswith("y") else 1))


def _item(criterion: Criterion, lower: str, requirement_: str, therapy: str, drugs: list[str], start: int, end: int) -> dict:
    clause_start, clause_end = clause_bounds(criterion.text, start, end)
    clause = lower[clause_start:clause_end]
    # The quote runs from the word that makes it a prior therapy ("No prior", "received") to the last name.
    cue = _CUE.search(lower, max(clause_start, start - 60), start)
    start = cue.start() if cue else start
    naive = _NAIVE.match(lower, end)
    end = naive.end() if naive else end
    duration = _duration(clause)
    if duration is not None and clause_start + duration.start() >= end:
        end = clause_start + duration.end()  # the quote states the duration too: "... for at least 2 years"
    return {
        "requirement": requirement_,
        "therapy": therapy,
        "drugs": drugs,
        "setting": _setting(clause),
        "min_lines": None,
        "max_lines": None,
        "min_duration_months": _months(duration),
        "evidence": evidence(criterion, criterion.text[start:end]),
    }


def _lines(match: re.Match, exclusion: bool) -> tuple[int | None, int | None] | None:
    """(min_lines, max_lines) a count of prior lines states, or None when it states no bound."""
    low, high = int(number(match["n"])), int(number(match["n2"])) if match["n2"] else None
    if high is not None:
        return None if exclusion else (low, high)
    written = match["before"] or match["after"]
    if written == "only":
        return None if exclusion else (low, low)
    if not written:
        return None if exclusion else (low, None)
    canonical = restated(comparator(written)) if exclusion else comparator(written)
    return {">=": (low, None), ">": (low + 1, None), "<=": (None, low), "<": (None, low - 1)}[canonical]


def _paired(lower: str, match: re.Match, bounds: tuple, exclusion: bool) -> tuple[tuple, tuple[int, int]]:
    """A one-sided count with its other end written beside it ("at least 1 but no more than 3 lines",
    ">= 1 line (no more than 3)"): both ends, and the span that states them."""
    low, high = bounds
    if exclusion or (low is None) == (high is None):
        return bounds, (match.start(), match.end())
    count_end = match.start("noun") if low is not None else match.end()
    paired = paired_bound(lower, match.start(), count_end if low is None else match.end(), ">=" if low is not None else "<=")
    if paired is None:
        return bounds, (match.start(), match.end())
    other, value, start, end = paired
    value = int(value)
    if low is not None:
        high = value - (1 if other == "<" else 0)
    else:
        low = value + (1 if other == ">" else 0)
    return (low, high), (min(start, match.start()), max(end, match.end()))


# Generic heads a specific class may be written with: "anti-HER2 targeted therapy", "PARP inhibitor therapy".
_HEADS = frozenset({"targeted therapy", "systemic therapy", "therapy"})
_HEAD_GAP = re.compile(r"[\s-]*")


def _heads(mentions: list[tuple], index: int, lower: str) -> bool:
    """Is the class after the one at `index` only its generic head ("anti-HER2 targeted therapy")?"""
    if index + 1 >= len(mentions):
        return False
    _, last, _, name = mentions[index]
    start, _, kind, head = mentions[index + 1]
    return kind == "class" and head in _HEADS and name not in _HEADS and bool(_HEAD_GAP.fullmatch(lower, last, start))


def _within(starts: list[int], start: int, end: int) -> bool:
    """Does one of the sorted positions `starts` fall in [start, end)?"""
    index = bisect_left(starts, start)
    return index < len(starts) and starts[index] < end


def _live(lower: str, modifiers: list[Modifier]) -> list[Modifier]:
    """The modifiers whose trigger is not inside a blanked-out aside."""
    return [m for m in modifiers if lower[m.trigger_start] != " "]


def _sentence_items(
    criterion: Criterion, lower: str, start: int, end: int, cues: dict[str, list[int]], context: Context
) -> Iterator[dict]:
    """The prior therapies one sentence states; `cues`
    where the criterion's exposure and cohort cues start (searched once per criterion); `context` its modifiers."""
    text = criterion.text
    sentence = lower[start:end]
    if not _within(cues["exposure"], start, end):
        return
    nouns = list(_NOUN.finditer(lower, start, end))
    # a mention inside a blanked-out aside is not one (abbreviations are matched in the text as written)
    classes = [c for c in _CLASSES.mentions(text, lower, start, end) if lower[c[0]] != " "]
    drugs = [d for d in _DRUGS.mentions(text, lower, start, end) if lower[d[0]] != " "]
    if not (classes or drugs or nouns):
        return
    if _within(cues["cohort"], start, end) or _live(lower, context.triggers("permitted", start, end)):
        return
    exception = _live(lower, context.triggers("exception", start, end))
    stop = exception[0].trigger_start if exception else end  # what follows "except" is allowed
    stated = lower[start:stop]
    # a washout or time window, or a therapy planned or ongoing, is not a prior therapy
    if _live(lower, context.triggers(("window", "planned"), start, stop)) or _NOT_EXPOSURE.search(stated):
        return
    consumed: set[int] = set()
    counted_until = start
    for noun in nouns:
        if noun.start() < counted_until or noun.end() > stop:
            continue  # "lines of systemic therapy": "therapy" is part of the count already read
        window = max(start, noun.start() - _LINES_WINDOW)
        match = _LINES.search(lower, window, noun.end()) if _ANY_COUNT.search(lower, window, noun.end()) else None
        bounds = _lines(match, criterion.kind == "exclusion") if match else None
        if bounds is None or (match["noun"][0] in "tc" and not _COUNTED.search(match["middle"])):
            continue
        bounds, span = _paired(lower, match, bounds, criterion.kind == "exclusion")
        # the class counted: named inside ("2 prior chemotherapy regimens") or right after ("lines of systemic therapy")
        after = _OF_CLASS.match(lower, span[1]).end()
        named = [c for c in classes if match.start("middle") <= c[0] < match.end() or c[0] == after]
        therapy = named[0][2] if named else "systemic therapy"
        consumed.update(c[0] for c in named[:1])
        item = _item(criterion, lower, "required", therapy, [], span[0], max([span[1], *(c[1] for c in named[:1])]))
        item["min_lines"], item["max_lines"] = bounds
        counted_until = max([span[1], *(c[1] for c in named[:1])])
        aside = _ASIDE.match(lower, counted_until)
        if aside:  # "1 prior chemotherapy (which includes antibody drug conjugates)": what counts as a line
            consumed.update(c[0] for c in classes if counted_until <= c[0] < aside.end())
        yield item
    mentions = sorted(
        [(s, e, "class", name) for s, e, name in classes if s not in consumed and e <= stop]
        + [(s, e, "drug", name) for s, e, name in drugs if e <= stop]
    )
    index = 0
    while index < len(mentions):
        first, last, kind, name = mentions[index]
        if _DURING.search(lower, max(start, first - 40), first) or _ANAPHORA.search(lower, max(start, first - 12), first):
            index += 1  # "during their first line course of chemotherapy" dates something else
            continue
        while kind == "class" and _heads(mentions, index, lower):
            index += 1  # "anti-HER2 targeted therapy" is anti-HER2 therapy: the generic head adds nothing
            last = mentions[index][1]
        examples: list[str] = []
        if kind == "class":  # gather the drugs given as its examples
            gap = _EXAMPLES
            while index + 1 < len(mentions) and mentions[index + 1][2] == "drug" and gap.match(lower[last : mentions[index + 1][0]]):
                index += 1
                last = mentions[index][1]
                examples.append(mentions[index][3])
                gap = _LIST
            aside = _ASIDE.match(lower, last)
            if aside:  # "systemic therapy (chemotherapy, immunotherapy, or biological therapy)": its kinds
                while index + 1 < len(mentions) and mentions[index + 1][1] <= aside.end():
                    index += 1
                    if mentions[index][2] == "drug":
                        examples.append(mentions[index][3])
        else:
            examples = [name]
        restated = criterion.kind == "exclusion" and _live(lower, context.triggers(("prohibition", "excluded"), start, end))
        stated = "excluded" if restated else requirement(criterion, first, last)
        yield _item(criterion, lower, stated, name, list(dict.fromkeys(examples)), first, last)
        index += 1


def find(criterion: Criterion) -> Iterator[tuple[str, dict]]:
    text = criterion.text
    lower = text.lower()
    if len(lower) != len(text) or cohort_specific(text) or _HEADING.fullmatch(text):
        return  # a rare character whose lower case is longer would shift every offset
    untreated = _UNTREATED.search(lower) if ("untreated" in lower or "naive" in lower or "naïve" in lower or "no p" in lower) else None
    if not untreated and not _EXPOSURE.search(lower):
        return
    context = annotate(text)
    cohort = [m.trigger_start for m in context.triggers("cohort")]
    if cohort and ":" in lower:
        return
    # asides that allow a therapy are blanked out, so the sentence around them stands
    if "(" in lower:
        lower = _PARENTHETICAL.sub(lambda m: " " * len(m.group()) if context.triggers("permitted", m.start(), m.end()) or _SEE.match(m.group()) else m.group(), lower)
    cues = {
        "exposure": [m.start() for m in _EXPOSURE.finditer(lower)],
        "cohort": cohort,
    }
    seen: set[tuple] = set()  # "Enhertu or DS-8201" names one drug twice
    for sentence in _SENTENCE.finditer(lower):
        for item in _sentence_items(criterion, lower, sentence.start(), sentence.end(), cues, context):
            key = (item["requirement"], item["therapy"], item["min_lines"], item["max_lines"])
            if key not in seen:
                seen.add(key)
                yield "prior_therapies", item
    if untreated and not seen and criterion.kind == "inclusion" and not cohort:  # "previously untreated": no systemic therapy yet
        yield "prior_therapies", _item(criterion, lower, "excluded", "systemic therapy", [], untreated.start(), untreated.end())
