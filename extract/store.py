"""The workspace: `raw/`, `structured/` and `eligex.duckdb` under one folder, and nothing outside it.

Writes are atomic (temporary file, then rename), the database changes only through the ordered
MIGRATIONS, and one process at a time may use a workspace (a lock file; a second one gets a clear
error instead of a corrupt file or DuckDB's own lock error).

The database is the truth and the files follow it. A file that goes with rows (a raw record, the
current structured record) is staged in `pending_files` in the same transaction as its rows and
written after the commit; whatever stops the process in between (SIGKILL, a full disk), the next
process to open the workspace writes what is still pending. So a file never exists without its
row, and a row's file is on disk once the workspace has been opened again.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import duckdb
from filelock import FileLock, Timeout

from extract.errors import Billed, InputError
from extract.sources import RawRecord
from schemas import EligibilityRecord, Trial, is_nct_id

if TYPE_CHECKING:
    from extract.parallel import Result

# Each entry runs once, in order; the index + 1 is the schema version recorded in `migrations`.
MIGRATIONS = [
    """
    CREATE TABLE trials (
        nct_id VARCHAR PRIMARY KEY,
        registry VARCHAR NOT NULL,
        source_url VARCHAR,
        retrieved_at TIMESTAMPTZ NOT NULL,
        content_sha256 VARCHAR NOT NULL,
        last_update DATE,
        raw_format VARCHAR NOT NULL,
        raw_document VARCHAR NOT NULL,
        trial JSON NOT NULL,
        stored_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        backend VARCHAR NOT NULL,
        model VARCHAR,
        prompt_version VARCHAR,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        summary JSON
    );
    CREATE TABLE extractions (
        run_id VARCHAR NOT NULL,
        nct_id VARCHAR NOT NULL,
        content_sha256 VARCHAR NOT NULL,
        status VARCHAR NOT NULL,  -- 'ok' or 'error'
        error VARCHAR,
        record JSON,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cost_usd DOUBLE,
        extracted_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (run_id, nct_id)
    )
    """,
    """
    CREATE TABLE llm_cache (
        cache_key VARCHAR PRIMARY KEY,
        model VARCHAR NOT NULL,
        prompt_version VARCHAR NOT NULL,
        schema_version VARCHAR NOT NULL,
        response JSON NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )
    """,
    # Batch API jobs, one per run; each step is recorded as it ends so that `batch submit` resumes.
    """
    CREATE TABLE batches (
        run_id VARCHAR PRIMARY KEY,
        batch_id VARCHAR,  -- the provider's, once created
        state VARCHAR NOT NULL,  -- 'written', 'uploaded', then the provider's status
        model VARCHAR NOT NULL,
        prompt_version VARCHAR NOT NULL,
        input_file_id VARCHAR,
        output_file_id VARCHAR,
        error_file_id VARCHAR,
        custom_ids JSON NOT NULL,  -- the requests, in input order
        cache_keys JSON NOT NULL,  -- per trial: the LLM cache key of the text that was sent
        request_counts JSON,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        collected_at TIMESTAMPTZ
    )
    """,
    # `eligex review`: every correction, as the field's value before and after; a trial's draft is its
    # base extraction with the latest row of each field not undone on top ('gold' rows: files written).
    """
    CREATE SEQUENCE review_audit_ids;
    CREATE TABLE review_audit (
        id BIGINT PRIMARY KEY DEFAULT nextval('review_audit_ids'),
        nct_id VARCHAR NOT NULL,
        field VARCHAR NOT NULL,  -- an eligibility field, or 'gold' for the gold file written
        action VARCHAR NOT NULL,  -- accept, edit, delete, add, reviewed
        before JSON,
        after JSON,
        run_id VARCHAR,  -- the run whose record the reviewer was correcting
        reviewer VARCHAR NOT NULL,
        changed_at TIMESTAMPTZ NOT NULL,
        undone_at TIMESTAMPTZ
    )
    """,
    # Files written after the commit of their rows (see the module's docstring); the record each trial
    # serves (`show`, `export`: evaluation runs serve none); a run's state and, for an evaluation, its split.
    """
    CREATE TABLE pending_files (path VARCHAR PRIMARY KEY, data BLOB);  -- data NULL: remove the file
    CREATE TABLE current_records (nct_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL);
    INSERT INTO current_records
        SELECT nct_id, arg_max(run_id, extracted_at) FROM extractions WHERE status = 'ok' GROUP BY nct_id;
    ALTER TABLE runs ADD COLUMN status VARCHAR;  -- 'running', 'finished', 'interrupted' or 'failed'
    ALTER TABLE runs ADD COLUMN split VARCHAR;  -- the gold split an evaluation run extracted
    UPDATE runs SET status = CASE
        WHEN finished_at IS NOT NULL THEN 'finished'
        WHEN run_id IN (SELECT run_id FROM batches WHERE collected_at IS NULL) THEN 'running'
        ELSE 'interrupted' END
    """,
    # Where long work stands, committed with the rows it wrote: an archive's import (the members
    # stored), a sync's high-water mark.
    """
    CREATE TABLE marks (name VARCHAR PRIMARY KEY, value JSON NOT NULL, updated_at TIMESTAMPTZ NOT NULL)
    """,
    # A stored study the registry no longer has (it answered 404 for its id): when that was seen and how.
    # Storing the study again (the registry has it after all) clears both.
    """
    ALTER TABLE trials ADD COLUMN removed_at TIMESTAMPTZ;
    ALTER TABLE trials ADD COLUMN removed_reason VARCHAR
    """,
    # The studies each sync's search has found (by the mark's name): a whole search that no longer finds
    # one asks for it by id, to tell a study removed from the registry from one that left the search.
    """
    CREATE TABLE sync_members (mark VARCHAR NOT NULL, nct_id VARCHAR NOT NULL, PRIMARY KEY (mark, nct_id))
    """,
    # A pending record file names the extraction row whose record it is (data NULL) instead of holding
    # a second copy of it: a batch of 64 records went into the database twice, 1.4 MB each time.
    """
    ALTER TABLE pending_files ADD COLUMN run_id VARCHAR;
    ALTER TABLE pending_files ADD COLUMN nct_id VARCHAR
    """,
    # A record missing part of its answer (the record's `extraction.incomplete`), which the next run
    # redoes: read by the planner without opening the records.
    """
    ALTER TABLE extractions ADD COLUMN incomplete BOOLEAN NOT NULL DEFAULT false
    """,
]
# A file to write with a group of rows: its path, its bytes, and the (run_id, nct_id) of the extraction
# row whose record the bytes are, if they are one (`Workspace.stage_file`).
_File = tuple[Path, bytes, "tuple[str, str] | None"]
RUN_STATES = ("running", "finished", "interrupted", "failed")
RAW_FORMATS = ("json", "xml")
# DuckDB's buffer pool: by default 80% of RAM, which it fills with the pages a long import writes;
# bounded, they are evicted to the file, so memory stays flat however much is imported.
DUCKDB_MEMORY = "128MB"


@dataclass(frozen=True)
class Stored:
    nct_id: str
    outcome: str  # "new", "changed", "unchanged" or "older" (than the stored record, which stays)


def atomic_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one. Without
    `sync`, the caller flushes the files it wrote together (`sync_filesystem`): a process killed
    leaves the file whole either way; only a power cut before that flush could lose it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            if sync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sync_filesystem(path: Path) -> None:
    """Bring every file written on `path`'s filesystem to disk at once: one flush for a batch of
    files (Linux `syncfs`) instead of an fsync each (2 ms apiece); elsewhere, `sync` of everything."""
    syncfs = getattr(_libc(), "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    handle = os.open(path, os.O_RDONLY)
    try:
        if syncfs(handle) != 0:
            os.sync()
    finally:
        os.close(handle)


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


class Workspace:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.raw_dir = self.root / "raw"
        self.structured_dir = self.root / "structured"
        self.db_path = self.root / "eligex.duckdb"
        self._lock = FileLock(self.root / ".eligex.lock")
        self._db: duckdb.DuckDBPyConnection | None = None
        self._io = threading.Lock()  # one group write at a time: they share one DuckDB connection
        self._writes: list[_Write] = []  # rows waiting for the next group write
        self._writes_lock = threading.Lock()  # the event loop appends while a worker takes the list
        self._writer: ThreadPoolExecutor | None = None  # `write_rows`'s one thread
        self._reader: duckdb.DuckDBPyConnection | None = None  # `cache_lookup`'s own connection
        self._reads = threading.Lock()
        self._cache_keys: set[str] | None = None  # every key of the LLM cache, read once for `cache_lookup`
        self._depth = 0  # transactions open: an inner one joins the outer
        self._staged: dict[Path, bytes | None] = {}  # files to write (None: remove) once the transaction commits
        self._staged_records: dict[Path, tuple[str, str]] = {}  # of those, the ones an extraction row holds
        self._written: list[str] = []  # files written whose pending rows the next transaction drops

    # -- opening ---------------------------------------------------------------------------------

    @contextmanager
    def writing(self, wait_seconds: float = 0) -> Iterator[Workspace]:
        """Hold the workspace: one process at a time (DuckDB opens a database in one process only).

        Whoever takes it first finishes what a stopped process left: temporary files are removed,
        pending files written, and runs left 'running' by a process that died marked interrupted.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock.acquire(timeout=wait_seconds)
        except Timeout:
            raise self.in_use() from None
        try:
            self._remove_interrupted_writes()
            if self.db_path.exists():  # else nothing was left, and nothing is created before it is needed
                self._write_pending_files()
                self.db.execute(
                    "UPDATE runs SET status = 'interrupted' WHERE status = 'running' "
                    "AND run_id NOT IN (SELECT run_id FROM batches WHERE collected_at IS NULL)"
                )
            yield self
        finally:
            self.close()
            self._lock.release()

    def in_use(self) -> InputError:
        return InputError(f"workspace {self.root} is in use by another eligex process; try again when it ends")

    def _remove_interrupted_writes(self) -> None:
        """Delete the temporary files of atomic writes a killed process never finished (the lock holder's job)."""
        for folder in (self.raw_dir, self.structured_dir):
            for path in folder.rglob(".*.tmp") if folder.is_dir() else ():
                path.unlink(missing_ok=True)

    @property
    def db(self) -> duckdb.DuckDBPyConnection:
        if self._db is None:
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                self._db = duckdb.connect(str(self.db_path), config={"memory_limit": DUCKDB_MEMORY})
            except duckdb.IOException as error:
                if "lock" in str(error).lower():  # another process has it open: say so as `writing` does
                    raise self.in_use() from None
                raise InputError(f"cannot open {self.db_path}: {str(error).splitlines()[0]}") from None
            self._db.execute("SET enable_progress_bar = false")  # DuckDB's own bar on a long statement: stdout is for data
            self._migrate()
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for many rows (DuckDB commits are the slow part of a per-row upsert); the files
        staged meanwhile are written after it. A transaction opened inside another joins it."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN")
        self._depth = 1
        try:
            yield
            self._forget_written_files()
            if self._staged:
                self._insert("pending_files", [
                    [self._relative(path), None, *self._staged_records[path]] if path in self._staged_records
                    else [self._relative(path), data, None, None]
                    for path, data in self._staged.items()
                ])  # fmt: skip
        except BaseException:
            self._staged.clear()
            self._staged_records.clear()
            self.db.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0
        self.db.execute("COMMIT")
        staged, self._staged, self._staged_records = self._staged, {}, {}
        if staged:
            self._write_files(staged)

    def stage_file(self, path: Path, data: bytes | None, record_of: tuple[str, str] | None = None) -> None:
        """Write `path` (remove it, for None) once the open transaction commits, or, after a crash,
        when the workspace is next opened. `record_of`: the (run_id, nct_id) of the extraction row,
        written in this transaction, whose record `data` is; the pending row then names it rather
        than copying it."""
        assert self._depth, "files are staged in a transaction"
        self._staged[path] = data
        if record_of is None:
            self._staged_records.pop(path, None)
        else:
            self._staged_records[path] = record_of

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def _write_files(self, files: dict[Path, bytes | None]) -> None:
        """Write files whose rows are committed, then flush them together (one flush per batch). Their
        pending rows go with the next transaction (or `close`), not in a commit of their own, and
        only once the files are on disk: a crash before then only writes them once more."""
        for path, data in files.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, data, sync=False)
        sync_filesystem(self.root)
        self._written.extend(self._relative(path) for path in files)

    def _forget_written_files(self) -> None:
        """Drop the pending rows of files on disk; before this transaction stages any (it may stage one again)."""
        if self._written:
            self.db.execute("DELETE FROM pending_files WHERE path IN (SELECT unnest(?))", [self._written])
            self._written = []

    def _write_pending_files(self) -> None:
        pending = self.db.execute(
            "SELECT p.path, p.data, p.run_id, e.record FROM pending_files p "
            "LEFT JOIN extractions e ON e.run_id = p.run_id AND e.nct_id = p.nct_id"
        ).fetchall()
        files = {}
        for path, data, run_id, record in pending:
            if run_id is None:
                files[self.root / path] = None if data is None else bytes(data)
            elif record is not None:  # committed with the row, so always there
                files[self.root / path] = record.encode()
        if files:
            self._write_files(files)
            self._forget_written_files()

    def queue_rows(self, rows: list[tuple[str, list[Any]]], files: list[_File] = ()) -> _Write:
        """Insert or replace `rows` ((table, row) pairs) with the next group write, and stage `files`
        ((path, data, record_of) triples, as `stage_file` takes them) with them."""
        write = _Write(rows, list(files))
        with self._writes_lock:
            self._writes.append(write)
        return write

    async def write_rows(self, rows: list[tuple[str, list[Any]]], files: list[_File] = ()) -> None:
        """`queue_rows` from an event loop, returning once the rows are committed and the files written.

        Each row costs a DuckDB statement of a few milliseconds, and a record file an fsync: the limit
        of a run with many requests in flight. So the write runs in a worker thread, and rows that
        arrive while a write is under way go together in the next one: one statement per table, one
        commit. The rows of a group are written or failed together.
        """
        write = self.queue_rows(rows, files)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eligex-write")
        # Writes ours, or finds it taken by an earlier group; one thread, so that rows waiting for
        # their group hold no thread the reads (`cache_lookup`) need.
        await asyncio.get_running_loop().run_in_executor(self._writer, self._write_waiting)
        if write.error is not None:
            raise write.error
        assert write.done

    def _write_waiting(self) -> None:
        with self._io:
            with self._writes_lock:
                writes, self._writes = self._writes, []
            if not writes:
                return
            try:
                latest: dict[str, dict[tuple, list[Any]]] = {}  # per table and key, the last row
                for write in writes:
                    for table, row in write.rows:
                        latest.setdefault(table, {})[tuple(row[: _KEY_COLUMNS[table]])] = row
                with self.transaction():
                    for table, rows in latest.items():
                        self._insert(table, list(rows.values()))
                    for write in writes:
                        for path, data, record_of in write.files:
                            self.stage_file(path, data, record_of)
            except BaseException as error:
                for write in writes:
                    write.error = error
                return
            for write in writes:
                write.done = True

    def close(self) -> None:
        """Write the rows still queued (cache rows nobody waited for), then close the connections."""
        if self._writer is not None:
            self._writer.shutdown()  # after the group writes under way
            self._writer = None
        if self._db is None:
            return
        self._write_waiting()
        self._forget_written_files()
        with self._reads:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self._db.close()
        self._db = None
        self._cache_keys = None  # another process may add some before the next open

    def _migrate(self) -> None:
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
        applied = db.execute("SELECT coalesce(max(version), 0) FROM migrations").fetchone()[0]
        for version, sql in enumerate(MIGRATIONS[applied:], applied + 1):
            db.execute("BEGIN")
            db.execute(sql)
            db.execute("INSERT INTO migrations VALUES (?, ?)", [version, _now()])
            db.execute("COMMIT")

    # -- trials ----------------------------------------------------------------------------------

    def raw_path(self, registry: str, nct_id: str, raw_format: str) -> Path:
        if not is_nct_id(nct_id):  # never build a path from an unchecked id
            raise InputError(f"{nct_id!r} is not an NCT id")
        folder = "".join(ch for ch in registry if ch.isalnum() or ch in ".-_") or "unknown"
        return self.raw_dir / folder / f"{nct_id}.{raw_format}"

    def store_trial(self, record: RawRecord) -> Stored:
        return self.store_trials([record])[0]

    def store_trials(self, records: list[RawRecord]) -> list[Stored]:
        """Upsert records in order, in one statement, their raw files staged with it. A record whose
        content hash is unchanged is not rewritten, and one the registry updated before the stored
        one (`last_update`) does not replace it; otherwise a later record with the same id wins."""
        ids = [record.trial.nct_id for record in records]
        known, removed = {}, set()
        for nct_id, sha, last_update, removed_at in self.db.execute(
            "SELECT nct_id, content_sha256, last_update, removed_at FROM trials WHERE nct_id IN (SELECT unnest(?))", [ids]
        ).fetchall():
            known[nct_id] = (sha, last_update)
            if removed_at is not None:
                removed.add(nct_id)
        outcomes, rows, files = [], {}, {}
        for record in records:
            trial = record.trial
            if trial.nct_id in removed:  # the registry has it after all: current again, whatever the outcome
                files[self.removed_path(trial.nct_id)] = None
            sha, last_update = known.get(trial.nct_id, (None, None))
            if sha == trial.source.content_sha256:
                outcomes.append(Stored(trial.nct_id, "unchanged"))
                continue
            if last_update and trial.last_update and trial.last_update < last_update:
                outcomes.append(Stored(trial.nct_id, "older"))
                continue
            path = self.raw_path(record.registry, trial.nct_id, record.format)
            for other in {self.raw_path(record.registry, trial.nct_id, f) for f in RAW_FORMATS} - {path}:
                if other in files or other.exists():  # the record was stored in another format: that file goes
                    files[other] = None
            files[path] = record.raw
            rows[trial.nct_id] = [
                trial.nct_id, record.registry, trial.source.url, trial.source.retrieved_at,
                trial.source.content_sha256, trial.last_update, record.format,
                record.raw.decode("utf-8", errors="replace"), trial.model_dump_json(), _now(), None, None,
            ]  # fmt: skip
            known[trial.nct_id] = (trial.source.content_sha256, trial.last_update)
            outcomes.append(Stored(trial.nct_id, "changed" if sha else "new"))
        with self.transaction():
            self._insert("trials", list(rows.values()))
            if removed - rows.keys():  # received unchanged (or older): no row rewritten, so say it here
                self.db.execute("UPDATE trials SET removed_at = NULL, removed_reason = NULL WHERE nct_id IN (SELECT unnest(?))",
                                [sorted(removed - rows.keys())])  # fmt: skip
            for path, data in files.items():
                self.stage_file(path, data)
        return outcomes

    # -- the registry's state of a stored study: withdrawn (its record says so) or removed ------------

    def removed_path(self, nct_id: str) -> Path:
        """The file beside a removed study's current record that says so: `show` and `export` read it
        without the database (another process may hold it)."""
        if not is_nct_id(nct_id):
            raise InputError(f"{nct_id!r} is not an NCT id")
        return self.structured_dir / f"{nct_id}.removed"

    def mark_removed(self, nct_id: str, reason: str) -> bool:
        """Mark a stored study removed from the registry (kept, never served as current); False when
        it is not stored (there is nothing to mark). Marked once: the first sighting's time stays."""
        row = self.db.execute("SELECT removed_at FROM trials WHERE nct_id = ?", [nct_id]).fetchone()
        if row is None:
            return False
        if row[0] is None:
            at = _now()
            with self.transaction():
                self.db.execute("UPDATE trials SET removed_at = ?, removed_reason = ? WHERE nct_id = ?", [at, reason, nct_id])
                document = {"nct_id": nct_id, "removed_at": at.isoformat(), "reason": reason}
                self.stage_file(self.removed_path(nct_id), json.dumps(document).encode())
        return True

    def removed(self, nct_id: str) -> dict[str, Any] | None:
        """How a study was found removed ({nct_id, removed_at, reason}), from its file; None if it was not."""
        path = self.removed_path(nct_id)
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None

    def withdrawn(self, nct_ids: list[str]) -> list[str]:
        """Which of the trials named the registry says are withdrawn (`overallStatus` WITHDRAWN), in id order."""
        return [row[0] for row in self.db.execute(
            "SELECT nct_id FROM trials WHERE nct_id IN (SELECT unnest(?)) "
            "AND json_extract_string(trial, '$.trial.overall_status') = 'WITHDRAWN' ORDER BY nct_id", [nct_ids]).fetchall()]  # fmt: skip

    def add_members(self, mark: str, nct_ids: list[str]) -> None:
        self._insert("sync_members", [[mark, nct_id] for nct_id in nct_ids])

    def members(self, mark: str) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT nct_id FROM sync_members WHERE mark = ?", [mark]).fetchall()}

    def drop_members(self, mark: str, nct_ids: list[str]) -> None:
        self.db.execute("DELETE FROM sync_members WHERE mark = ? AND nct_id IN (SELECT unnest(?))", [mark, nct_ids])

    def stored_since(self, since: datetime) -> list[str]:
        """The ids of the trials stored (new or changed) at or after `since`, in id order."""
        return [row[0] for row in self.db.execute(
            "SELECT nct_id FROM trials WHERE stored_at >= ? ORDER BY nct_id", [since]).fetchall()]  # fmt: skip

    def mark(self, name: str) -> Any:
        row = self.db.execute("SELECT value FROM marks WHERE name = ?", [name]).fetchone()
        return None if row is None else json.loads(row[0])

    def set_mark(self, name: str, value: Any) -> None:
        self._insert("marks", [[name, json.dumps(value), _now()]])

    def clear_mark(self, name: str) -> None:
        self.db.execute("DELETE FROM marks WHERE name = ?", [name])

    def _insert(self, table: str, rows: list[list[Any]]) -> None:
        """Insert or replace many rows in one statement (a statement per row costs milliseconds each)."""
        if rows:
            marks = ", ".join(["(" + ", ".join("?" * len(rows[0])) + ")"] * len(rows))
            self.db.execute(f"INSERT OR REPLACE INTO {table} VALUES {marks}", [value for row in rows for value in row])

    def trial_ids(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT nct_id FROM trials ORDER BY nct_id").fetchall()]

    def trials(self, nct_ids: list[str] | None = None) -> Iterator[Trial]:
        """Stored trials in id order (all of them, or the ones named)."""
        if nct_ids is None:
            rows = self.db.execute("SELECT trial FROM trials ORDER BY nct_id").fetchall()
        else:
            rows = self.db.execute(
                "SELECT trial FROM trials WHERE nct_id IN (SELECT unnest(?)) ORDER BY nct_id", [nct_ids]
            ).fetchall()
        for (document,) in rows:
            yield Trial.model_validate_json(document)

    # -- extraction runs -------------------------------------------------------------------------

    def start_run(self, run_id: str, backend: str, model: str | None, prompt_version: str | None,
                  split: str | None = None) -> None:  # fmt: skip
        self.db.execute(
            "INSERT INTO runs (run_id, backend, model, prompt_version, started_at, status, split) "
            "VALUES (?, ?, ?, ?, ?, 'running', ?)",
            [run_id, backend, model, prompt_version, _now(), split],
        )

    def finish_run(self, run_id: str, summary: dict[str, Any], status: str = "finished") -> None:
        assert status in RUN_STATES
        with self._io:  # an interrupted run ends while a group write may still be under way
            self.db.execute(
                "UPDATE runs SET finished_at = ?, summary = ?, status = ? WHERE run_id = ?",
                [_now(), json.dumps(summary), status, run_id],
            )

    def stored_records(self, run_id: str) -> int:
        """The run's successful records on disk, once the rows still queued are written."""
        self._write_waiting()
        with self._io:
            return self.db.execute("SELECT count(*) FROM extractions WHERE run_id = ? AND status = 'ok'", [run_id]).fetchone()[0]

    async def save_record(self, run_id: str, record: EligibilityRecord, serve: bool = True) -> None:
        """The run's row; when `serve`, the trial's current record too (`structured/<NCT>.json`, written
        after the commit), in the next group of `write_rows`. Evaluation runs do not serve."""
        document = record.model_dump_json(indent=2)
        rows = [("extractions", _record_row(run_id, record, document))]
        if not serve:
            await self.write_rows(rows)
            return
        path = self.structured_dir / f"{record.nct_id}.json"
        await self.write_rows(rows + [("current_records", [record.nct_id, run_id])],
                              [(path, document.encode(), (run_id, record.nct_id))])  # fmt: skip

    async def save_error(self, run_id: str, trial: Trial, reason: str, billed: Billed = Billed()) -> None:
        await self.write_rows([("extractions", _error_row(run_id, trial, reason, billed))])

    def save_results(self, run_id: str, results: list[Result], serve: bool = True) -> None:
        """A batch of results (extract/parallel.py) in one transaction, their record files flushed
        together after it: the rows and files `save_record` and `save_error` write, for many trials."""
        rows: list[tuple[str, list[Any]]] = []
        files = []
        for result in results:
            rows.append(("extractions", [
                run_id, result.nct_id, result.content_sha256, "ok" if result.record is not None else "error",
                result.error, result.record, result.input_tokens, result.output_tokens, result.cost_usd, _now(),
                result.incomplete,
            ]))  # fmt: skip
            if serve and result.record is not None:
                rows.append(("current_records", [result.nct_id, run_id]))
                files.append((self.structured_dir / f"{result.nct_id}.json", result.record.encode(), (run_id, result.nct_id)))
        write = self.queue_rows(rows, files)
        self._write_waiting()
        if write.error is not None:
            raise write.error

    def current_record(self, nct_id: str) -> EligibilityRecord | None:
        path = self.structured_dir / f"{nct_id}.json"
        if not is_nct_id(nct_id) or not path.exists():
            return None
        return EligibilityRecord.model_validate_json(path.read_bytes())

    def run_records(self, run_id: str, nct_ids: list[str]) -> dict[str, EligibilityRecord]:
        """The run's successful records of the trials named."""
        if self.run(run_id) is None:
            raise InputError(f"no run {run_id!r} in {self.db_path}; `eligex runs` lists them")
        rows = self.db.execute(
            "SELECT nct_id, record FROM extractions WHERE run_id = ? AND status = 'ok' AND nct_id IN (SELECT unnest(?))",
            [run_id, nct_ids],
        ).fetchall()
        return {nct_id: EligibilityRecord.model_validate_json(record) for nct_id, record in rows}

    def run(self, run_id: str) -> dict[str, Any] | None:
        return next(iter(_dicts(self.db.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]))), None)

    def runs(self) -> list[dict[str, Any]]:
        return _dicts(self.db.execute("SELECT * FROM runs ORDER BY started_at DESC"))

    # -- LLM response cache ----------------------------------------------------------------------

    def cache_get(self, cache_key: str) -> dict[str, Any] | None:
        return _cache_entry(self.db.execute(_CACHE_ENTRY, [cache_key]).fetchone())

    async def cache_lookup(self, cache_key: str) -> dict[str, Any] | None:
        """`cache_get` from an event loop. A key the cache lacks costs a set lookup (the keys are read
        once); a present one, a worker thread on a connection of its own, so that it never waits
        behind a group write."""
        if self._cache_keys is None:
            self._cache_keys = {key for (key,) in self._read("SELECT cache_key FROM llm_cache", [])}
        if cache_key not in self._cache_keys:
            return None
        rows = await asyncio.to_thread(self._read, _CACHE_ENTRY, [cache_key])
        return _cache_entry(rows[0] if rows else None)

    def _read(self, sql: str, parameters: list[Any]) -> list[tuple]:
        """A query's rows from the reader connection: committed rows only, never behind a group write."""
        with self._reads:
            if self._reader is None:
                with self._io:  # not while the connection it comes from is in use
                    self._reader = self.db.cursor()
            return self._reader.execute(sql, parameters).fetchall()

    def cache_put(self, cache_key: str, *, model: str, prompt_version: str, schema_version: str,
                  response: Any, input_tokens: int, output_tokens: int) -> None:  # fmt: skip
        """Queue an answer for the next group write: the trial's own record (or `close`) brings it to disk."""
        row = [cache_key, model, prompt_version, schema_version, json.dumps(response), input_tokens, output_tokens, _now()]
        self.queue_rows([("llm_cache", row)])
        if self._cache_keys is not None:
            self._cache_keys.add(cache_key)

    # -- Batch API jobs --------------------------------------------------------------------------

    def save_batch(self, run_id: str, **columns: Any) -> None:
        """Insert the run's batch row or update the columns given; JSON columns take plain data."""
        values = {k: json.dumps(v) if k in _BATCH_JSON else v for k, v in columns.items()} | {"updated_at": _now()}
        if self.db.execute("SELECT 1 FROM batches WHERE run_id = ?", [run_id]).fetchone() is None:
            values |= {"run_id": run_id, "created_at": values["updated_at"]}
            marks = ", ".join("?" * len(values))
            self.db.execute(f"INSERT INTO batches ({', '.join(values)}) VALUES ({marks})", list(values.values()))
        else:
            assignments = ", ".join(f"{name} = ?" for name in values)
            self.db.execute(f"UPDATE batches SET {assignments} WHERE run_id = ?", [*values.values(), run_id])

    def batches(self) -> list[dict[str, Any]]:
        """Every batch row, newest first, JSON columns decoded."""
        rows = _dicts(self.db.execute("SELECT * FROM batches ORDER BY created_at DESC"))
        for row in rows:
            row.update({k: json.loads(row[k]) for k in _BATCH_JSON if row[k] is not None})
        return rows


    # -- review: record documents and the audit of corrections ----------------------------------

    def record_documents(self, run_id: str | None = None, nct_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Each trial's latest successful record (of one run, or of any; of one trial, or of all), as plain
        data, unvalidated (the review list reads them all on every request)."""
        rows = self.db.execute(
            "SELECT nct_id, record FROM extractions WHERE status = 'ok' AND (? IS NULL OR run_id = ?) "
            "AND (? IS NULL OR nct_id = ?) QUALIFY row_number() OVER (PARTITION BY nct_id ORDER BY extracted_at DESC) = 1",
            [run_id, run_id, nct_id, nct_id],
        ).fetchall()
        return {nct_id: json.loads(record) for nct_id, record in rows}

    def backend_documents(self, nct_id: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """Per trial and backend, the latest successful record: where two backends disagree."""
        rows = self.db.execute(
            "SELECT e.nct_id, r.backend, e.record FROM extractions e JOIN runs r USING (run_id) "
            "WHERE e.status = 'ok' AND (? IS NULL OR e.nct_id = ?) "
            "QUALIFY row_number() OVER (PARTITION BY e.nct_id, r.backend ORDER BY e.extracted_at DESC) = 1",
            [nct_id, nct_id],
        ).fetchall()
        found: dict[str, dict[str, dict[str, Any]]] = {}
        for trial_id, backend, record in rows:
            found.setdefault(trial_id, {})[backend] = json.loads(record)
        return found

    def add_audit(self, nct_id: str, field: str, action: str, before: Any, after: Any, *, run_id: str | None,
                  reviewer: str) -> int:  # fmt: skip
        row = self.db.execute(
            "INSERT INTO review_audit (nct_id, field, action, before, after, run_id, reviewer, changed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [nct_id, field, action, json.dumps(before), json.dumps(after), run_id, reviewer, _now()],
        ).fetchone()
        return row[0]

    def audit(self, nct_id: str | None = None, *, undone: bool = False) -> list[dict[str, Any]]:
        """Audit rows in order (of one trial, or all), JSON decoded; undone ones only when asked."""
        rows = _dicts(self.db.execute(
            "SELECT * FROM review_audit WHERE (? IS NULL OR nct_id = ?) AND (? OR undone_at IS NULL) ORDER BY id",
            [nct_id, nct_id, undone],
        ))  # fmt: skip
        for row in rows:
            row["before"], row["after"] = json.loads(row["before"]), json.loads(row["after"])
        return rows

    def undo_audit(self, audit_id: int) -> None:
        self.db.execute("UPDATE review_audit SET undone_at = ? WHERE id = ?", [_now(), audit_id])


_BATCH_JSON = ("custom_ids", "cache_keys", "request_counts")
_KEY_COLUMNS = {"extractions": 2, "llm_cache": 1, "current_records": 1}  # the primary key: the row's first columns


@dataclass
class _Write:
    """Rows (and their files) waiting for the next group write (`Workspace.queue_rows`), and how that went."""

    rows: list[tuple[str, list[Any]]]
    files: list[_File]
    done: bool = False
    error: BaseException | None = None


def _record_row(run_id: str, record: EligibilityRecord, document: str) -> list[Any]:
    extraction = record.extraction
    return [run_id, record.nct_id, record.source.content_sha256, "ok", None, document,
            extraction.input_tokens, extraction.output_tokens, extraction.cost_usd, _now(),
            extraction.incomplete]  # fmt: skip


def _error_row(run_id: str, trial: Trial, reason: str, billed: Billed) -> list[Any]:
    return [run_id, trial.nct_id, trial.source.content_sha256, "error", reason, None,
            billed.input_tokens, billed.output_tokens, billed.cost_usd, _now(), False]  # fmt: skip


_CACHE_ENTRY = "SELECT response, input_tokens, output_tokens FROM llm_cache WHERE cache_key = ?"


def _cache_entry(row: tuple | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"response": json.loads(row[0]), "input_tokens": row[1], "output_tokens": row[2]}


def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _now() -> datetime:
    return datetime.now(timezone.utc)
