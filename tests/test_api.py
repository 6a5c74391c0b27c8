"""The documented Python API (`import eligex`), on real records, as a downstream app would use it."""

from __future__ import annotations

import json

import pytest
from openai_server import openai_server, tool_call  # noqa: F401 (a fixture)
from pydantic import ValidationError
from test_llm import ANSWER, API_KEY, TRIAL

import eligex
from conftest import run, use_llm_server
from extract.evaluate import harness

GOLD_TRIAL = "NCT05879978"  # a dev gold trial in the API v2 data: ECOG 0-1


@pytest.fixture(scope="module")
def v2_record(shared_data) -> bytes:
    return (shared_data / "ctgov-v2" / f"{GOLD_TRIAL}.json").read_bytes()


def test_parse_segment_extract_validate_and_score_a_registry_record(v2_record):
    trial = eligex.parse_record(v2_record, f"{GOLD_TRIAL}.json")
    assert trial.nct_id == GOLD_TRIAL and trial.eligibility_text

    criteria = eligex.segment(trial.eligibility_text)
    assert criteria[0].id == "inc-1" and all(trial.eligibility_text[c.start : c.end] == c.text for c in criteria)

    record = eligex.extract(trial)  # the rules backend
    assert record.extraction.backend == "rules" and record.criteria == criteria
    assert [(p.scale, p.min, p.max) for p in record.eligibility.performance_status] == [("ECOG", 0, 1)]
    assert eligex.validate(record.model_dump_json()) == record == eligex.validate(record.model_dump(mode="json"))

    gold = eligex.load_gold(harness.GOLD_DIR / f"{GOLD_TRIAL}.json")
    scored = eligex.score(record, gold)
    assert scored["nct_id"] == GOLD_TRIAL and scored["fields"]["performance_status"]["tp"] == 1
    assert scored == eligex.score(record, gold[GOLD_TRIAL])  # the mapping or the one gold file


def test_evaluate_many_records_against_a_gold_folder(v2_record, tmp_path):
    folder = tmp_path / "gold"
    folder.mkdir()
    (folder / f"{GOLD_TRIAL}.json").write_bytes((harness.GOLD_DIR / f"{GOLD_TRIAL}.json").read_bytes())
    (folder / "NCT06450314.json").write_bytes((harness.GOLD_DIR / "NCT06450314.json").read_bytes())
    record = eligex.extract(eligex.parse_record(v2_record, "study.json"))

    metrics = eligex.evaluate([record], eligex.load_gold(folder), resamples=20)

    assert metrics["n_trials"] == 2 and metrics["not_extracted"] == ["NCT06450314"]
    assert 0 < metrics["micro"]["f1"] < 1


def test_bad_input_is_an_input_error_and_a_broken_record_a_validation_error(v2_record, tmp_path):
    with pytest.raises(eligex.InputError, match="bad.json, record 1: malformed JSON"):
        eligex.parse_record(b'{"protocolSection": ', "bad.json")
    page = json.dumps({"studies": [json.loads(v2_record)] * 2})
    with pytest.raises(eligex.InputError, match="holds 2 trials, not one"):
        eligex.parse_record(page, "page.json")
    assert len(eligex.parse_records(page, "page.json")) == 2
    record = eligex.extract(eligex.parse_record(json.loads(v2_record)))
    broken = record.model_dump(mode="json")
    broken["criteria"][0]["start"] += 1
    with pytest.raises(ValidationError, match="does not match eligibility_text"):
        eligex.validate(broken)
    with pytest.raises(eligex.InputError, match="unknown backend"):
        eligex.extract(record, backend="gpt")  # type: ignore[arg-type]
    assert eligex.json_schema()["title"] == "EligibilityRecord"


def test_extract_with_the_llm_backend(openai_server, monkeypatch, tmp_path, shared_data):
    use_llm_server(monkeypatch, tmp_path, openai_server.base_url, API_KEY, ELIGEX_MODEL="test-model")
    openai_server.script(tool_call(ANSWER))
    rows = (shared_data / "ctgov-2026" / "trials.jsonl").read_text(encoding="utf-8").splitlines()
    [row] = [line for line in rows if f'"{TRIAL}"' in line[:40]]
    trial = eligex.parse_record(row, "trials.jsonl")

    record = eligex.extract(trial, backend="openai")

    assert (record.extraction.backend, record.extraction.model) == ("openai", "test-model")
    assert [p.scale for p in record.eligibility.performance_status] == ["ECOG"] and openai_server.count == 1


def test_eval_with_a_gold_folder_refuses_a_split_and_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    both = run("--workspace", str(tmp_path / "ws"), "eval", "--gold", str(harness.GOLD_DIR), "--split", "dev")
    assert both.exit_code == 2 and "with --gold every file in the folder is scored" in both.stderr
    empty = run("--workspace", str(tmp_path / "ws"), "eval", "--gold", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "no gold files" in empty.stderr
