"""Does an item's quote support its value? The hybrid's check on the model's changes. Pure: no I/O.

A quote in the criterion's text proves the model read something there, not that it read the item. The
hybrid (extract/hybrid.py) accepts a model item only when its quote, read by the rules' own parsers
and vocabularies, says what the item says. What an item says is its scored facts (the harness's one
definition, `extract.evaluate.scoring.VIEWS`: a lab is its analyte, comparator, threshold in the
canonical unit and whether it is conditional; a biomarker test its marker and what it must be; a
therapy its requirement and name ...). One rule over the declarations of `SUPPORT`:

1. scope: the quote is not stated for one cohort only (the ConText layer's cohort labels);
2. where the rules, reading the quote alone as a criterion of the same section
   (`extract.rules.extract_eligibility`), read anything of the field, their reading decides: they must
   read every fact of the item (its numbers: thresholds, ages, the ECOG range, stage groups, by the
   same parsers; its polarity as the rules restate it), and no negation outside the quote, nor a
   modifier that takes the field's items out (`not_when`: a washout window), may reach into it (the
   quote alone would miss it);
3. where they read nothing of it, a field whose values are names in a vocabulary (`Support.named`)
   is supported when every value is named in the quote by one of its vocabulary names or synonyms (a
   drug also by its class and a class's parents), in a sentence the rules' own tests let speak of the
   field (`needs`, `refuses`, `not_when`), the options it leaves `plain` hold their plain value, and
   the `polarity` attribute is what the ConText layer reads at the named words in the whole
   criterion ("no prior trastuzumab" in the inclusions is `excluded`). Other fields are not.

`unsupported` gives the reason an item is not supported, or None; `reach` the fields of which some
item quoting a criterion could be supported and say something new (what the hybrid asks the model for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from extract.evaluate.scoring import VIEWS
from extract.grounding import locate
from extract.rules import extract_eligibility
from extract.rules import biomarkers, cancer_types, therapies, vocab
from extract.rules.context import _CLAUSE_BREAK, _SENTENCE_BREAK, annotate
from extract.rules.polarity import cohort_specific, requirement, scoped_to_cohort, stated_requirement
from schemas import Criterion
from schemas.fields import ITEM_FIELD, STRICTER


# A vocabulary's reading of a quote, name by name: (start, end, the values those words name, the ones
# among them the words say themselves: a drug, not its classes), in the quote's offsets.
Named = tuple[int, int, set[str], set[str]]


def _markers(quote: str) -> list[Named]:
    """Marker names as the rules' biomarker finder reads them (`_marker_hits`): a name glued into a
    word is part of it ("anti-PD-1 therapy" names no PD-1 status)."""
    return [(hit.start, hit.end, set(hit.marker.markers), set(hit.marker.markers))
            for hit in biomarkers._marker_hits(quote)]  # fmt: skip


def _therapies(quote: str) -> list[Named]:
    """Drugs and classes named, each with the classes it belongs to ("trastuzumab" names anti-her2 therapy,
    but says only trastuzumab)."""
    hits = [*vocab.drugs().scan(quote), *vocab.therapy_classes().scan(quote), *vocab.generic_classes(quote)]
    named = []
    for hit in hits:
        kinds = {hit.value, *vocab.drug_classes(hit.value), *vocab.class_ancestors(hit.value)}
        named.append((hit.start, hit.end, {kind.lower() for kind in kinds}, {hit.value.lower()}))
    return named


def _oncotree(item: dict[str, Any]) -> set[str]:
    """The OncoTree codes the vocabulary gives a cancer type's name ("breast carcinoma": BRCA)."""
    return {hit.value.oncotree for hit in vocab.cancer_types().scan(str(item.get("name") or "")) if hit.value.oncotree}


def _cancer_names(quote: str) -> list[Named]:
    return [(hit.start, hit.end, {hit.value.name.lower()}, {hit.value.name.lower()})
            for hit in vocab.cancer_types().scan(quote)]  # fmt: skip


