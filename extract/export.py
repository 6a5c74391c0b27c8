"""`eligex export`: the current records for downstream apps and analysts.

The current record of a trial is `structured/<NCT>.json`, the one `show` serves. Two shapes:
- `records`: one row per trial with the contract's nesting, as JSONL, JSON or Parquet; the JSON
  Schema is written beside it so a reader knows exactly what it holds;
- long tables, one row per biomarker test, prior therapy or lab, as Parquet or CSV.

Parquet and CSV columns are typed from the contract's models (`duckdb_type`), never guessed from
the data: an empty export, or one whose records all lack a field, has every column, typed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel

from extract.errors import InputError
from extract.store import Workspace, atomic_write
from schemas import BiomarkerRule, BiomarkerTest, EligibilityRecord, Evidence, Lab, PriorTherapy

FORMATS = ("jsonl", "json", "parquet", "csv")
# A long table: the list field of `eligibility` it unrolls, the item's model and, for a rule of
# alternatives, the list inside it that gives one row per element (with the rule's own fields).
LONG_TABLES: dict[str, tuple[str, type[BaseModel], str | None, type[BaseModel] | None]] = {
    "biomarkers": ("biomarkers", BiomarkerRule, "any_of", BiomarkerTest),
    "prior_therapies": ("prior_therapies", PriorTherapy, None, None),
    "labs": ("labs", Lab, None, None),
}
TABLES = ("records", *LONG_TABLES)
_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_SCALARS = {str: "VARCHAR", int: "BIGINT", float: "DOUBLE", bool: "BOOLEAN", datetime: "TIMESTAMPTZ", date: "DATE"}


@dataclass
class Listed:
    """What a listing of current records noted: the trials it left out because the registry removed
    them, and the withdrawn ones it kept (their `trial.overall_status` says WITHDRAWN)."""

    removed: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)

    def line(self) -> str:
        """'' when there is nothing to say; else what was left out and what is withdrawn, ids named."""
        parts = []
        if self.withdrawn:
            parts.append(f"{len(self.withdrawn)} withdrawn, kept with overall_status WITHDRAWN ({', '.join(self.withdrawn)})")
        if self.removed:
            parts.append(f"left out {len(self.removed)} removed from the registry ({', '.join(self.removed)})")
        return "; ".join(parts)


def current_records(workspace: Workspace, since: date | None = None, listed: Listed | None = None) -> list[EligibilityRecord]:
    """Every current record, in id order; with `since`, only those extracted on or after that day.
    A trial the registry removed has none (`listed` names it)."""
    return list(iter_current_records(workspace, since, listed))


def iter_current_records(workspace: Workspace, since: date | None = None, listed: Listed | None = None) -> Iterator[EligibilityRecord]:
    """`current_records` one at a time: only the file names are held, never the records."""
    listed = listed if listed is not None else Listed()
    folder = workspace.structured_dir
    names = sorted(entry.name for entry in os.scandir(folder) if entry.name.startswith("NCT") and entry.name.endswith(".json")) if folder.is_dir() else []
    for name in names:
        nct_id = name.removesuffix(".json")
        record = workspace.current_record(nct_id)
        if record is None or (since is not None and record.extraction.extracted_at.date() < since):
            continue
        if workspace.removed(nct_id) is not None:
            listed.removed.append(nct_id)
            continue
        if record.trial.overall_status == "WITHDRAWN":
            listed.withdrawn.append(nct_id)
        yield record


def choose_format(out: str, fmt: str | None, table: str) -> str:
    """The format asked for, else the one `out`'s extension names (`x.parquet`), else JSONL (CSV for a long table)."""
    fmt = fmt or _BY_SUFFIX.get(Path(out).suffix.lower()) or ("jsonl" if table == "records" else "csv")
    if table == "records" and fmt == "csv":
        raise InputError("records are nested: export them as jsonl, json or parquet, or a long table (--table) as csv")
    if table != "records" and fmt not in ("parquet", "csv"):
        raise InputError(f"the {table} table is exported as parquet or csv, not {fmt}")
    return fmt


