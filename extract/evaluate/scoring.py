"""Score one extraction against its gold file, and many trials into metrics. Pure: no I/O.

Implements the table in ../shared/SCHEMA.md ("How extractions are scored"): each field becomes a
set of facts per trial, extracted facts are matched to gold facts, and the counts give precision,
recall and F1 per field and micro-averaged over the headline fields. Inputs are plain dicts: the
gold file's `eligibility` and a record as `EligibilityRecord.model_dump(mode="json")`.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from extract.consistency import flagged
from extract.grounding import evidences, unaccounted
from extract.rules.vocab import drug_classes
from extract.units import lab_threshold
from schemas import Criterion

_AGE_FIELDS = ("min_age_years", "max_age_years")
_OPPOSITE = {"positive": "negative", "negative": "positive", "required": "excluded", "excluded": "required"}
# Where a fact keeps its polarity: a fact equal to gold but there is a polarity error.
_POLARITY_AT = {"biomarkers": 1, "prior_therapies": 0}


# -- facts -----------------------------------------------------------------------------------------

Facts = Iterator[tuple[tuple, dict | None]]  # (fact key, evidence) for every fact of one view of a field


def _scalar(name: str):
    def facts(eligibility: dict[str, Any]) -> Facts:
        value = eligibility.get(name)
        if value is not None:
            yield (value,), ((eligibility.get("origins") or {}).get(name) or {}).get("evidence")

    return facts


def _biomarker_facts(eligibility: dict[str, Any], strict: bool = False) -> Facts:
    for rule in eligibility.get("biomarkers") or []:
        for test in rule["any_of"]:
            must_be = test["status"] if rule["requirement"] == "required" else _OPPOSITE[test["status"]]
            key = (test["marker"], must_be)
            if strict:
                key += ((test.get("variant") or "").lower() or None,)
            yield key, rule.get("evidence")


def _stage_facts(eligibility: dict[str, Any]) -> Facts:
    stage = eligibility.get("stage")
    if stage:
        for group in stage.get("groups") or []:
            yield ("stage", group), stage.get("evidence")
        for setting in stage.get("settings") or []:
            yield ("setting", setting), stage.get("evidence")


def _performance_facts(eligibility: dict[str, Any]) -> Facts:
    for item in eligibility.get("performance_status") or []:
        yield (item["scale"], item.get("min"), item.get("max")), item.get("evidence")


def _therapy_facts(eligibility: dict[str, Any]) -> Facts:
    for item in eligibility.get("prior_therapies") or []:
        yield (item["requirement"], item["therapy"].lower()), item.get("evidence")


def _lab_facts(eligibility: dict[str, Any]) -> Facts:
    for item in eligibility.get("labs") or []:
        number, unit = lab_threshold(item["analyte"], item.get("value"), item.get("unit"), item.get("uln_multiple"))
        conditional = "conditional" if item.get("condition") else None
        yield (item["analyte"], item.get("comparator"), number, unit, conditional), item.get("evidence")


def _brain_facts(eligibility: dict[str, Any]) -> Facts:
    if eligibility.get("brain_metastases"):
        yield (eligibility["brain_metastases"]["status"],), eligibility["brain_metastases"].get("evidence")


def _measurable_facts(eligibility: dict[str, Any]) -> Facts:
    if eligibility.get("measurable_disease"):
        required = eligibility["measurable_disease"]["required"]
        yield ("required" if required else "not required",), eligibility["measurable_disease"].get("evidence")


def _cancer_facts(eligibility: dict[str, Any]) -> Facts:
    for item in eligibility.get("cancer_types") or []:
        yield (item["requirement"], item["name"].lower()), item.get("evidence")


@dataclass(frozen=True)
class View:
    """How one field is scored: its facts, and whether they count in the headline micro average."""

    field: str  # the contract field it reads
    facts: Callable[[dict[str, Any]], Facts]
    headline: bool = True


# The scoring rule of each field (SCHEMA.md, "How extractions are scored"); extra views beside them.
VIEWS: dict[str, View] = {
    **{name: View(name, _scalar(name)) for name in ("sex", *_AGE_FIELDS)},
    "biomarkers": View("biomarkers", _biomarker_facts),
    "stage": View("stage", _stage_facts),
    "performance_status": View("performance_status", _performance_facts),
    "prior_therapies": View("prior_therapies", _therapy_facts),
    "labs": View("labs", _lab_facts),
    "brain_metastases": View("brain_metastases", _brain_facts),
    "measurable_disease": View("measurable_disease", _measurable_facts),
    # Reported beside the headline, never in it: variants are a stricter view of biomarkers, a drug
    # matching its class a relaxed one of prior therapies, and cancer-type names vary too much.
    "biomarkers_strict": View("biomarkers", lambda e: _biomarker_facts(e, strict=True), headline=False),
    "prior_therapies_relaxed": View("prior_therapies", _therapy_facts, headline=False),
    "cancer_types": View("cancer_types", _cancer_facts, headline=False),
}
# Fields the contract has but no view scores, and why (a test holds every other field to a view).
NOT_SCORED = {"healthy_volunteers": "a registry flag, never read from the text"}
HEADLINE_FIELDS = tuple(name for name, view in VIEWS.items() if view.headline)
EXTRA_FIELDS = tuple(name for name, view in VIEWS.items() if not view.headline)
FIELDS = HEADLINE_FIELDS + EXTRA_FIELDS


def facts(field: str, eligibility: dict[str, Any]) -> list[dict[str, Any]]:
    """The field's facts, each once (two tests saying the same thing score as one fact)."""
    found: dict[tuple, dict[str, Any]] = {}
    for key, evidence in VIEWS[field].facts(eligibility):
        evidence = evidence or {}
        found.setdefault(key, {
            "field": field, "key": key, "label": describe(field, key), "quote": evidence.get("quote"),
            "start": evidence.get("start"), "end": evidence.get("end"),
        })  # fmt: skip
    return list(found.values())


