"""`eligex batch` against a real local Batch API server (files, batches, scripted lines), through the workspace."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from openai_server import BatchServer, batch_server, error, expired_line, tool_call  # noqa: F401 (a fixture)
from test_llm import ANSWER, API_KEY, INVENTED, OTHER, OTHER_ANSWER, TRIAL, rows, workspace  # noqa: F401 (fixtures)

from cli import main
from extract import batch
from extract.errors import InputError, UpstreamError
from extract.cache import CachedBackend
from extract.llm import OpenAIBackend, load_prompt
from extract.pipeline import run_extraction
from extract.sources import flat_export_row
from extract.store import Workspace
from extract.text import segment

from conftest import use_llm_server

USAGE = (1000, 200)


@pytest.fixture
def environment(monkeypatch, tmp_path, batch_server):
    use_llm_server(monkeypatch, tmp_path, batch_server.base_url, API_KEY, ELIGEX_MODEL="test-model")


def llm(workspace: Workspace) -> OpenAIBackend:
    return OpenAIBackend.from_environment()  # a new client per event loop, as per process


def submit(workspace: Workspace, *nct_ids: str, **options):
    trials = list(workspace.trials(list(nct_ids or (TRIAL, OTHER))))
    return asyncio.run(batch.submit(workspace, llm(workspace), trials, **options))


def finish(workspace: Workspace, run_id: str):
    """Poll until the batch is done (the server moves one state per poll), then collect."""
    states = [asyncio.run(batch.poll(workspace, llm(workspace).client, run_id))["state"]]
    while states[-1] not in batch.FINISHED and len(states) < 3:
        states.append(asyncio.run(batch.poll(workspace, llm(workspace).client, run_id))["state"])
    assert states[-1] in batch.FINISHED, states
    return asyncio.run(batch.collect(workspace, llm(workspace), batch.find(workspace, run_id)))


def invalid(answer: dict) -> dict:
    return dict(answer, performance_status=[dict(answer["performance_status"][0], min=2, max=1)])


@pytest.mark.usefixtures("environment")
def test_submit_writes_deterministic_jsonl_with_the_online_prompt(batch_server, workspace, tmp_path, rows):
    first = submit(workspace, stop_after="write")
    again = Workspace(tmp_path / "again")
    for row in rows.values():
        again.store_trial(flat_export_row(row, datetime.now(timezone.utc)))
    second = submit(again, stop_after="write")

    text = (batch.batch_dir(workspace, first["run_id"]) / "input.jsonl").read_bytes()
    assert text == (batch.batch_dir(again, second["run_id"]) / "input.jsonl").read_bytes()
    lines = [json.loads(line) for line in text.decode().splitlines()]
    version = load_prompt().version
    assert [line["custom_id"] for line in lines] == [f"{OTHER}:{version}:0", f"{TRIAL}:{version}:0"]
    body = lines[1]["body"]
    assert (lines[1]["method"], lines[1]["url"]) == ("POST", "/v1/chat/completions")
    assert body["max_tokens"] == 4096 and body["temperature"] == 0 and body["tools"][0]["function"]["name"] == "ExtractedEligibility"
    assert first["state"] == "written" and batch_server.files == {} and batch_server.batches == {}
    again.close()

    # One request builder: the line is the very request `extract` sends first for the trial.
    batch_server.script(tool_call(ANSWER))
    trials = list(workspace.trials([TRIAL]))
    asyncio.run(run_extraction(workspace, CachedBackend(llm(workspace), workspace), trials))
    [online] = batch_server.requests
    assert body == online


@pytest.mark.usefixtures("environment")
def test_the_full_cycle_on_the_command_line(batch_server, workspace):
    batch_server.script(tool_call(ANSWER, usage=USAGE, when=TRIAL),
                        tool_call(OTHER_ANSWER, usage=USAGE, when=OTHER))  # fmt: skip
    runner = CliRunner()
    base = ["--workspace", str(workspace.root), "batch"]
    workspace.close()

    submitted = runner.invoke(main, base + ["submit", TRIAL, OTHER])
    assert submitted.exit_code == 0, submitted.output
    report = json.loads(submitted.stdout)
    assert report["state"] == "validating" and report["requests"] == 2 and len(batch_server.batches) == 1
    [created] = batch_server.batches.values()
    assert created["metadata"] == {"eligex_run": report["run_id"]}
    assert batch_server.files[created["input_file_id"]].decode().count("\n") == 2

    waited = runner.invoke(main, base + ["status", report["batch_id"], "--wait", "--interval", "0.01"])
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.stdout)["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    assert "in_progress" in waited.stderr and API_KEY not in waited.output

    collected = runner.invoke(main, base + ["collect"])
    assert collected.exit_code == 0, collected.output
    assert json.loads(collected.stdout)["extracted"] == 2
    again = runner.invoke(main, base + ["collect", report["run_id"]])
    assert again.exit_code == 0 and "collected already" in again.stderr

    record = workspace.current_record(TRIAL)
    assert [(p.scale, p.min, p.max) for p in record.eligibility.performance_status] == [("ECOG", 0, 1)]
    ecog = record.eligibility.performance_status[0].evidence
    assert record.eligibility_text[ecog.start : ecog.end] == ecog.quote and record.extraction.ungrounded_items == 0
    extraction = record.extraction
    assert (extraction.backend, extraction.model, extraction.input_tokens, extraction.output_tokens) == (
        "openai", "test-model", *USAGE)  # fmt: skip
    assert extraction.cost_usd == pytest.approx(0.5 * (1000 * 1.0 + 200 * 2.0) / 1e6)  # the batch price
    assert workspace.current_record(OTHER).eligibility.min_age_years == 70
    saved = batch.batch_dir(workspace, report["run_id"])
    assert (saved / "output.jsonl").read_text().count(TRIAL) >= 1 and not (saved / "errors.jsonl").exists()
    assert workspace.db.execute("SELECT nct_id, status FROM extractions WHERE run_id = ? ORDER BY nct_id",
                                [report["run_id"]]).fetchall() == [(OTHER, "ok"), (TRIAL, "ok")]  # fmt: skip

    # The cache is filled: an online run over the same trials asks nothing.
    sent = batch_server.count
    trials = list(workspace.trials([TRIAL, OTHER]))
    summary = asyncio.run(run_extraction(workspace, CachedBackend(llm(workspace), workspace), trials, force=True))
    assert summary.extracted == 2 and batch_server.count == sent
    assert workspace.current_record(TRIAL).eligibility == record.eligibility


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (error(500, "the model is overloaded", when=TRIAL), "UpstreamError: HTTP 500 the model is overloaded"),
        (tool_call(invalid(ANSWER), when=TRIAL),
         "UpstreamError: no valid answer after 1 attempt(s): performance_status.0: Value error, performance status min is above max"),
        (tool_call({"stage": "not an object"}, when=TRIAL), "UpstreamError: no valid answer after 1 attempt(s): stage"),
        (tool_call('{"cancer_types": [{"name": "colo', when=TRIAL),
         "UpstreamError: the model's answer was cut off at its output token limit"),
    ],
    ids=["error-file", "contract-validator", "wrong-shape", "cut-off"],
)
def test_a_failed_line_fails_its_trial_and_the_rest_is_stored(batch_server, workspace, reply, reason):
    batch_server.script(reply, tool_call(OTHER_ANSWER, when=OTHER))
    report = submit(workspace)

    summary = finish(workspace, report["run_id"])

    assert summary.extracted == 1 and list(summary.failures) == [TRIAL]
    assert summary.failures[TRIAL].startswith(reason) and "\n" not in summary.failures[TRIAL]
    stored = workspace.db.execute("SELECT status, error FROM extractions WHERE nct_id = ?", [TRIAL]).fetchone()
    assert stored == ("error", summary.failures[TRIAL])
    assert workspace.current_record(OTHER).eligibility.min_age_years == 70
    assert workspace.current_record(TRIAL) is None
    if reply.status != 200:
        assert (batch.batch_dir(workspace, report["run_id"]) / "errors.jsonl").exists()


@pytest.mark.usefixtures("environment")
def test_a_line_of_the_output_file_cut_short_fails_its_trial_and_the_rest_is_stored(batch_server, workspace):
    batch_server.script(tool_call(OTHER_ANSWER, when=OTHER), tool_call(ANSWER, usage=USAGE, when=TRIAL))
    batch_server.cut_output_lines = {0: 300}  # OTHER's line (input order) stops mid-answer
    report = submit(workspace)

    summary = finish(workspace, report["run_id"])

    assert summary.extracted == 1 and list(summary.failures) == [OTHER]
    assert summary.failures[OTHER].startswith("UpstreamError: line 1 of output.jsonl is not JSON (cut short?)")
    assert workspace.current_record(TRIAL).extraction.input_tokens == USAGE[0]
    assert workspace.current_record(OTHER) is None
    assert batch.find(workspace, report["run_id"])["collected_at"] is not None  # collected once, for good


@pytest.mark.usefixtures("environment")
def test_a_line_cut_before_its_custom_id_is_named_in_the_reason_of_the_trial_it_leaves_without_a_result(
    batch_server, workspace
):
    batch_server.script(tool_call(OTHER_ANSWER, when=OTHER), tool_call(ANSWER, when=TRIAL))
    batch_server.cut_output_lines = {1: 12}  # '{"id": "batc': whose line it was cannot be known
    report = submit(workspace)

    summary = finish(workspace, report["run_id"])

    assert summary.extracted == 1
    assert summary.failures == {TRIAL: "UpstreamError: no result in the batch output "
                                       "(1 line of output.jsonl could not be read: line 2)"}  # fmt: skip


@pytest.mark.usefixtures("environment")
def test_a_billed_line_that_fails_records_its_tokens_at_the_batch_price(batch_server, workspace):
    batch_server.script(tool_call(invalid(ANSWER), usage=USAGE, when=TRIAL), tool_call(OTHER_ANSWER, when=OTHER))
    report = submit(workspace)

    summary = finish(workspace, report["run_id"])

    assert list(summary.failures) == [TRIAL]
    stored = workspace.db.execute("SELECT input_tokens, output_tokens, cost_usd FROM extractions WHERE nct_id = ?",
                                  [TRIAL]).fetchone()  # fmt: skip
    assert stored == (*USAGE, pytest.approx(0.5 * (1000 * 1.0 + 200 * 2.0) / 1e6))


def test_a_batch_api_dripping_its_answers_meets_the_deadline(batch_server, workspace, monkeypatch, tmp_path):
    use_llm_server(monkeypatch, tmp_path, batch_server.base_url, API_KEY, ELIGEX_MODEL="test-model",
                   ELIGEX_LLM_TIMEOUT="0.5")  # fmt: skip
    report = submit(workspace)
    batch_server.drip = 0.1  # every read within 0.5 s, the whole answer in a minute

    started = time.monotonic()
    with pytest.raises(UpstreamError, match=r"Batch API batch status .* no complete answer within 0.5 s"):
        asyncio.run(batch.poll(workspace, llm(workspace).client, report["run_id"]))
    assert time.monotonic() - started < 3


@pytest.mark.usefixtures("environment")
def test_an_expired_batch_keeps_what_completed_and_reports_the_rest(batch_server, workspace):
    batch_server.script(tool_call(ANSWER, when=TRIAL), expired_line(when=OTHER))
    report = submit(workspace)

    summary = finish(workspace, report["run_id"])

    assert batch.find(workspace, report["batch_id"])["state"] == "expired"
    assert summary.extracted == 1 and summary.failures == {OTHER: "UpstreamError: batch expired"}
    assert workspace.current_record(TRIAL) is not None
    runner = CliRunner()  # the same through the CLI, on a second expired batch: exit 1, the trial named
    batch_server.script(expired_line(when=OTHER))
    again = submit(workspace, OTHER)
    asyncio.run(batch.poll(workspace, llm(workspace).client, again["run_id"]))
    asyncio.run(batch.poll(workspace, llm(workspace).client, again["run_id"]))
    workspace.close()
    result = runner.invoke(main, ["--workspace", str(workspace.root), "batch", "collect", again["batch_id"]])
    assert result.exit_code == 1 and f"failed: {OTHER}: UpstreamError: batch expired" in result.stderr


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize("crash", ["write", "upload", "create"])
def test_submit_resumes_after_a_crash_and_creates_one_batch(batch_server, workspace, crash):
    first = submit(workspace, stop_after="upload" if crash == "create" else crash)
    assert first["batch_id"] is None and batch_server.batches == {}
    if crash == "create":  # the batch was made, but the crash came before it was recorded
        row = batch.find(workspace, first["run_id"])
        create = llm(workspace).client.batches.create(
            input_file_id=row["input_file_id"], endpoint=batch.ENDPOINT, completion_window="24h")
        asyncio.run(create)

    resumed = submit(workspace)
    repeated = submit(workspace)  # already submitted: reported, not sent again

    assert resumed["run_id"] == first["run_id"] == repeated["run_id"]
    assert resumed["batch_id"] == repeated["batch_id"] and len(batch_server.batches) == 1
    assert len(batch_server.files) == 1  # uploaded once
    [uploaded] = batch_server.files.values()
    assert uploaded == (batch.batch_dir(workspace, first["run_id"]) / "input.jsonl").read_bytes()
    assert len(workspace.runs()) == 1
    workspace.close()
    status = CliRunner().invoke(main, ["--workspace", str(workspace.root), "batch", "status", first["run_id"]])
    assert status.exit_code == 0 and json.loads(status.stdout)["batch_id"] == resumed["batch_id"]


@pytest.mark.usefixtures("environment")
def test_collect_waits_for_a_finished_batch_and_cached_trials_need_no_request(batch_server, workspace):
    batch_server.script(tool_call(ANSWER, when=TRIAL))
    report = submit(workspace, TRIAL)
    with pytest.raises(InputError, match="is in_progress: wait"):
        asyncio.run(batch.collect(workspace, llm(workspace), batch.find(workspace, None)))
    finish(workspace, report["run_id"])

    again = submit(workspace, TRIAL, OTHER, force=True)  # TRIAL's answer is cached: only OTHER is sent

    assert again["from_cache"] == 1 and again["requests"] == 1
    lines = (batch.batch_dir(workspace, again["run_id"]) / "input.jsonl").read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in lines] == [f"{OTHER}:{load_prompt().version}:0"]
    assert workspace.db.execute("SELECT status FROM extractions WHERE run_id = ? AND nct_id = ?",
                                [again["run_id"], TRIAL]).fetchone() == ("ok",)  # fmt: skip


@pytest.mark.usefixtures("environment")
def test_no_batch_and_bad_usage_are_input_errors(workspace):
    workspace.close()
    runner = CliRunner()
    base = ["--workspace", str(workspace.root), "batch"]
    assert runner.invoke(main, base + ["status"]).exit_code == 2
    result = runner.invoke(main, base + ["collect", "batch_unknown"])
    assert result.exit_code == 2 and "no batch 'batch_unknown'" in result.stderr
    assert runner.invoke(main, base + ["submit"]).exit_code == 2  # neither ids nor --all


@pytest.mark.usefixtures("environment")
def test_a_misquoted_item_in_a_batch_answer_is_dropped_with_a_warning_as_after_the_last_online_try(batch_server, workspace):
    batch_server.script(tool_call(dict(ANSWER, labs=[INVENTED]), when=TRIAL), tool_call(OTHER_ANSWER, when=OTHER))
    report = submit(workspace)

    summary = finish(workspace, report["run_id"])

    assert summary.failures == {} and batch_server.count == 2  # a batch is never re-asked
    record = workspace.current_record(TRIAL)
    assert record.eligibility.labs == [] and record.extraction.ungrounded_items == 1
    assert any("ANC >= 1500/mm3" in warning for warning in record.extraction.warnings)
    assert [p.scale for p in record.eligibility.performance_status] == ["ECOG"]  # the rest of the answer stays