def export(records: Iterable[EligibilityRecord], out: str, fmt: str, table: str = "records") -> int:
    """Write the records (or one long table of them) to `out` in `fmt`; `out` "-" is stdout. Streamed:
    one record at a time to a temporary file beside `out` (Parquet and CSV through DuckDB, in row
    groups), renamed into place at the end, so memory stays flat however many records. The count."""
    counted = _Counted(records)
    if fmt == "ctml":  # MatchMiner's documents, one per line, made one record at a time
        from extract.interop import ctml

        documents: Iterable[dict[str, Any]] = (ctml.build(record) for record in counted)
        columns = None
    elif table == "records":
        documents = (record.model_dump(mode="json") for record in counted)
        columns = duckdb_columns(EligibilityRecord)
    else:
        documents = long_rows(counted, table)
        columns = long_columns(table)
    folder = None if out == "-" else Path(out).resolve().parent
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".eligex-export-") as scratch:
        target = Path(scratch) / f"export.{fmt}"
        if fmt in ("jsonl", "json", "ctml"):
            _write_json(documents, target, "json" if fmt == "json" else "jsonl")
        else:
            _through_duckdb(documents, columns, fmt, target)
        if out == "-":
            with target.open("rb") as data:
                shutil.copyfileobj(data, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            with target.open("rb+") as data:
                os.fsync(data.fileno())
            os.replace(target, out)
    return counted.count


class _Counted:
    """An iterable that counts what went through it."""

    def __init__(self, items: Iterable[Any]):
        self.items, self.count = items, 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.count += 1
            yield item


def _write_json(documents: Iterable[dict[str, Any]], target: Path, fmt: str) -> None:
    with target.open("w", encoding="utf-8") as file:
        if fmt == "jsonl":
            for document in documents:
                file.write(json.dumps(document, ensure_ascii=False) + "\n")
            return
        separator = "["
        for document in documents:
            file.write(separator + json.dumps(document, ensure_ascii=False))
            separator = ",\n"
        file.write("[]\n" if separator == "[" else "]\n")


def write_schema(out: str, schema: dict) -> Path:
    path = Path(out).with_name(Path(out).name + ".schema.json")
    atomic_write(path, (json.dumps(schema, indent=2) + "\n").encode())
    return path


# -- long tables ------------------------------------------------------------------------------------


def long_columns(table: str) -> dict[str, str]:
    """nct_id, the item's own fields (a rule's, then its element's, numbered `rule`), then its evidence."""
    _, model, inner, inner_model = LONG_TABLES[table]
    columns = {"nct_id": "VARCHAR"}
    if inner:
        columns["rule"] = "BIGINT"  # the rule's position in the record: the tests of one rule are alternatives
    columns |= {k: v for k, v in duckdb_columns(model).items() if k not in ("evidence", inner)}
    if inner_model is not None:
        columns |= duckdb_columns(inner_model)
    return columns | duckdb_columns(Evidence)


def long_rows(records: Iterable[EligibilityRecord], table: str) -> Iterable[dict[str, Any]]:
    field, _, inner, _ = LONG_TABLES[table]
    for record in records:
        for number, item in enumerate(getattr(record.eligibility, field), 1):
            own = item.model_dump(mode="json", exclude={"evidence", inner} if inner else {"evidence"})
            evidence = item.evidence.model_dump(mode="json")
            head = {"nct_id": record.nct_id} | ({"rule": number} if inner else {})
            for element in getattr(item, inner) if inner else [None]:
                yield head | own | (element.model_dump(mode="json") if element else {}) | evidence


# -- types from the contract ------------------------------------------------------------------------


def duckdb_columns(model: type[BaseModel]) -> dict[str, str]:
    return {name: duckdb_type(info.annotation) for name, info in model.model_fields.items()}


def duckdb_type(annotation: Any) -> str:
    """The DuckDB type of a field of the contract: models are structs, lists lists, a dict keyed by a
    Literal a struct of those keys, a Literal the type of its values, Optional the type itself."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return duckdb_type(args[0])
    if origin in (typing.Union, types.UnionType):
        kinds = {duckdb_type(arg) for arg in args if arg is not type(None)}
        return kinds.pop() if len(kinds) == 1 else "VARCHAR"
    if origin is typing.Literal:
        return _SCALARS[type(args[0])]
    if origin is list:
        return duckdb_type(args[0]) + "[]"
    if origin is dict:
        keys, value = args
        return "STRUCT(" + ", ".join(f'"{key}" {duckdb_type(value)}' for key in typing.get_args(keys)) + ")"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "STRUCT(" + ", ".join(f'"{name}" {kind}' for name, kind in duckdb_columns(annotation).items()) + ")"
    return _SCALARS[annotation]


# Parquet rows per row group: a reader (and the writer) holds one group at a time.
ROW_GROUP_SIZE = 2048


def _through_duckdb(documents: Iterable[dict[str, Any]], columns: dict[str, str], fmt: str, target: Path) -> None:
    import duckdb

    source = target.with_name("rows.jsonl")
    with source.open("w", encoding="utf-8") as rows:
        written = 0
        for document in documents:
            rows.write(json.dumps(document) + "\n")
            written += 1
    with duckdb.connect(config={"memory_limit": "512MB", "threads": 2}) as db:
        db.execute("SET enable_progress_bar = false")  # stdout may be the export itself
        db.execute(f"SET temp_directory = '{_sql_path(target.parent)}'")  # spills stay beside the export
        if written:
            spec = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()) + "}"
            query = (f"SELECT * FROM read_json('{_sql_path(source)}', format='newline_delimited', "
                     f"columns={spec}, maximum_object_size=16777216)")  # fmt: skip
        else:
            query = "SELECT " + ", ".join(f'NULL::{kind} AS "{name}"' for name, kind in columns.items()) + " WHERE false"
        options = f"FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_SIZE}" if fmt == "parquet" else "FORMAT csv, HEADER true"
        db.execute(f"COPY ({query}) TO '{_sql_path(target)}' ({options})")
    source.unlink()


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
