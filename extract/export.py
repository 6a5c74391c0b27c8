"""`eligex export`: the current records for downstream apps, as JSONL, JSON or Parquet.

The current record of a trial is `structured/<NCT>.json`, the latest successful extraction. The
JSON Schema is written beside the export so a reader knows exactly what it holds.
"""

from __future__ import annotations

import json
import tempfile
from datetime import date
from pathlib import Path

from extract.store import Workspace, atomic_write
from schemas import EligibilityRecord

FORMATS = ("jsonl", "json", "parquet")


def current_records(workspace: Workspace, since: date | None = None) -> list[EligibilityRecord]:
    """Every current record, in id order; with `since`, only those extracted on or after that day."""
    records = []
    for path in sorted(workspace.structured_dir.glob("NCT*.json")):
        record = workspace.current_record(path.stem)
        if record is not None and (since is None or record.extraction.extracted_at.date() >= since):
            records.append(record)
    return records


def export(records: list[EligibilityRecord], out: Path, fmt: str, schema: dict) -> Path:
    """Write the records to `out` in `fmt` and the JSON Schema beside it; returns the schema's path."""
    lines = [record.model_dump_json() for record in records]
    if fmt == "jsonl":
        atomic_write(out, "".join(line + "\n" for line in lines).encode())
    elif fmt == "json":
        atomic_write(out, ("[" + ",\n".join(lines) + "]\n").encode())
    else:
        _parquet(lines, out)
    schema_path = out.with_name(out.name + ".schema.json")
    atomic_write(schema_path, (json.dumps(schema, indent=2) + "\n").encode())
    return schema_path


def _parquet(lines: list[str], out: Path) -> None:
    """Nested columns (structs and lists) as the contract nests them, typed by DuckDB from the JSON."""
    import duckdb

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        source, target = Path(scratch) / "records.jsonl", Path(scratch) / "records.parquet"
        source.write_text("".join(line + "\n" for line in lines))
        with duckdb.connect() as db:
            if lines:
                query = f"SELECT * FROM read_json('{_sql_path(source)}', format='newline_delimited', sample_size=-1, maximum_object_size=67108864)"
            else:
                query = "SELECT NULL::VARCHAR AS nct_id WHERE false"
            db.execute(f"COPY ({query}) TO '{_sql_path(target)}' (FORMAT parquet)")
        target.replace(out)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
