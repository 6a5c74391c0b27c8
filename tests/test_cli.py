"""The extract -> show -> runs path on the command line, with the embedded default (no API key)."""

from __future__ import annotations

import json

import pytest

from extract.rules import extract_eligibility

from conftest import SHARED_DATA, make_criterion, run


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("ELIGEX_WORKSPACE", str(tmp_path))
    run("import", str(SHARED_DATA / "ctgov-v2" / "NCT05594173.json"))
    return tmp_path



def test_without_a_key_extract_runs_the_rules_backend_and_says_so(workspace):
    result = run("extract", "--all")
    assert result.exit_code == 0
    assert "backend rules, run " in result.stderr
    assert "1 extracted, 0 up to date, 0 failed" in result.stderr
    assert "0 extracted, 1 up to date, 0 failed" in run("extract", "NCT05594173").stderr


def test_show_prints_the_record_or_one_part_of_it(workspace):
    run("extract", "--all")
    record = json.loads(run("show", "NCT05594173", "--json").stdout)
    assert record["nct_id"] == "NCT05594173" and record["extraction"]["backend"] == "rules"
    assert json.loads(run("show", "NCT05594173", "--part", "criteria").stdout) == record["criteria"]


def test_runs_lists_the_runs_newest_first(workspace):
    run("extract", "--all")
    run("extract", "--all", "--force")
    runs = [json.loads(line) for line in run("runs", "--json").stdout.splitlines()]
    assert len(runs) == 2 and runs[0]["started_at"] >= runs[1]["started_at"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["extract"], "name trials (NCT ids) or pass --all, not both"),
        (["extract", "NCT1"], "not an NCT id (NCT + 8 digits): NCT1"),
        (["extract", "NCT00000001"], "not in the workspace: NCT00000001"),
        (["show", "NCT00000001"], "no structured record for NCT00000001"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(workspace, args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}" + result.stderr.split(message, 1)[1]
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_fact_stated_twice_is_kept_once_on_its_first_statement():
    criteria = [
        make_criterion("HER2-positive metastatic breast cancer", number=1),
        make_criterion("HER2-positive is defined as HER2 3+ by IHC", number=2),
    ]
    rules = extract_eligibility(criteria)["biomarkers"]
    plain = [r for r in rules if r["any_of"] == [{"marker": "ERBB2", "status": "positive", "alteration": None,
                                                   "variant": None, "method": None, "value": None}]]  # fmt: skip
    assert len(plain) == 1 and plain[0]["evidence"]["criterion_id"] == "inc-1"


def test_refresh_with_the_rules_backend_is_a_one_line_usage_error(workspace):
    for arguments in (["--backend", "rules"], []):  # named, or the default without a key
        result = run("extract", "--all", "--refresh", *arguments)
        assert result.exit_code == 2
        assert [line for line in result.stderr.splitlines() if line] == [
            "Error: --refresh asks the LLM again instead of its cache: the rules backend has no cache "
            "(use --force to extract again)"]  # fmt: skip
