"""The extraction on a batch engine: examples/dask_extract.py (Dask, local processes) writes the
records `eligex extract` writes. Needs the `dask` extra (requirements.lock installs it, so CI runs
this); without it the test is skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from test_robustness import eligex, environment

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "dask_extract.py"
SAMPLE = ROOT / "examples" / "trials" / "ctgov-2026-sample.jsonl"


def without_time(document: str) -> dict:
    record = json.loads(document)
    del record["extraction"]["extracted_at"]
    return record


def test_dask_extracts_stored_trials_from_parquet_as_eligex_does(tmp_path):
    pytest.importorskip("dask.dataframe", reason="the dask extra is not installed")
    root = tmp_path / "ws"
    env = environment(root)
    assert eligex(env, "import", str(SAMPLE)).returncode == 0
    assert eligex(env, "extract", "--all", "--backend", "rules", "--workers", "1").returncode == 0
    trials = tmp_path / "trials.parquet"
    with duckdb.connect(str(root / "eligex.duckdb")) as db:
        db.execute(f"COPY (SELECT nct_id, trial FROM trials ORDER BY nct_id) TO '{trials}'")

    out = tmp_path / "records.parquet"
    run = subprocess.run([sys.executable, str(EXAMPLE), str(trials), str(out), "--partitions", "3"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "extracted 188 trials" in run.stderr

    with duckdb.connect() as db:
        rows = db.execute(f"SELECT nct_id, record, error FROM read_parquet('{out}/*.parquet')").fetchall()
    assert len(rows) == 188 and all(error is None for _, _, error in rows)
    for nct_id, record, _ in rows:
        served = (root / "structured" / f"{nct_id}.json").read_text()
        assert without_time(record) == without_time(served)
