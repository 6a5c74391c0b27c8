"""The reviewer's workbench over one workspace and one gold folder: what the pages show, and every
change a reviewer makes (a correction, a gold file, an undo), each one an audit row in DuckDB.

The web layer (app.py) only parses requests and renders; everything here is plain Python, used one
request at a time: each call holds the workspace for writing only while it runs, so `eligex extract`
can run between two clicks.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from extract.display import registry_state
from extract.evaluate import harness
from extract.evaluate.scoring import HEADLINE_FIELDS, VIEWS, facts, match, score_trial
from extract.grounding import unaccounted
from extract.review import draft as drafts
from extract.review.draft import CorrectionError, Draft
from extract.review.forms import EDITABLE_FIELDS, FORMS, FormState
from extract.sources import STUDY_URL
from extract.store import Workspace, atomic_write
from extract.text import segment
from schemas import Criterion, Trial, is_nct_id

WAIT_SECONDS = 10  # for the workspace lock, while another eligex process writes


class NotFound(LookupError):
    """No such trial, field or item: a 404, never a path built from it."""


class Conflict(RuntimeError):
    """The trial changed since the page was drawn (another tab, another reviewer): a 409."""


@dataclass(frozen=True)
class Filters:
    """The trial list's filters and order, as the query string gives them."""

    run: str | None = None
    backend: str | None = None
    field: str | None = None
    gold: str = ""  # "yes", "no" or "" for either
    reviewed: str = ""
    misses: bool = False
    spurious: bool = False
    other: bool = False
    warnings: bool = False
    q: str = ""
    sort: str = "nct_id"
    desc: bool = False


SORTS = ("nct_id", "title", "backend", "gold", "reviewed", "item_count", "missed", "spurious", "other", "warnings", "corrections")


def registry_url(trial: Trial) -> str:
    """The study's page at ClinicalTrials.gov, the registry of every NCT id (built from the checked id,
    never from a URL in the record)."""
    return STUDY_URL.format(trial.nct_id)


