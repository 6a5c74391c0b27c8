"""Output a person and a program can use: typed exports and long tables, tables or --json, progress
and retries said on stderr, and the cost said before the first paid call."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ctgov_server import ctgov  # noqa: F401  (a fixture)
from openai_server import OpenAIServer, error, first_criterion_answer

from extract.export import long_columns
from extract.store import Workspace
from schemas import EligibilityRecord

from conftest import SHARED_DATA, run, use_llm_server


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Every ctgov-v2 record, extracted by the rules backend."""
    root = tmp_path_factory.mktemp("output")
    run("--workspace", str(root), "import", str(SHARED_DATA / "ctgov-v2"))
    assert run("--workspace", str(root), "extract", "--all", "--backend", "rules").exit_code == 0
    return root


def null_typed(schema_type: pa.DataType, path: str = "") -> list[str]:
    """Every column (at any depth) that Parquet only knows as NULL."""
    if pa.types.is_null(schema_type):
        return [path]
    if pa.types.is_struct(schema_type):
        return [p for f in schema_type for p in null_typed(f.type, f"{path}.{f.name}")]
    if pa.types.is_list(schema_type) or pa.types.is_large_list(schema_type):
        return null_typed(schema_type.value_type, f"{path}[]")
    return []


def test_an_empty_export_has_every_column_of_the_contract_typed(tmp_path):
    out = tmp_path / "empty.parquet"
    result = run("--workspace", str(tmp_path / "ws"), "export", "--out", str(out))  # the extension picks Parquet
    assert result.exit_code == 0, result.stderr
    schema = pq.read_schema(out)
    assert schema.names == list(EligibilityRecord.model_fields)
    assert null_typed(schema.field("eligibility").type) == [] and pq.read_table(out).num_rows == 0
    assert schema.field("extraction").type.field("extracted_at").type == pa.timestamp("us", tz="UTC")


def test_an_all_rules_export_has_no_column_typed_null(extracted, tmp_path):
    out = tmp_path / "records.parquet"
    assert run("--workspace", str(extracted), "export", "--out", str(out)).exit_code == 0
    table = pq.read_table(out)
    assert table.num_rows == 64
    assert [p for f in table.schema for p in null_typed(f.type, f.name)] == []
    run("--workspace", str(tmp_path / "none"), "export", "--out", str(tmp_path / "empty.parquet"))
    assert pq.read_schema(tmp_path / "empty.parquet") == table.schema  # the same columns, with or without data


def test_dash_is_stdout(extracted):
    result = run("--workspace", str(extracted), "export", "--out", "-")
    assert result.exit_code == 0 and "exported 64 records to stdout as jsonl" in result.stderr
    records = [EligibilityRecord.model_validate_json(line) for line in result.stdout.splitlines()]
    assert len(records) == 64


