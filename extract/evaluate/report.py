"""Render evaluation metrics: report.md for a terminal or a pull request, report.html for a browser.

Criteria text and quotes come from registries and are untrusted: the HTML environment escapes
everything it prints (autoescape), and the Markdown one makes table cells unable to break the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from extract.evaluate.scoring import EXTRA_FIELDS, HEADLINE_FIELDS, compare
from extract.grounding import locate

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
    environment.globals.update(headline_fields=HEADLINE_FIELDS, extra_fields=EXTRA_FIELDS)
    return environment


_MARKDOWN = _environment(autoescape=False)  # output is Markdown, not HTML: cells are made safe by `cell`
_HTML = _environment(autoescape=True)


def render_markdown(metrics: dict[str, Any]) -> str:
    return _MARKDOWN.get_template("report.md.j2").render(m=metrics)


def render_comparison(a: dict[str, Any], b: dict[str, Any], run_a: str, run_b: str) -> str:
    return _MARKDOWN.get_template("compare.md.j2").render(rows=compare(a, b), run_a=run_a, run_b=run_b)


def segments(text: str, marks: list[tuple[int, int, str, str]]) -> list[dict[str, Any]]:
    """Cut `text` at every mark boundary; each piece lists the kinds and labels of the marks covering it."""
    cuts = sorted({0, len(text), *(m[0] for m in marks), *(m[1] for m in marks)})
    pieces = []
    for start, end in zip(cuts, cuts[1:]):
        covering = [m for m in marks if m[0] <= start and end <= m[1]]
        pieces.append({
            "text": text[start:end],
            "kinds": sorted({m[2] for m in covering}),
            "labels": [f"{m[2]}: {m[3]}" for m in covering],
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


def render_html(metrics: dict[str, Any], texts: dict[str, str]) -> str:
    """The standalone page: metrics, then each trial's text with found, missed and spurious items marked."""
    trials = []
    for trial in metrics["trials"]:
        text = texts.get(trial["nct_id"], "")
        marks, unplaced = trial_marks(trial, text)
        trials.append({"trial": trial, "segments": segments(text, marks), "unplaced": unplaced})
    return _HTML.get_template("report.html.j2").render(m=metrics, trials=trials)
