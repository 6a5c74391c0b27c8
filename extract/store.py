"""The workspace: `raw/`, `structured/` and `eligex.duckdb` under one folder, and nothing outside it.

Writes are atomic (temporary file, then rename), the database changes only through the ordered
MIGRATIONS, and one process at a time may write a workspace (a lock file; a second one gets a
clear error instead of a corrupt file).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import duckdb
from filelock import FileLock, Timeout

from extract.errors import Billed, InputError
from extract.sources import RawRecord
from schemas import EligibilityRecord, Trial, is_nct_id

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
]


@dataclass(frozen=True)
class Stored:
    nct_id: str
    outcome: str  # "new", "changed" or "unchanged"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
        self._writer: ThreadPoolExecutor | None = None  # `write_row`'s one thread
        self._reader: duckdb.DuckDBPyConnection | None = None  # `cache_lookup`'s own connection
        self._reads = threading.Lock()
        self._cache_keys: set[str] | None = None  # every key of the LLM cache, read once for `cache_lookup`

    # -- opening ---------------------------------------------------------------------------------

    @contextmanager
    def writing(self, wait_seconds: float = 0) -> Iterator[Workspace]:
        """Hold the workspace for writing: one process at a time."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=wait_seconds)
        except Timeout:
            raise InputError(f"workspace {self.root} is in use by another eligex process; try again when it ends") from None
        try:
            self._remove_interrupted_writes()
            yield self
        finally:
            self.close()
            self._lock.release()

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
                self._db = duckdb.connect(str(self.db_path))
            except duckdb.IOException as error:
                raise InputError(f"cannot open {self.db_path}: {str(error).splitlines()[0]}") from None
            self._migrate()
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for many rows (DuckDB commits are the slow part of a per-row upsert)."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def queue_row(self, table: str, row: list[Any], before: Callable[[], None] | None = None) -> _Write:
        """Insert or replace `row` in `table` with the next group write; `before()` first (the record's file)."""
        write = _Write(table, row, before)
        with self._writes_lock:
            self._writes.append(write)
        return write

    async def write_row(self, table: str, row: list[Any], before: Callable[[], None] | None = None) -> None:
        """`queue_row` from an event loop, returning once the row is committed.

        Each row costs a DuckDB statement of a few milliseconds, and a record file an fsync: the limit
        of a run with many requests in flight. So the write runs in a worker thread, and rows that
        arrive while a write is under way go together in the next one: one statement per table, one
        commit. The rows of a group are written or failed together.
        """
        write = self.queue_row(table, row, before)
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
                for write in writes:
                    if write.before is not None:
                        write.before()
                latest: dict[str, dict[tuple, list[Any]]] = {}  # per table and key, the last row
                for write in writes:
                    latest.setdefault(write.table, {})[tuple(write.row[: _KEY_COLUMNS[write.table]])] = write.row
                with self.transaction():
                    for table, rows in latest.items():
                        self._insert(table, list(rows.values()))
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
        """Upsert records in order: raw files, then one statement; a record whose content hash is unchanged
        is not rewritten. A later record with the same id wins, as it would one at a time."""
        ids = [record.trial.nct_id for record in records]
        hashes = dict(self.db.execute(
            "SELECT nct_id, content_sha256 FROM trials WHERE nct_id IN (SELECT unnest(?))", [ids]
        ).fetchall())  # fmt: skip
        outcomes, rows = [], {}
        for record in records:
            trial = record.trial
            known = hashes.get(trial.nct_id)
            if known == trial.source.content_sha256:
                outcomes.append(Stored(trial.nct_id, "unchanged"))
                continue
            atomic_write(self.raw_path(record.registry, trial.nct_id, record.format), record.raw)
            rows[trial.nct_id] = [
                trial.nct_id, record.registry, trial.source.url, trial.source.retrieved_at,
                trial.source.content_sha256, trial.last_update, record.format,
                record.raw.decode("utf-8", errors="replace"), trial.model_dump_json(), _now(),
            ]  # fmt: skip
            hashes[trial.nct_id] = trial.source.content_sha256
            outcomes.append(Stored(trial.nct_id, "changed" if known else "new"))
        self._insert("trials", list(rows.values()))
        return outcomes

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

    def start_run(self, run_id: str, backend: str, model: str | None, prompt_version: str | None) -> None:
        self.db.execute(
            "INSERT INTO runs (run_id, backend, model, prompt_version, started_at) VALUES (?, ?, ?, ?, ?)",
            [run_id, backend, model, prompt_version, _now()],
        )

    def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE runs SET finished_at = ?, summary = ? WHERE run_id = ?", [_now(), json.dumps(summary), run_id]
        )

    async def save_record(self, run_id: str, record: EligibilityRecord) -> None:
        """The record goes to `structured/<NCT>.json` (the current one), then its row, in the next group of `write_row`."""
        document = record.model_dump_json(indent=2)
        path = self.structured_dir / f"{record.nct_id}.json"
        await self.write_row("extractions", _record_row(run_id, record, document), lambda: atomic_write(path, document.encode()))

    async def save_error(self, run_id: str, trial: Trial, reason: str, billed: Billed = Billed()) -> None:
        await self.write_row("extractions", _error_row(run_id, trial, reason, billed))

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
        self.queue_row("llm_cache", row)
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


_BATCH_JSON = ("custom_ids", "cache_keys", "request_counts")
_KEY_COLUMNS = {"extractions": 2, "llm_cache": 1}  # the primary key: the row's first columns


@dataclass
class _Write:
    """A row waiting for the next group write (`Workspace.queue_row`), and how that went."""

    table: str
    row: list[Any]
    before: Callable[[], None] | None = None
    done: bool = False
    error: BaseException | None = None


def _record_row(run_id: str, record: EligibilityRecord, document: str) -> list[Any]:
    extraction = record.extraction
    return [run_id, record.nct_id, record.source.content_sha256, "ok", None, document,
            extraction.input_tokens, extraction.output_tokens, extraction.cost_usd, _now()]  # fmt: skip


def _error_row(run_id: str, trial: Trial, reason: str, billed: Billed) -> list[Any]:
    return [run_id, trial.nct_id, trial.source.content_sha256, "error", reason, None,
            billed.input_tokens, billed.output_tokens, billed.cost_usd, _now()]  # fmt: skip


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
