"""`eligex import`: registry records from files and folders into the workspace."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from extract.errors import InputError
from extract.sources import RawRecord, RecordError, parse_document
from extract.store import Workspace

IMPORTABLE = (".json", ".jsonl", ".ndjson", ".xml", ".csv")


@dataclass
class Summary:
    """What an import or a fetch did, record by record."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failures: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def line(self) -> str:
        return f"{self.new} new, {self.changed} changed, {self.unchanged} unchanged, {len(self.failures)} failed"


def files_under(paths: Iterable[Path]) -> list[Path]:
    """The importable files named or found (recursively) under the folders named, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMPORTABLE))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return found


def import_files(workspace: Workspace, files: list[Path], on_file: Callable[[Path], None] = lambda path: None) -> Summary:
    summary = Summary()
    for path in files:
        parsed = list(parse_document(path.read_bytes(), path.name))
        store_all(workspace, parsed, str(path), summary)
        on_file(path)
    return summary


def store(workspace: Workspace, parsed: RawRecord | RecordError, where: str, summary: Summary) -> None:
    """Store one parsed record, or note (in one line naming `where`) why it could not be read."""
    store_all(workspace, [parsed], where, summary)


def store_all(workspace: Workspace, parsed: list[RawRecord | RecordError], where: str, summary: Summary) -> None:
    """Store the records read from one place in one statement; note each one that could not be read."""
    for error in parsed:
        if isinstance(error, RecordError):
            who = f" ({error.nct_id})" if error.nct_id else ""
            summary.failures.append(f"{where}{who}: {error.reason}")
    with workspace.transaction():
        for stored in workspace.store_trials([record for record in parsed if isinstance(record, RawRecord)]):
            summary.count(stored.outcome)
