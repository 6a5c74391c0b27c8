"""`eligex import`: registry records from files and folders into the workspace.

Files are read as streams and stored in groups of `GROUP_SIZE` records, one transaction each, so
memory stays flat however large a file is; a crash loses at most the group under way (the store
keeps raw/ and the database consistent, see extract/store.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterable

from extract.errors import InputError
from extract.sources import RawRecord, RecordError, parse_stream
from extract.store import Workspace

IMPORTABLE = (".json", ".jsonl", ".ndjson", ".xml", ".csv")
SINGLE_RECORD = (".json", ".xml")  # formats whose file is one study, so that its name may state the id
GROUP_SIZE = 500  # records per transaction
_NAMED_ID = re.compile(r"NCT[0-9]{8}", re.IGNORECASE)


@dataclass
class Summary:
    """What an import or a fetch did, record by record."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    older: int = 0  # records the registry updated before the stored one: the stored one stays
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def line(self) -> str:
        older = f", {self.older} older than stored (kept the stored one)" if self.older else ""
        return f"{self.new} new, {self.changed} changed, {self.unchanged} unchanged, {len(self.failures)} failed{older}"


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


class Importer:
    """Records from many places into one workspace, in groups; it remembers where each id was read
    so that a duplicate is named once, at the end, with the record that was kept."""

    def __init__(self, workspace: Workspace, summary: Summary | None = None):
        self.workspace = workspace
        self.summary = summary or Summary()
        self._group: list[tuple[RawRecord, str]] = []
        self._read: dict[str, list[tuple[str, date | None]]] = {}  # id -> (where, last update) of each record
        self._kept: dict[str, str] = {}  # id -> where the record stored now was read

    def add(self, parsed: RawRecord | RecordError, where: str) -> None:
        if isinstance(parsed, RecordError):
            who = f" ({parsed.nct_id})" if parsed.nct_id else ""
            self.summary.failures.append(f"{where}{who}: {parsed.reason}")
            return
        self._read.setdefault(parsed.trial.nct_id, []).append((where, parsed.trial.last_update))
        self._group.append((parsed, where))
        if len(self._group) >= GROUP_SIZE:
            self.flush()

    def flush(self) -> None:
        group, self._group = self._group, []
        if group:
            for stored, (_, where) in zip(self.workspace.store_trials([record for record, _ in group]), group):
                self.summary.count(stored.outcome)
                if stored.outcome != "older":
                    self._kept[stored.nct_id] = where

    def finish(self) -> Summary:
        self.flush()
        for nct_id, reads in self._read.items():
            if len(reads) > 1:
                kept = self._kept.get(nct_id)
                dates = dict(reads)
                which = f"last updated {dates[kept]}" if kept and dates.get(kept) else "read last"
                self.summary.warnings.append(
                    f"{nct_id}: {len(reads)} records ({', '.join(where for where, _ in reads)}); "
                    + (f"kept the one {which} ({kept})" if kept else "kept the stored one, updated later")
                )
        return self.summary


def import_files(workspace: Workspace, files: list[Path], on_file: Callable[[Path], None] = lambda path: None) -> Summary:
    importer = Importer(workspace)
    for path in files:
        named = _NAMED_ID.search(path.name) if path.suffix.lower() in SINGLE_RECORD else None
        try:
            stream = path.open("rb")
        except OSError as error:  # unreadable, or a folder named like a file: that file's failure
            importer.add(RecordError(f"cannot read: {error.strerror}"), str(path))
            on_file(path)
            continue
        with stream:
            for parsed in parse_stream(stream, path.name):
                if named and isinstance(parsed, RawRecord) and parsed.trial.nct_id != named.group().upper():
                    importer.summary.warnings.append(
                        f"{path}: named for {named.group().upper()} but holds {parsed.trial.nct_id}; "
                        f"stored as {parsed.trial.nct_id}"
                    )
                importer.add(parsed, str(path))
        on_file(path)
    return importer.finish()


def store(workspace: Workspace, parsed: RawRecord | RecordError, where: str, summary: Summary) -> None:
    """Store one parsed record, or note (in one line naming `where`) why it could not be read."""
    importer = Importer(workspace, summary)
    importer.add(parsed, where)
    importer.flush()
