"""What the command line shows a person: tables for `runs`, `criteria` and `show`, and progress.

Programs ask for `--json` instead; this module is only the readable side.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from typing import Any, ClassVar

import click
from rich.console import Console
from rich.table import Table

from schemas import Criterion, EligibilityRecord, TrialFacts, iter_evidence


def print_table(table: Table) -> None:
    Console(file=sys.stdout, soft_wrap=False, width=None if sys.stdout.isatty() else 160).print(table)


def iso(value: Any) -> Any:
    """ISO 8601 for times (2026-01-05T10:00:00.123456+00:00), the value itself otherwise."""
    return value.isoformat() if isinstance(value, datetime) else value


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table("run", "status", "backend", "model", "split", "started", "took", "extracted", "up to date",
                  "failed", "cost $", box=None, header_style="bold")  # fmt: skip
    for run in runs:
        summary = run["summary"] or {}
        took = ""
        if run["finished_at"] and run["started_at"]:
            took = f"{(run['finished_at'] - run['started_at']).total_seconds():.1f} s"
        table.add_row(
            run["run_id"], run["status"] or "", run["backend"], run["model"] or "", run["split"] or "",
            f"{run['started_at']:%Y-%m-%d %H:%M:%S}", took, str(summary.get("extracted", "")),
            str(summary.get("skipped", "")), str(summary.get("failed", "")),
            f"{summary['cost_usd']:.4f}" if summary.get("cost_usd") else "",
        )  # fmt: skip
    return table


def criteria_table(criteria: list[Criterion]) -> Table:
    table = Table("id", "kind", "offsets", "criterion", box=None, header_style="bold")
    for criterion in criteria:
        table.add_row(criterion.id, criterion.kind, f"{criterion.start}-{criterion.end}", criterion.text)
    return table


def registry_state(facts: TrialFacts, removed: dict[str, Any] | None) -> str | None:
    """What the registry says of the study (`facts`: a record's or a stored trial's `trial`) beyond
    its record, when it is not simply current: removed (`removed`: how, from Workspace.removed) or withdrawn."""
    if removed is not None:
        return f"removed from the registry: {removed['reason']} (seen {removed['removed_at'][:10]}); this record is not current"
    if facts.overall_status == "WITHDRAWN":
        return "withdrawn: the registry's overall status is WITHDRAWN (the study stopped before enrolling)"
    return None


def record_table(record: EligibilityRecord, state: str | None = None) -> Table:
    """One line per structured fact: its field, its value, and the quote it stands on (under the
    registry's `state` of the study, if any)."""
    extraction = record.extraction
    title = (
        f"{record.nct_id}  {record.trial.title or ''}\n"
        f"{extraction.backend}{' ' + extraction.model if extraction.model else ''}, "
        f"{extraction.extracted_at:%Y-%m-%d %H:%M}; {len(record.criteria)} criteria"
        + (f"\n{state}" if state else "")
    )
    table = Table("field", "value", "criterion", "quote", title=title, title_justify="left", box=None, header_style="bold")
    eligibility = record.eligibility
    for name in ("sex", "min_age_years", "max_age_years", "healthy_volunteers"):
        value = getattr(eligibility, name)
        if value is not None:
            origin = eligibility.origins.get(name)
            evidence = origin.evidence if origin else None
            table.add_row(name, str(value), evidence.criterion_id if evidence else "registry", evidence.quote if evidence else "")
    for name, value in eligibility:
        items = value if isinstance(value, list) else [value]
        for item in items:
            evidence = getattr(item, "evidence", None)
            if evidence is None:
                continue
            facts = item.model_dump(exclude={"evidence"}, exclude_none=True, exclude_defaults=True)
            table.add_row(name, _facts(facts), evidence.criterion_id or "", evidence.quote)
    captured = {e.criterion_id for e in iter_evidence(eligibility)}
    table.add_row("other", f"{len(eligibility.other)} criteria", "", "")
    table.caption = f"{len(captured)} of {len(record.criteria)} criteria captured; warnings: {len(extraction.warnings)}"
    return table


def _facts(facts: dict[str, Any]) -> str:
    def text(value: Any) -> str:
        if isinstance(value, dict):
            return "(" + ", ".join(text(v) for v in value.values() if v is not None) + ")"
        if isinstance(value, list):
            return " or ".join(text(v) for v in value)
        return str(value)

    return ", ".join(text(value) for value in facts.values())


class Progress:
    """Progress of long work on stderr: a bar on a terminal; elsewhere (a log file, CI) a line every
    ELIGEX_PROGRESS_SECONDS seconds (default 5). The latest one says where an interruption stopped."""

    latest: ClassVar[Progress | None] = None

    def __init__(self, total: int | None, label: str):
        self.total, self.label, self.done = total, label, 0
        self.run_id: str | None = None  # the run the work belongs to, when there is one
        self.interval = float(os.environ.get("ELIGEX_PROGRESS_SECONDS") or 5)
        self._bar = None
        if sys.stderr.isatty():
            self._bar = click.progressbar(length=total or 0, label=label, file=sys.stderr, show_pos=True)
        self._started = self._shown = time.monotonic()
        Progress.latest = self

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc_info)

    def update(self, steps: int = 1) -> None:
        self.advance_to(self.done + steps)

    def advance_to(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        if self._bar is not None:
            self._bar.length = self.total or done
            self._bar.update(done - self.done)
        self.done = done
        now = time.monotonic()
        if self._bar is None and (now - self._shown >= self.interval or done == self.total):
            self._shown = now
            of = f" of {self.total}" if self.total else ""
            click.echo(f"{self.label}: {done}{of} after {now - self._started:.0f} s{self.pace(now)}", err=True)

    def pace(self, now: float) -> str:
        """", 420/s, about 3 min left": the rate so far and, with a total, when the work will end at it."""
        seconds = now - self._started
        if not self.done or seconds <= 0:
            return ""
        rate = self.done / seconds
        left = (self.total - self.done) / rate if self.total and self.total > self.done else 0
        eta = f", about {left / 60:.0f} min left" if left >= 90 else f", about {left:.0f} s left" if left else ""
        return f", {rate:.0f}/s{eta}"

    def where(self) -> str:
        return f"{self.done} of {self.total}" if self.total else str(self.done)