Reader = Callable[[str], list[Named]]
VOCABULARIES: dict[str, Reader] = {"marker": _markers, "therapy": _therapies, "cancer_type": _cancer_names}


@dataclass(frozen=True)
class Support:
    """How one field's items are checked against their quotes (the module docstring)."""

    # (attribute, vocabulary): each value there must be named in the quote. "any_of.marker" reads the
    # attribute of every element of a list; a list attribute ("drugs") is each of its values.
    named: tuple[tuple[str, str], ...] = ()
    # attribute: its value as the ConText layer reads it at the named words, by this polarity function
    polarity: tuple[str, Callable[[Criterion, int, int], str]] | None = None
    # attributes that the vocabulary path accepts only at their plain value ("HER2-negative" is read by
    # the rules' biomarker parser, not by a name)
    plain: dict[str, Any] = field(default_factory=dict)
    # attributes that, set, take the item off the vocabulary path (lines of therapy: "more than 2 prior
    # lines" in the exclusions is a required therapy with max_lines, which polarity would call excluded)
    reread_only: tuple[str, ...] = ()
    # what makes two items the same thing, one of which corrects the other (extract/hybrid.py)
    identity: tuple[str, ...] = ()
    # the concepts of a vocabulary an item names (a cancer type's OncoTree codes): an item naming one a
    # rules item names, with the same requirement, says the same in other words (`restates`)
    concept: Callable[[dict[str, Any]], set[str]] | None = None
    # The rules' own tests of whether a sentence speaks of the field at all, for the vocabulary path:
    # words one of which it must hold, words none of which it may hold, and ConText modifiers that take
    # the named words out (a washout window, a therapy planned, a biomarker that only conditions another
    # requirement, what an exclusion allows).
    needs: re.Pattern | None = None
    refuses: re.Pattern | None = None
    not_when: tuple[str, ...] = ()


SUPPORT: dict[str, Support] = {
    "biomarkers": Support(named=(("any_of.marker", "marker"),), polarity=("requirement", stated_requirement),
                          plain={"any_of.status": "positive"}, identity=("any_of.marker",),
                          needs=biomarkers._BIOMARKER_CONTEXT, not_when=("conditional", "permitted", "cohort")),  # fmt: skip
    "cancer_types": Support(named=(("name", "cancer_type"),), polarity=("requirement", requirement), identity=("name",),
                            concept=_oncotree,
                            refuses=cancer_types._OTHER_CANCER, not_when=("conditional", "permitted", "cohort")),  # fmt: skip
    "prior_therapies": Support(named=(("therapy", "therapy"), ("drugs", "therapy")), polarity=("requirement", requirement),
                               reread_only=("min_lines", "max_lines", "min_duration_months"), identity=("therapy",),
                               needs=therapies._CUE, refuses=therapies._NOT_EXPOSURE,
                               not_when=("window", "planned", "permitted", "cohort")),  # fmt: skip
    "labs": Support(identity=("analyte", "condition")),
    "performance_status": Support(identity=("scale",)),
    # single fields: one item, whatever its value
    **{name: Support() for name in ("stage", "brain_metastases", "measurable_disease", *STRICTER)},
}


def values(item: dict[str, Any], path: str) -> list[Any]:
    """The values at `path` ("any_of.marker": every test's marker; "drugs": every drug)."""
    found: list[Any] = [item]
    for part in path.split("."):
        found = [value for one in found for value in _as_list(one.get(part) if isinstance(one, dict) else None)]
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def identity(name: str, item: dict[str, Any]) -> tuple:
    """What an item is about, whatever it says of it: a correction has the identity of what it corrects."""
    return tuple(tuple(sorted(map(str, values(item, path)))) for path in SUPPORT[name].identity)


def restates(name: str, item: dict[str, Any], other: dict[str, Any]) -> bool:
    """`item` says what `other` says in other words: a concept of the field's vocabulary both name
    ("breast cancer" and "invasive breast cancer": BRCA), with the same requirement."""
    concept = SUPPORT[name].concept
    return concept is not None and item.get("requirement") == other.get("requirement") and bool(concept(item) & concept(other))