def describe(field: str, key: tuple) -> str:
    if field == "performance_status":
        scale, low, high = key
        return f"{scale} {'' if low is None else low}-{'' if high is None else high}"
    parts = [f"{part:g}" if isinstance(part, float) else str(part) for part in key if part is not None]
    if field in ("biomarkers", "biomarkers_strict"):
        parts.insert(1, "must be")
    return " ".join(parts)


# -- matching --------------------------------------------------------------------------------------


def same(field: str, a: tuple, b: tuple) -> bool:
    """Keys equal, numbers within tolerance: ages to 0.01 years, other numbers to 0.1%. In the relaxed
    view of prior therapies a drug and its class are one fact (trastuzumab is an anti-HER2 therapy)."""
    if field == "prior_therapies_relaxed":
        (requirement, therapy), (other_requirement, other) = a, b
        related = therapy == other or therapy in drug_classes(other) or other in drug_classes(therapy)
        return requirement == other_requirement and related
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        if numbers:
            close = math.isclose(x, y, abs_tol=0.01) if field in _AGE_FIELDS else math.isclose(x, y, rel_tol=1e-3)
            if not close:
                return False
        elif x != y:
            return False
    return True


def match(field: str, gold: list[dict], extracted: list[dict]) -> tuple[list[tuple[dict, dict]], list[dict], list[dict]]:
    """(found as (extracted, gold) pairs, missed gold facts, spurious extracted facts)."""
    unmatched = list(gold)
    found, spurious = [], []
    for fact in extracted:
        partner = next((g for g in unmatched if same(field, fact["key"], g["key"])), None)
        if partner is None:
            spurious.append(fact)
        else:
            unmatched.remove(partner)
            found.append((fact, partner))
    return found, unmatched, spurious


def _flipped(field: str, key: tuple) -> tuple:
    at = _POLARITY_AT[field]
    return key[:at] + (_OPPOSITE[key[at]],) + key[at + 1 :]


def polarity_errors(field: str, missed: list[dict], spurious: list[dict]) -> list[dict[str, Any]]:
    """Spurious facts that would match a missed gold fact but for their requirement or must_be."""
    if field not in _POLARITY_AT:
        return []
    errors, open_gold = [], list(missed)
    for fact in spurious:
        gold = next((g for g in open_gold if same(field, _flipped(field, fact["key"]), g["key"])), None)
        if gold is not None:
            open_gold.remove(gold)
            errors.append({"field": field, "extracted": fact["label"], "gold": gold["label"],
                           "quote": fact["quote"], "gold_quote": gold["quote"]})  # fmt: skip
    return errors


# -- one trial -------------------------------------------------------------------------------------


def ungrounded(record: dict[str, Any]) -> int:
    """Items dropped for want of evidence, plus evidence that does not say what it quotes."""
    text = record["eligibility_text"]
    wrong = sum(
        1 for e in evidences(record["eligibility"]) if text[e.get("start", 0) : e.get("end", 0)] != e.get("quote")
    )
    return record["extraction"].get("ungrounded_items", 0) + wrong


def score_trial(nct_id: str, gold: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
    """Per-trial details: counts per field, found / missed / spurious facts with quotes, and checks.

    A trial without a record (the extraction failed) is scored as an empty extraction.
    """
    eligibility = record["eligibility"] if record else {}
    trial: dict[str, Any] = {
        "nct_id": nct_id, "extracted": record is not None, "fields": {}, "found": [], "missed": [], "spurious": [],
        "polarity_errors": [], "ungrounded": 0, "contradicted": 0, "unaccounted": [],
        "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": None},
    }  # fmt: skip
    for field in FIELDS:
        found, missed, spurious = match(field, facts(field, gold), facts(field, eligibility))
        trial["fields"][field] = {"tp": len(found), "fp": len(spurious), "fn": len(missed)}
        trial["found"] += [fact | {"gold_quote": partner["quote"]} for fact, partner in found]
        trial["missed"] += missed
        trial["spurious"] += spurious
        trial["polarity_errors"] += polarity_errors(field, missed, spurious)
    if record:
        criteria = [Criterion.model_validate(c) for c in record["criteria"]]
        trial["ungrounded"] = ungrounded(record)
        trial["contradicted"] = flagged(record["extraction"].get("warnings") or [])  # extract.consistency
        trial["unaccounted"] = [{"criterion_id": c.id, "text": c.text} for c in unaccounted(eligibility, criteria)]
        extraction = record["extraction"]
        trial["usage"] = {key: extraction.get(key) for key in ("input_tokens", "output_tokens", "cost_usd")}
    return trial


