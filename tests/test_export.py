"""`eligex export`: what downstream apps read, in every format, with the schema beside it."""

from __future__ import annotations

import json
from datetime import date, timedelta

import duckdb
import pandas
import pytest
from click.testing import CliRunner

from cli import main
from extract.export import current_records
from extract.store import Workspace
from schemas import EligibilityRecord

from conftest import SHARED_DATA


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    runner = CliRunner()
    runner.invoke(main, ["--workspace", str(root), "import", str(SHARED_DATA / "ctgov-v2")], catch_exceptions=False)
    result = runner.invoke(main, ["--workspace", str(root), "extract", "--all", "--backend", "rules"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return root


def export(root, *args):
    return CliRunner().invoke(main, ["--workspace", str(root), "export", *args], catch_exceptions=False)


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_json_exports_hold_valid_records_and_the_schema(workspace, tmp_path, fmt):
    out = tmp_path / f"records.{fmt}"
    result = export(workspace, "--format", fmt, "--out", str(out))
    assert result.exit_code == 0 and "exported 64 records" in result.stderr
    text = out.read_text()
    documents = [json.loads(line) for line in text.splitlines()] if fmt == "jsonl" else json.loads(text)
    records = [EligibilityRecord.model_validate(document) for document in documents]
    assert len(records) == 64 and records == sorted(records, key=lambda r: r.nct_id)
    assert json.loads((tmp_path / f"records.{fmt}.schema.json").read_text())["title"] == "EligibilityRecord"


def test_parquet_keeps_the_nesting_for_duckdb_and_pandas(workspace, tmp_path):
    out = tmp_path / "records.parquet"
    assert export(workspace, "--format", "parquet", "--out", str(out)).exit_code == 0
    frame = pandas.read_parquet(out)
    assert len(frame) == 64 and frame["schema_version"].unique().tolist() == ["1"]
    [row] = duckdb.sql(f"SELECT nct_id, len(criteria), eligibility.sex FROM '{out}' WHERE nct_id = 'NCT05594173'").fetchall()
    expected = Workspace(workspace).current_record("NCT05594173")
    assert row == ("NCT05594173", len(expected.criteria), expected.eligibility.sex)


def test_since_filters_by_extraction_date(workspace, tmp_path):
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    result = export(workspace, "--format", "jsonl", "--out", str(tmp_path / "none.jsonl"), "--since", tomorrow)
    assert "exported 0 records" in result.stderr and (tmp_path / "none.jsonl").read_text() == ""
    assert len(current_records(Workspace(workspace), date.today())) == 64


def test_an_empty_parquet_export_is_still_readable(tmp_path):
    out = tmp_path / "empty.parquet"
    assert export(tmp_path / "ws", "--format", "parquet", "--out", str(out)).exit_code == 0
    assert len(pandas.read_parquet(out)) == 0


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_reader_that_stops_early_is_no_traceback(workspace, fmt):
    """`eligex export --out - | head -1`: the reader closes the pipe; eligex stops quietly, exit 141
    (128 + SIGPIPE, as Unix tools report it), and what it says on stderr is no traceback."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "cli", "--workspace", str(workspace), "export", "--format", fmt, "--out", "-"]
    exporter = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = exporter.stdout.readline()
    exporter.stdout.close()  # as `head -1` does after its line
    stderr = exporter.stderr.read().decode()
    assert first and exporter.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