def facts(name: str, item: dict[str, Any]) -> set[tuple]:
    """The item's scored facts (a field's facts in the harness, extract.evaluate.scoring)."""
    eligibility = {name: item["value"]} if name in STRICTER else {name: [item] if ITEM_FIELD[name].many else item}
    return {key for key, _ in VIEWS[name].facts(eligibility)}


def reread(name: str, quote: str, criterion: Criterion) -> set[tuple]:
    """The facts of the field the rules read in the quote alone, taken as a criterion of the same section."""
    return _facts_read(name, _read_alone(quote, criterion))


def _read_alone(quote: str, criterion: Criterion) -> dict[str, Any]:
    alone = Criterion(id=criterion.id, kind=criterion.kind, text=quote, start=0, end=len(quote))
    return extract_eligibility([alone])


def _facts_read(name: str, eligibility: dict[str, Any]) -> set[tuple]:
    if name in STRICTER:
        return {(eligibility[name],)} if eligibility.get(name) is not None else set()
    return {key for key, _ in VIEWS[name].facts(eligibility)}


def unsupported(name: str, item: dict[str, Any], criterion: Criterion, quote: str | None = None) -> str | None:
    """Why the quote (the item's own, or `quote`) does not support the item; None when it does."""
    quote = quote if quote is not None else (item.get("evidence") or {}).get("quote") or ""
    span = locate(criterion.text, quote, [])
    if span is None:
        return f"its quote {quote[:60]!r} is not in {criterion.id}"
    start, end = span
    text = criterion.text
    if cohort_specific(text) or scoped_to_cohort(text, start):
        return f"{criterion.id} states it for one cohort only"
    wanted, read = facts(name, item), reread(name, text[start:end], criterion)
    if not wanted:
        return "it states nothing the contract scores"
    if read:  # the rules read the field in the quote: their reading decides
        if not wanted <= read:
            return f"the rules read {_listed(read)} in {text[start:end][:60]!r}, not {_listed(wanted - read)}"
        return _outside(name, text, start, end)
    why = _named(name, item, criterion, start, end)
    return None if why is None else f"the rules read nothing of it in {text[start:end][:60]!r} and {why}"


def _gated(support: Support, text: str, start: int, end: int) -> str | None:
    """Why the sentence around the named words at [start, end) states nothing of the field, by the rules' tests."""
    context = annotate(text)
    low, high = context.sentence(start, end)
    sentence = text[low:high]
    if support.needs is not None and not support.needs.search(sentence.lower()):
        return f"{sentence[:60]!r} has none of the words the rules need for it"
    refused = support.refuses.search(sentence.lower()) if support.refuses is not None else None
    if refused:
        return f"{refused.group()!r} makes it no requirement of the field"
    modifiers = [m for m in context.triggers(support.not_when, low, high)] + context.covering(support.not_when, start, end)
    if modifiers:
        first = modifiers[0]
        return f"{text[first.trigger_start : first.trigger_end]!r} ({first.kind}) takes it out"
    return None


def _listed(found: set[tuple]) -> str:
    return ", ".join(sorted("/".join(str(part) for part in key if part is not None) for key in found)) or "nothing"


NEGATIONS = ("negated", "prohibition", "excluded")


def _outside(name: str, text: str, start: int, end: int) -> str | None:
    """Why a modifier outside [start, end) whose scope reaches into it undoes a reading of the quote
    alone (which misses it): a negation, or one that takes the field's items out (`Support.not_when`:
    "Prior chemotherapy" within "Prior chemotherapy within 21 days" is a washout); None if none does."""
    for modifier in annotate(text).covering((*NEGATIONS, *SUPPORT[name].not_when), start, end):
        if modifier.trigger_end <= start or modifier.trigger_start >= end:
            trigger = text[modifier.trigger_start : modifier.trigger_end]
            if modifier.kind in NEGATIONS:
                return f"{trigger!r} outside the quote negates it"
            return f"{trigger!r} ({modifier.kind}) outside the quote takes it out"
    return None


