"""Render evaluation metrics: report.md for a terminal or a pull request, report.html for a browser.

Criteria text and quotes come from registries and are untrusted: the HTML environment escapes
everything it prints (autoescape), and the Markdown one makes table cells unable to break the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from extract.evaluate.scoring import EXTRA_FIELDS, HEADLINE_FIELDS, VIEWS, compare, prf
from extract.grounding import locate
from extract.review import REVIEW_URL
from extract.sources import STUDY_URL
from extract.text import segment

_TEMPLATES = Path(__file__).parent / "templates"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _interval(value: list[float] | None) -> str:
    return "–" if not value else f"{value[0]:.3f}–{value[1]:.3f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def _cell(value: Any) -> str:
    """Markdown table cell: one line, no column breaks."""
    return " ".join(str("" if value is None else value).split()).replace("|", "\\|")


def _environment(autoescape: bool) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES), autoescape=autoescape, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )  # fmt: skip
    environment.filters.update(number=_number, interval=_interval, signed=_signed, cell=_cell)
    environment.globals.update(headline_fields=HEADLINE_FIELDS, extra_fields=EXTRA_FIELDS, study_url=STUDY_URL)
    return environment


_MARKDOWN = _environment(autoescape=False)  # output is Markdown, not HTML: cells are made safe by `cell`
_HTML = _environment(autoescape=True)


def render_markdown(metrics: dict[str, Any]) -> str:
    return _MARKDOWN.get_template("report.md.j2").render(m=metrics)


def render_comparison(a: dict[str, Any], b: dict[str, Any], run_a: str, run_b: str) -> str:
    return _MARKDOWN.get_template("compare.md.j2").render(rows=compare(a, b), run_a=run_a, run_b=run_b)


def segments(text: str, marks: list[tuple[int, int, str, str]], starts: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """Cut `text` at every mark boundary; each piece lists the kinds and labels of the marks covering it,
    and the id of the criterion starting there, if `starts` (offset: criterion id) names one."""
    starts = starts or {}
    cuts = sorted({0, len(text), *(m[0] for m in marks), *(m[1] for m in marks), *starts})
    pieces = []
    for start, end in zip(cuts, cuts[1:]):
        covering = [m for m in marks if m[0] <= start and end <= m[1]]
        pieces.append({
            "text": text[start:end],
            "kinds": sorted({m[2] for m in covering}),
            "labels": [f"{m[2]}: {m[3]}" for m in covering],
            "criterion": starts.get(start),
        })  # fmt: skip
    return pieces


def trial_marks(trial: dict[str, Any], text: str) -> tuple[list[tuple[int, int, str, str]], list[dict]]:
    """Highlights for one trial's text, and the missed gold facts whose quote cannot be located."""
    marks, unplaced = [], []
    for kind in ("found", "spurious"):
        for fact in trial[kind]:
            if fact["start"] is not None:
                marks.append((fact["start"], fact["end"], kind, f"{fact['field']}: {fact['label']}"))
    for fact in trial["missed"]:
        span = locate(text, fact["quote"], []) if fact["quote"] else None
        if span is None:
            unplaced.append(fact)
        else:
            marks.append((*span, "missed", f"{fact['field']}: {fact['label']}"))
    return marks, unplaced


def headline(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial's counts and P/R/F1 over the headline fields (F1 None when no side has a fact)."""
    return prf(*(sum(trial["fields"][field][k] for field in HEADLINE_FIELDS) for k in ("tp", "fp", "fn")))


def headline_f1(trial: dict[str, Any]) -> float | None:
    return headline(trial)["f1"]


def _errors(trial: dict[str, Any]) -> dict[str, set[str]]:
    """The contract fields in which a trial has misses, and those with misses or spurious items."""
    missed = {VIEWS[f["field"]].field for f in trial["missed"] if f["field"] in HEADLINE_FIELDS}
    spurious = {VIEWS[f["field"]].field for f in trial["spurious"] if f["field"] in HEADLINE_FIELDS}
    return {"missed": missed, "wrong": missed | spurious}


def render_html(metrics: dict[str, Any], texts: dict[str, str], review_url: str = REVIEW_URL) -> str:
    """The standalone page: metrics, the polarity errors, an index of trials (per-trial F1, filters
    by misses and by field, links to the registry and to `eligex review`), then each trial's text
    with its criterion ids and found, missed and spurious items marked."""
    trials = []
    for trial in metrics["trials"]:
        text = texts.get(trial["nct_id"], "")
        marks, unplaced = trial_marks(trial, text)
        starts = {criterion.start: criterion.id for criterion in segment(text)}
        trials.append({"trial": trial, "segments": segments(text, marks, starts), "unplaced": unplaced,
                       "headline": headline(trial), "errors": _errors(trial)})  # fmt: skip
    fields = sorted({VIEWS[name].field for name in HEADLINE_FIELDS}, key=list(VIEWS).index)
    return _HTML.get_template("report.html.j2").render(m=metrics, trials=trials, fields=fields, review_url=review_url)


def trial_changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per trial scored in both runs, what B fixed and what it broke relative to A (headline facts),
    with the quotes; trials with a change only, the largest drop in F1 first."""
    later = {trial["nct_id"]: trial for trial in b["trials"]}
    rows = []
    for before in a["trials"]:
        after = later.get(before["nct_id"])
        if after is None:
            continue
        facts = {(run, kind): {(f["field"], f["label"]): f for f in trial[kind] if f["field"] in HEADLINE_FIELDS}
                 for run, trial in (("a", before), ("b", after)) for kind in ("found", "missed", "spurious")}  # fmt: skip
        fixed = [dict(f, change="now found") for k, f in facts["b", "found"].items() if k in facts["a", "missed"]]
        fixed += [dict(f, change="no longer extracted") for k, f in facts["a", "spurious"].items() if k not in facts["b", "spurious"]]
        broke = [dict(f, change="now missed") for k, f in facts["b", "missed"].items() if k in facts["a", "found"]]
        broke += [dict(f, change="now spurious") for k, f in facts["b", "spurious"].items() if k not in facts["a", "spurious"]]
        if fixed or broke:
            f1 = (headline_f1(before), headline_f1(after))
            delta = None if None in f1 else round(f1[1] - f1[0], 4)
            rows.append({"nct_id": before["nct_id"], "f1": f1, "delta": delta, "fixed": fixed, "broke": broke})
    return sorted(rows, key=lambda row: (row["delta"] is None, row["delta"] or 0, row["nct_id"]))


def render_comparison_html(a: dict[str, Any], b: dict[str, Any], run_a: str, run_b: str,
                           review_url: str = REVIEW_URL) -> str:  # fmt: skip
    """`eval --compare` as a page: per-field deltas, then per trial what got fixed and what broke."""
    return _HTML.get_template("compare.html.j2").render(
        rows=compare(a, b), trials=trial_changes(a, b), a=a, b=b, run_a=run_a, run_b=run_b, review_url=review_url
    )