class Workbench:
    def __init__(self, workspace: Workspace, evals_dir: Path = harness.EVALS_DIR, *, run_id: str | None = None,
                 reviewer: str = "unknown", wait_seconds: float = WAIT_SECONDS):  # fmt: skip
        self.workspace = workspace
        self.gold_dir = evals_dir / "gold"
        self.splits_file = evals_dir / "splits.json"
        self.run_id = run_id
        self.reviewer = reviewer
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()  # one request at a time uses the workspace's connection

    @contextmanager
    def _holding(self) -> Iterator[Workspace]:
        with self._lock, self.workspace.writing(wait_seconds=self.wait_seconds) as workspace:
            yield workspace

    # -- reading ---------------------------------------------------------------------------------

    def _records(self, workspace: Workspace, run: str | None, backend: str | None,
                 nct_id: str | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
        """The records under review: a run's, a backend's latest, or (default) each trial's latest."""
        run = run or (None if backend else self.run_id)
        if backend:
            return {n: by[backend] for n, by in workspace.backend_documents(nct_id).items() if backend in by}
        if run and workspace.run(run) is None:
            raise NotFound(f"no run {run!r} in this workspace")
        return workspace.record_documents(run, nct_id)

    def _gold(self) -> dict[str, dict[str, Any]]:
        return harness.load_gold(self.gold_dir)

    def _trial(self, workspace: Workspace, nct_id: str) -> Trial:
        if not is_nct_id(nct_id):
            raise NotFound(f"{nct_id!r} is not an NCT id")
        found = list(workspace.trials([nct_id]))
        if not found:
            raise NotFound(f"{nct_id} is not in this workspace")
        return found[0]

    @staticmethod
    def _base(trial: Trial, record: dict[str, Any] | None) -> tuple[Draft, str, list[Criterion]]:
        """The draft a review starts from, and the text and criteria its evidence points into."""
        if record is None:  # never extracted: the registry's facts, and nothing from the text yet
            registry = {name: getattr(trial, name) for name in ("sex", "min_age_years", "max_age_years", "healthy_volunteers")}
            return drafts.base_draft(registry), trial.eligibility_text, segment(trial.eligibility_text)
        criteria = [Criterion.model_validate(c) for c in record["criteria"]]
        return drafts.base_draft(record["eligibility"]), record["eligibility_text"], criteria

    @staticmethod
    def _version(history: list[dict[str, Any]]) -> str:
        """Changes whenever the trial's draft does: a new audit row, or one undone."""
        return f"{len(history)}-{sum(row['undone_at'] is not None for row in history)}"

    def trial_page(self, nct_id: str, run: str | None = None, backend: str | None = None) -> dict[str, Any]:
        """Everything the trial page shows."""
        with self._holding() as workspace:
            trial = self._trial(workspace, nct_id)
            record = self._records(workspace, run, backend, nct_id).get(nct_id)
            history = workspace.audit(nct_id, undone=True)
            removed = workspace.removed(nct_id)
        base, text, criteria = self._base(trial, record)
        changes = [row for row in history if row["undone_at"] is None]
        draft = drafts.current(base, changes)
        gold_path = self.gold_dir / f"{nct_id}.json"
        gold = harness.read_gold(gold_path) if gold_path.exists() else None
        scored = drafts.against_gold(nct_id, draft, gold["eligibility"], text, criteria) if gold else None
        located = drafts.located(drafts.gold_eligibility(draft), text, criteria)
        marks = []
        for name in EDITABLE_FIELDS:
            for index, (entry, item) in enumerate(zip(draft[name], drafts.items_of(located, name))):
                entry["summary"] = drafts.summary(entry["value"])
                evidence = item.get("evidence") if isinstance(item, dict) else None
                if evidence and "start" in evidence:
                    entry["criterion_id"] = evidence.get("criterion_id")
                    marks.append((evidence["start"], evidence["end"], "evidence", f"{name} {index}: {entry['summary']}"))
        missed: dict[str, list[dict[str, Any]]] = {}
        polarity: dict[str, list[dict[str, Any]]] = {}
        for fact in (scored or {}).get("missed", []):
            if VIEWS[fact["field"]].headline or fact["field"] == "cancer_types":
                missed.setdefault(VIEWS[fact["field"]].field, []).append(fact)
        for error in (scored or {}).get("polarity_errors", []):
            polarity.setdefault(error["field"], []).append(error)
        for fact in (fact for facts_ in missed.values() for fact in facts_):
            span = drafts.locate_quote(text, fact["quote"], criteria)
            if span:
                marks.append((*span, "missed", f"missed {fact['field']}: {fact['label']}"))
        known = self._gold_labels()
        extraction = (record or {}).get("extraction") or {}
        return {
            "trial": trial, "registry_url": registry_url(trial), "record": record, "extraction": extraction,
            "registry_state": registry_state(trial.trial, removed),  # withdrawn or removed, said on the page
            "criteria": [{"criterion": c, "segments": drafts.criterion_segments(c, marks)} for c in criteria],
            "draft": draft, "gold": gold, "scored": scored, "missed": missed, "polarity": polarity,
            "history": list(reversed(history)), "last_change": changes[-1] if changes else None,
            "version": self._version(history), "reviewed": reviewed(changes),
            # what the draft leaves in `other`: criteria none of its evidence quotes
            "other": [{"criterion_id": c.id, "text": c.text} for c in unaccounted(located, criteria)],
            "source": (gold or {}).get("source", ""), "category": (gold or {}).get("category", ""),
            "sources": known["sources"], "categories": known["categories"],
        }  # fmt: skip

    def _gold_labels(self) -> dict[str, list[str]]:
        """The sources and categories the gold files use, offered when a trial is marked reviewed."""
        documents = [json.loads(path.read_bytes()) for path in sorted(self.gold_dir.glob("NCT*.json"))]
        return {
            "sources": sorted({d["source"] for d in documents if isinstance(d.get("source"), str)}),
            "categories": sorted({d["category"] for d in documents if isinstance(d.get("category"), str)}),
        }

    def form_state(self, page: dict[str, Any], field: str, index: int | None) -> FormState:
        """The values an edit form opens with (an item's), or an add form's (none)."""
        if field not in FORMS:
            raise NotFound(f"no field {field!r}")
        if index is None:
            return FormState()
        entries = page["draft"][field]
        if not 0 <= index < len(entries):
            raise NotFound(f"{field} has no item {index}")
        value = entries[index]["value"]
        return FormState({"value": value} if FORMS[field].scalar else value)

    # -- the trial list and the queue ------------------------------------------------------------

    def trial_rows(self, filters: Filters) -> dict[str, Any]:
        """The rows of the trial list, filtered and sorted, and the choices the filters offer."""
        with self._holding() as workspace:
            records = self._records(workspace, filters.run, filters.backend)
            trials = list(workspace.trials())
            audit = workspace.audit()
            runs = workspace.runs()
            removed = {trial.nct_id for trial in trials if workspace.removed(trial.nct_id) is not None}
        gold = self._gold()
        changes: dict[str, list[dict[str, Any]]] = {}
        for row in audit:
            changes.setdefault(row["nct_id"], []).append(row)
        rows = []
        query = filters.q.strip().lower()
        for trial in trials:
            if query and query not in trial.nct_id.lower() and query not in (trial.trial.title or "").lower() \
                    and query not in trial.eligibility_text.lower():  # fmt: skip
                continue
            record = records.get(trial.nct_id)
            row = _row(trial, record, gold.get(trial.nct_id), changes.get(trial.nct_id, []), filters.field)
            row["state"] = "removed from the registry" if trial.nct_id in removed else \
                "withdrawn" if trial.trial.overall_status == "WITHDRAWN" else ""  # fmt: skip
            if _keep(row, filters):
                rows.append(row)
        key = filters.sort if filters.sort in SORTS else "nct_id"
        rows.sort(key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0), reverse=filters.desc)
        return {
            "rows": rows, "total": len(trials), "runs": runs,
            "backends": sorted({run["backend"] for run in runs}), "fields": [*EDITABLE_FIELDS],
        }  # fmt: skip

    def queue(self) -> list[dict[str, Any]]:
        with self._holding() as workspace:
            return self._queue(workspace)

    def _queue(self, workspace: Workspace) -> list[dict[str, Any]]:
        """Trials not reviewed yet, most useful first: no gold yet, then where two backends disagree
        most, then the most criteria left in `other`, then the most warnings."""
        by_backend = workspace.backend_documents()
        latest = workspace.record_documents(self.run_id)
        done = _reviewed(workspace.audit())
        gold = {path.stem for path in self.gold_dir.glob("NCT*.json")}
        entries = []
        for nct_id in workspace.trial_ids():
            if nct_id in done:
                continue
            record = latest.get(nct_id) or {}
            entry = {
                "nct_id": nct_id, "gold": nct_id in gold,
                "disagreements": disagreements(list(by_backend.get(nct_id, {}).values())),
                "other": len((record.get("eligibility") or {}).get("other") or []),
                "warnings": len((record.get("extraction") or {}).get("warnings") or []),
            }  # fmt: skip
            entries.append(entry)
        entries.sort(key=lambda e: (e["gold"], -e["disagreements"], -e["other"], -e["warnings"], e["nct_id"]))
        return entries

    # -- changes ---------------------------------------------------------------------------------

    def _history(self, workspace: Workspace, nct_id: str, version: str) -> list[dict[str, Any]]:
        """The trial's audit rows, undone ones too, once its version is the page's (else Conflict)."""
        self._trial(workspace, nct_id)
        history = workspace.audit(nct_id, undone=True)
        if self._version(history) != version:
            raise Conflict(f"{nct_id} changed since this page was shown: reload it")
        return history

    def _draft(self, workspace: Workspace, nct_id: str, version: str, run: str | None) -> tuple[Draft, str, list[Criterion]]:
        """The trial's current draft, to change (checked against the page's version), and its text."""
        history = self._history(workspace, nct_id, version)
        record = self._records(workspace, run, None, nct_id).get(nct_id)
        base, text, criteria = self._base(self._trial(workspace, nct_id), record)
        return drafts.current(base, [r for r in history if r["undone_at"] is None]), text, criteria

    def correct(self, nct_id: str, field: str, action: str, index: int | None, value: Any, version: str,
                run: str | None = None) -> None:  # fmt: skip
        """Accept, edit, delete or add one item: validated, grounded, saved as an audit row."""
        if field not in FORMS:
            raise NotFound(f"no field {field!r}")
        with self._holding() as workspace:
            draft, text, criteria = self._draft(workspace, nct_id, version, run)
            if action in ("edit", "add"):
                checked, problems = FORMS[field].validate(value)
                if problems:
                    raise CorrectionError(problems)
                value = drafts.ground_value(field, checked, text, criteria)
            after = drafts.correct(draft[field], field, action, index, value)
            workspace.add_audit(nct_id, field, action, draft[field], after, run_id=run or self.run_id,
                                reviewer=self.reviewer)  # fmt: skip

    def mark_reviewed(self, nct_id: str, source: str, category: str, version: str, run: str | None = None) -> Path:
        """Write the trial's gold file from its draft (validated, atomically) and give new gold a split."""
        problems = {name: f"say which {name}" for name, value in (("source", source), ("category", category)) if not value.strip()}
        if problems:
            raise CorrectionError(problems)
        with self._holding() as workspace:
            draft = self._draft(workspace, nct_id, version, run)[0]
            try:
                document = drafts.gold_document(nct_id, source.strip(), category.strip(), draft)
            except ValidationError as error:
                problem = error.errors()[0]
                raise CorrectionError({".".join(map(str, problem["loc"])): problem["msg"]}) from None
            path = self.gold_dir / f"{nct_id}.json"
            before = json.loads(path.read_bytes()) if path.exists() else None
            self._write_gold(nct_id, document)
            workspace.add_audit(nct_id, "gold", "reviewed", before, document, run_id=run or self.run_id,
                                reviewer=self.reviewer)  # fmt: skip
        return path

    def undo(self, nct_id: str, version: str) -> dict[str, Any]:
        """Undo the trial's latest change; a gold file written goes back to what it was."""
        with self._holding() as workspace:
            live = [row for row in self._history(workspace, nct_id, version) if row["undone_at"] is None]
            if not live:
                raise CorrectionError({"undo": "nothing to undo"})
            last = live[-1]
            if last["field"] == "gold":
                path = self.gold_dir / f"{nct_id}.json"
                if not path.exists() or json.loads(path.read_bytes()) != last["after"]:
                    raise CorrectionError({"undo": f"{path.name} changed since it was written here: not undone"})
                self._write_gold(nct_id, last["before"])
            workspace.undo_audit(last["id"])
            return last

    def _write_gold(self, nct_id: str, document: dict[str, Any] | None) -> None:
        """The gold file (or its removal) and the split file, each written atomically. Every other gold
        file is read (and validated) first, so nothing is written when the split cannot be made."""
        gold = self._gold()
        gold.pop(nct_id, None)
        if document is not None:
            gold[nct_id] = document
        existing = json.loads(self.splits_file.read_text()) if self.splits_file.exists() else None
        splits = harness.make_splits(gold, existing)
        path = self.gold_dir / f"{nct_id}.json"
        if document is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode())
        if splits != existing:
            atomic_write(self.splits_file, (json.dumps(splits, indent=2) + "\n").encode())

    def split_of(self, nct_id: str) -> str | None:
        splits = json.loads(self.splits_file.read_text()) if self.splits_file.exists() else {}
        return next((name for name, ids in splits.items() if nct_id in ids), None)