# -- many trials -----------------------------------------------------------------------------------


def prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Precision, recall, F1; None where undefined (nothing extracted, nothing in gold)."""
    return {
        "tp": tp, "fp": fp, "fn": fn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "f1": round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else None,
    }  # fmt: skip


def _counts(trial: dict[str, Any]) -> list[int]:
    """A trial's tp, fp, fn for every field, flat, in FIELDS order."""
    return [trial["fields"][field][k] for field in FIELDS for k in ("tp", "fp", "fn")]


def _metrics(sums: list[int]) -> dict[str, dict[str, Any]]:
    """Per-field metrics and the micro average over the headline fields, from summed counts."""
    by_field = {field: sums[3 * i : 3 * i + 3] for i, field in enumerate(FIELDS)}
    result = {field: prf(*counts) for field, counts in by_field.items()}
    result["micro"] = prf(*(sum(by_field[field][i] for field in HEADLINE_FIELDS) for i in range(3)))
    return result


def _totals(trials: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return _metrics([sum(column) for column in zip(*map(_counts, trials))] if trials else [0] * 3 * len(FIELDS))


def _interval(values: list[float | None]) -> list[float] | None:
    """The central 95% of the defined values (2.5th and 97.5th percentiles)."""
    defined = [v for v in values if v is not None]
    if len(defined) < 2:
        return None
    cuts = statistics.quantiles(defined, n=40, method="inclusive")
    return [round(cuts[0], 4), round(cuts[-1], 4)]


def bootstrap(trials: list[dict[str, Any]], resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """95% intervals from resampling trials with replacement: micro P/R/F1 and each field's F1."""
    if not trials:
        return {}
    rng = random.Random(seed)
    counts = [_counts(trial) for trial in trials]  # read once, not once per resample
    samples = [_metrics([sum(column) for column in zip(*(rng.choice(counts) for _ in counts))]) for _ in range(resamples)]
    intervals = {field: {"f1": _interval([s[field]["f1"] for s in samples])} for field in FIELDS}
    intervals["micro"] = {m: _interval([s["micro"][m] for s in samples]) for m in ("precision", "recall", "f1")}
    return intervals


def summarise(trials: list[dict[str, Any]], resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics over scored trials (`score_trial` results), with bootstrap intervals."""
    totals = _totals(trials)
    for name, interval in bootstrap(trials, resamples, seed).items():
        totals[name]["ci"] = interval
    input_tokens = sum(t["usage"]["input_tokens"] or 0 for t in trials)
    costs = [t["usage"]["cost_usd"] for t in trials if t["usage"]["cost_usd"] is not None]
    usage = None
    if input_tokens or costs:  # LLM runs only
        n = max(len(trials), 1)
        output_tokens = sum(t["usage"]["output_tokens"] or 0 for t in trials)
        usage = {
            "input_tokens": input_tokens, "output_tokens": output_tokens, "cost_usd": round(sum(costs), 6),
            "per_trial": {"input_tokens": round(input_tokens / n, 1), "output_tokens": round(output_tokens / n, 1),
                          "cost_usd": round(sum(costs) / n, 6)},
        }  # fmt: skip
    return {
        "n_trials": len(trials),
        "micro": totals.pop("micro"),
        "fields": totals,
        "polarity_errors": sum(len(t["polarity_errors"]) for t in trials),
        "ungrounded_items": sum(t["ungrounded"] for t in trials),
        "contradicted_items": sum(t["contradicted"] for t in trials),
        "unaccounted_criteria": sum(len(t["unaccounted"]) for t in trials),
        "not_extracted": [t["nct_id"] for t in trials if not t["extracted"]],
        "usage": usage,
    }


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-field P/R/F1 of two runs' metrics, as (A, B, B - A), micro average first."""
    rows = []
    for name in ("micro", *FIELDS):
        left, right = _row(a, name), _row(b, name)
        row = {"field": name}
        for metric in ("precision", "recall", "f1"):
            x, y = left[metric], right[metric]
            row[metric] = (x, y, None if x is None or y is None else round(y - x, 4))
        rows.append(row)
    return rows


def _row(metrics: dict[str, Any], name: str) -> dict[str, Any]:
    return metrics["micro"] if name == "micro" else metrics["fields"][name]