def _named(name: str, item: dict[str, Any], criterion: Criterion, start: int, end: int) -> str | None:
    """Why the vocabulary path does not support the item; None when it does."""
    support = SUPPORT[name]
    if not support.named:
        return "no vocabulary names it"
    if any(values(item, path) for path in support.reread_only):
        return "its counts are not read there"
    for path, plain in support.plain.items():
        if any(value != plain for value in values(item, path)):
            return f"{path.split('.')[-1]} {plain!r} is not what it says"
    text = criterion.text
    first: tuple[int, int] | None = None
    for path, vocabulary in support.named:
        read = VOCABULARIES[vocabulary](text[start:end])
        for value in values(item, path):
            where = next(((s, e) for s, e, names, _ in read if str(value).lower() in {n.lower() for n in names}), None)
            if where is None:
                return f"no {vocabulary.replace('_', ' ')} name of {value!r} is in it"
            first = first or (start + where[0], start + where[1])
    if first is not None:
        gate = _gated(support, text, *first)
        if gate is not None:
            return gate
    if support.polarity and first:
        attribute, read_polarity = support.polarity
        return None if item.get(attribute) == read_polarity(criterion, *first) else (
            f"its {attribute} {item.get(attribute)!r} is not what the criterion says there")  # fmt: skip
    return None


def reach(criterion: Criterion, said: list[tuple[str, dict[str, Any]]] = ()) -> set[str]:
    """The fields of which some item quoting the criterion could be supported (`unsupported`) and say
    something the items `said` of it ((field, item) pairs: the rules') do not, for quotes a model
    would choose: the criterion, each of its sentences and clauses, and each span from a sentence's
    start to a vocabulary name's end ("Prior exposure to sotatercept", whatever follows). A field is in
    reach where the rules read facts of it in one of those alone that `said` lacks and nothing outside
    takes them out (rule 2), or, for a named field, where words naming a value `said` lacks (the drug
    itself, not a class it belongs to: a model naming the class of a drug said adds nothing) are in a
    sentence the rules' tests let speak of it (rule 3); never in a quote stated for one cohort (rule 1)."""
    text = criterion.text
    if cohort_specific(text):
        return set()
    said_facts: dict[str, set[tuple]] = {}
    said_names: dict[str, set[str]] = {}
    for name, item in said:
        said_facts.setdefault(name, set()).update(facts(name, item))
        said_names.setdefault(name, set()).update(str(value).lower() for path, _ in SUPPORT[name].named
                                                  for value in values(item, path))  # fmt: skip
    named = {name: [hit for _, vocabulary in support.named for hit in VOCABULARIES[vocabulary](text)]
             for name, support in SUPPORT.items() if support.named}  # fmt: skip
    spans = {(0, len(text))}
    for pattern in (_SENTENCE_BREAK, _CLAUSE_BREAK):
        breaks = [(m.start(), m.end()) for m in pattern.finditer(text)]
        spans.update(zip([0, *(end for _, end in breaks)], [*(start for start, _ in breaks), len(text)]))
    context = annotate(text)
    spans.update((context.sentence(start, end)[0], end) for hits in named.values() for start, end, *_ in hits)
    found: set[str] = set()
    for start, end in spans:
        if text[start:end].strip() and not scoped_to_cohort(text, start):
            read = _read_alone(text[start:end], criterion)
            found |= {name for name in SUPPORT if not _facts_read(name, read) <= said_facts.get(name, set())
                      and _outside(name, text, start, end) is None}  # fmt: skip
    for name, hits in named.items():
        if name not in found and any(
            not own <= said_names.get(name, set()) and not scoped_to_cohort(text, start)
            and _gated(SUPPORT[name], text, start, end) is None
            for start, end, _, own in hits
        ):  # fmt: skip
            found.add(name)
    return found