@pytest.mark.parametrize("table, field", [("biomarkers", "biomarkers"), ("prior_therapies", "prior_therapies"), ("labs", "labs")])
def test_long_tables_have_one_row_per_item_as_parquet_and_csv(extracted, tmp_path, table, field):
    records = [Workspace(extracted).current_record(p.stem) for p in sorted((extracted / "structured").glob("NCT*.json"))]
    items = [(r.nct_id, item) for r in records for item in getattr(r.eligibility, field)]
    expected = sum(len(item.any_of) for _, item in items) if table == "biomarkers" else len(items)
    assert expected > 3

    parquet = tmp_path / f"{table}.parquet"
    assert run("--workspace", str(extracted), "export", "--table", table, "--out", str(parquet)).exit_code == 0
    frame = pq.read_table(parquet)
    assert frame.num_rows == expected and frame.schema.names == list(long_columns(table))
    assert [p for f in frame.schema for p in null_typed(f.type, f.name)] == []
    first_id, first = items[0]
    row = frame.slice(0, 1).to_pylist()[0]
    assert (row["nct_id"], row["quote"], row["start"]) == (first_id, first.evidence.quote, first.evidence.start)

    result = run("--workspace", str(extracted), "export", "--table", table, "--out", "-", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == expected and list(rows[0]) == list(long_columns(table))
    if table == "biomarkers":  # the tests of one rule share its number: they are alternatives
        assert len({(r["nct_id"], r["rule"]) for r in rows}) == len(items)


def test_a_nested_csv_is_refused_with_a_clear_line(extracted, tmp_path):
    result = run("--workspace", str(extracted), "export", "--out", str(tmp_path / "x.csv"))
    assert result.exit_code == 2 and "records are nested" in result.stderr


# -- tables or --json -----------------------------------------------------------------------------------


def test_show_runs_and_criteria_print_tables_or_json(extracted):
    root = str(extracted)
    shown = run("--workspace", root, "show", "NCT05594173").stdout
    record = json.loads(run("--workspace", root, "show", "NCT05594173", "--json").stdout)
    assert shown.startswith("NCT05594173") and "field" in shown and "quote" in shown
    for item in record["eligibility"]["labs"] + record["eligibility"]["performance_status"]:
        assert item["evidence"]["quote"][:30] in shown
    criteria = run("--workspace", root, "criteria", "NCT05594173").stdout
    as_json = [json.loads(line) for line in run("--workspace", root, "criteria", "NCT05594173", "--json").stdout.splitlines()]
    assert as_json and all(c["id"] in criteria for c in as_json)
    runs_table = run("--workspace", root, "runs").stdout
    [listed] = [json.loads(line) for line in run("--workspace", root, "runs", "--json").stdout.splitlines()]
    assert listed["run_id"] in runs_table and "finished" in runs_table
    assert listed["summary"]["extracted"] == 64 and isinstance(listed["summary"]["failures"], dict)
    for key in ("started_at", "finished_at"):
        assert "T" in listed[key] and datetime.fromisoformat(listed[key]).tzinfo is not None


# -- progress, retries, cost -----------------------------------------------------------------------------


def test_progress_is_said_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("ELIGEX_PROGRESS_SECONDS", "0")
    root = str(tmp_path / "ws")
    imported = run("--workspace", root, "import", str(SHARED_DATA / "ctgov-v2"))
    assert "importing: 64 of 64 after" in imported.stderr
    extracted = run("--workspace", root, "extract", "--all", "--backend", "rules")
    lines = [line for line in extracted.stderr.splitlines() if line.startswith("extracting (rules): ")]
    assert lines[-1].startswith("extracting (rules): 64 of 64 after") and len(lines) == 64


def test_fetch_retries_are_said(ctgov, tmp_path, monkeypatch):  # noqa: F811
    ctgov.faults.extend(["500", None])
    ctgov.retry_after = "0"
    monkeypatch.setenv("ELIGEX_CTGOV_URL", ctgov.url)
    result = run("--workspace", str(tmp_path / "ws"), "fetch", "--rate", "60000", "--nct", "NCT05594173")
    assert result.exit_code == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("warning: retrying")]
    assert line.startswith("warning: retrying GET /studies/NCT05594173 in ") and "(attempt 2)" in line


def test_the_llm_backend_says_model_and_cost_before_the_first_call_and_its_retries(tmp_path, monkeypatch):
    # and the estimate's progress: the hybrid plans each trial (the rules' reading of every criterion's
    # spans) before the first call, minutes for 10,000 trials, which a curator sees pass
    root = str(tmp_path / "ws")
    run("--workspace", root, "import", str(SHARED_DATA / "ctgov-v2" / "NCT05594173.json"))
    server = OpenAIServer(respond=first_criterion_answer)
    server.start()
    try:
        use_llm_server(monkeypatch, tmp_path, server.base_url, "sk-test-not-secret", ELIGEX_MODEL="test-model")
        server.script(error(500, "upstream broke", retry_after="0"))
        result = run("--workspace", root, "extract", "--all", "--backend", "openai")
        again = run("--workspace", root, "extract", "--all", "--backend", "openai")
        monkeypatch.setenv("ELIGEX_PROGRESS_SECONDS", "0")
        hybrid = run("--workspace", root, "extract", "--all", "--backend", "hybrid")
    finally:
        server.stop()
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    [announced] = [i for i, line in enumerate(lines) if line.startswith("backend openai, model test-model: ")]
    [retried] = [i for i, line in enumerate(lines) if line.startswith("warning: retrying the LLM request (test-model)")]
    assert announced < retried and "upstream broke" in lines[retried]
    assert "1 requests for 1 trials (0 answered from the cache, 0 up to date); estimated cost about $0.0" in lines[announced]
    assert "0 requests for 0 trials (0 answered from the cache, 1 up to date)" in again.stderr
    lines = hybrid.stderr.splitlines()
    [estimated] = [i for i, line in enumerate(lines) if line.startswith("estimating (hybrid): 1 of 1 after ")]
    [announced] = [i for i, line in enumerate(lines) if line.startswith("backend hybrid, model test-model: ")]
    assert estimated < announced
