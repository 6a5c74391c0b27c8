"""`eligex import`: registry records from files, folders and ZIP archives into the workspace.

Files are read as streams and stored in groups of `GROUP_SIZE` records, one transaction each, so
memory stays flat however large a file is; a crash loses at most the group under way (the store
keeps raw/ and the database consistent, see extract/store.py). A ZIP archive (the registry's full
download: one study per member, API v2 JSON or classic XML) is read member by member from the
archive; how many members are stored is committed with each group, so an import of the same
archive after a crash goes on after them instead of reading them again.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterable

from extract.errors import InputError
from extract.sources import RawRecord, RecordError, parse_stream
from extract.store import Workspace

RECORD_FILES = (".json", ".jsonl", ".ndjson", ".xml", ".csv")
IMPORTABLE = (*RECORD_FILES, ".zip")
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
    removed: list[str] = field(default_factory=list)  # stored studies the registry no longer has (404): marked so

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def add(self, other: Summary) -> None:
        """Count what `other` did too."""
        for outcome in ("new", "changed", "unchanged", "older"):
            setattr(self, outcome, getattr(self, outcome) + getattr(other, outcome))
        self.failures += other.failures
        self.warnings += other.warnings
        self.removed += other.removed

    def line(self) -> str:
        older = f", {self.older} older than stored (kept the stored one)" if self.older else ""
        removed = f", {len(self.removed)} removed from the registry (marked so)" if self.removed else ""
        return (f"{self.new} new, {self.changed} changed, {self.unchanged} unchanged, {len(self.failures)} failed"
                f"{older}{removed}")  # fmt: skip


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
        self.mark: tuple[str, dict] | None = None  # committed with the next group: how far an archive is stored
        self.whole_members = False  # in an archive, a group ends with a member, so that the mark counts whole members

    def add(self, parsed: RawRecord | RecordError, where: str) -> None:
        if isinstance(parsed, RecordError):
            who = f" ({parsed.nct_id})" if parsed.nct_id else ""
            self.summary.failures.append(f"{where}{who}: {parsed.reason}")
            return
        self._read.setdefault(parsed.trial.nct_id, []).append((where, parsed.trial.last_update))
        self._group.append((parsed, where))
        if not self.whole_members:
            self.flush_if_full()

    def flush_if_full(self) -> None:
        if len(self._group) >= GROUP_SIZE:
            self.flush()

    def flush(self) -> None:
        group, self._group = self._group, []
        if group or self.mark:
            with self.workspace.transaction():
                outcomes = self.workspace.store_trials([record for record, _ in group])
                if self.mark:
                    self.workspace.set_mark(*self.mark)
            for stored, (_, where) in zip(outcomes, group):
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


def import_files(workspace: Workspace, files: list[Path], on_file: Callable[[Path], None] = lambda path: None,
                 on_member: Callable[[], None] = lambda: None, on_note: Callable[[str], None] = lambda line: None) -> Summary:  # fmt: skip
    """Import `files`; `on_file` after each plain file, `on_member` after each member of an archive,
    `on_note` for a line to say at once (an archive's import resumed)."""
    importer = Importer(workspace)
    for path in files:
        if path.suffix.lower() == ".zip":
            import_archive(importer, path, on_member, on_note)
            continue
        try:
            stream = path.open("rb")
        except OSError as error:  # unreadable, or a folder named like a file: that file's failure
            importer.add(RecordError(f"cannot read: {error.strerror}"), str(path))
            on_file(path)
            continue
        with stream:
            _read(importer, stream, path.name, str(path))
        on_file(path)
    return importer.finish()


def _read(importer: Importer, stream, name: str, where: str) -> None:
    named = _NAMED_ID.search(Path(name).name) if name.lower().endswith(SINGLE_RECORD) else None
    for parsed in parse_stream(stream, name):
        if named and isinstance(parsed, RawRecord) and parsed.trial.nct_id != named.group().upper():
            importer.summary.warnings.append(
                f"{where}: named for {named.group().upper()} but holds {parsed.trial.nct_id}; "
                f"stored as {parsed.trial.nct_id}"
            )
        importer.add(parsed, where)


def archive_members(path: Path) -> list[zipfile.ZipInfo]:
    """The members of a ZIP archive that hold records, in the archive's order (read from its
    directory alone); [] for a file that is no ZIP archive (its import says so)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [m for m in archive.infolist() if not m.is_dir() and m.filename.lower().endswith(RECORD_FILES)]
    except (OSError, zipfile.BadZipFile):
        return []


def import_archive(importer: Importer, path: Path, on_member: Callable[[], None] = lambda: None,
                   on_note: Callable[[str], None] = lambda line: None) -> None:  # fmt: skip
    """Every record of a ZIP archive, member by member, streamed from it. The members stored so far
    are committed with each group (the mark `import <path>`, with the archive's size and time); an
    import of the same archive after a crash starts after them. A finished import drops the mark."""
    workspace = importer.workspace
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        importer.add(RecordError(f"cannot read as a ZIP archive: {getattr(error, 'strerror', None) or error}"), str(path))
        return
    name = f"import {path.resolve()}"
    stat = path.stat()
    identity = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    mark = workspace.mark(name)
    start = mark["members"] if mark and mark.get("archive") == identity else 0
    members = archive_members(path)
    if start:
        on_note(f"{path}: resuming after the {start} members stored by an import that stopped")
        for _ in range(start):
            on_member()
    importer.whole_members = True
    with archive:
        for number, member in enumerate(members[start:], start + 1):
            where = f"{path}:{member.filename}"
            try:
                with archive.open(member) as stream:
                    _read(importer, stream, member.filename, where)
            except (zipfile.BadZipFile, OSError, EOFError) as error:  # a damaged member costs only itself
                importer.add(RecordError(f"cannot read from the archive: {error}"), where)
            importer.mark = (name, {"archive": identity, "members": number})
            importer.flush_if_full()
            on_member()
    importer.flush()
    importer.mark, importer.whole_members = None, False
    workspace.clear_mark(name)


def store(workspace: Workspace, parsed: RawRecord | RecordError, where: str, summary: Summary) -> None:
    """Store one parsed record, or note (in one line naming `where`) why it could not be read."""
    importer = Importer(workspace, summary)
    importer.add(parsed, where)
    importer.flush()