def reviewed(changes: list[dict[str, Any]]) -> bool:
    """Is the trial's gold file its draft: did the latest of its live changes write it?"""
    return bool(changes) and changes[-1]["field"] == "gold"


def _reviewed(audit: list[dict[str, Any]]) -> set[str]:
    """The trials reviewed, from every live audit row."""
    changes: dict[str, list[dict[str, Any]]] = {}
    for row in audit:
        changes.setdefault(row["nct_id"], []).append(row)
    return {nct_id for nct_id, rows in changes.items() if reviewed(rows)}


def disagreements(records: list[dict[str, Any]]) -> int:
    """Headline facts on which the first two backends' records differ (0 with fewer than two)."""
    if len(records) < 2:
        return 0
    a, b = (record["eligibility"] for record in records[:2])
    total = 0
    for view in HEADLINE_FIELDS:
        _, only_b, only_a = match(view, facts(view, b), facts(view, a))
        total += len(only_a) + len(only_b)
    return total


def _row(trial: Trial, record: dict[str, Any] | None, gold: dict[str, Any] | None, changes: list[dict[str, Any]],
         field: str | None) -> dict[str, Any]:  # fmt: skip
    """One line of the trial list; with a field, its counts are that field's."""
    eligibility = (record or {}).get("eligibility") or {}
    names = [field] if field else list(EDITABLE_FIELDS)
    items = sum(len(v) if isinstance(v, list) else v is not None for v in (eligibility.get(n) for n in names))
    missed = spurious = None
    if gold is not None:
        scored = score_trial(trial.nct_id, gold["eligibility"], record)
        views = [v for v in HEADLINE_FIELDS if field is None or VIEWS[v].field == field]
        missed = sum(scored["fields"][v]["fn"] for v in views)
        spurious = sum(scored["fields"][v]["fp"] for v in views)
    live = [row for row in changes if row["undone_at"] is None]
    return {
        "nct_id": trial.nct_id, "title": trial.trial.title or "", "registry_url": registry_url(trial),
        "backend": (record or {}).get("extraction", {}).get("backend"), "gold": gold is not None,
        "reviewed": reviewed(live), "item_count": items, "missed": missed,
        "spurious": spurious, "other": len(eligibility.get("other") or []),
        "warnings": len((record or {}).get("extraction", {}).get("warnings") or []),
        "corrections": sum(row["field"] != "gold" for row in live),
        "has_field": field is None or items > 0 or bool(missed),
    }  # fmt: skip


def _keep(row: dict[str, Any], f: Filters) -> bool:
    checks = [
        row["has_field"],
        f.gold != "yes" or row["gold"], f.gold != "no" or not row["gold"],
        f.reviewed != "yes" or row["reviewed"], f.reviewed != "no" or not row["reviewed"],
        not f.misses or bool(row["missed"]), not f.spurious or bool(row["spurious"]),
        not f.other or row["other"] > 0, not f.warnings or row["warnings"] > 0,
    ]  # fmt: skip
    return all(checks)
