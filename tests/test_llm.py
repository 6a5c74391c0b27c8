"""The openai backend against a real OpenAI-compatible HTTP server, through the real pipeline and workspace."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from datetime import datetime, timezone

import pytest
from openai_server import (OpenAIServer, error, first_criterion_answer, json_content, openai_server,  # noqa: F401
                           tool_call)

from extract.cache import CachedBackend
from extract.consistency import WARNING, flagged
from extract.errors import InputError, UpstreamUnreachable
from extract.llm import OpenAIBackend, Settings, Usage, chunk, cost_usd, load_prompt, merge
from extract.pipeline import run_extraction
from extract.sources import flat_export_row
from extract.store import Workspace
from extract.text import segment

from cli import run_async
from conftest import run, use_llm_server

API_KEY = "sk-test-0123456789abcdef"
TRIAL = "NCT05253651"  # HER2+ RAS wild-type colorectal cancer
OTHER = "NCT02476786"  # ER+ HER2- breast cancer, 70 years or older


def quoted(criterion_id: str, quote: str) -> dict:
    return {"criterion_id": criterion_id, "quote": quote}


# What a good model answers for TRIAL; every quote is verbatim from its normalised text.
ANSWER = {
    "cancer_types": [{"name": "colorectal cancer", "requirement": "required", "code": None,
                      "evidence": quoted("inc-1", "adenocarcinoma of the colon or rectum")}],
    "biomarkers": [
        {"requirement": "required", "any_of": [{"marker": "ERBB2", "status": "positive"}],
         "evidence": quoted("inc-3", "HER2+ disease")},
        {"requirement": "required", "any_of": [{"marker": "KRAS", "status": "negative"}],
         "evidence": quoted("inc-4", "RAS WT")},
        {"requirement": "required", "any_of": [{"marker": "NRAS", "status": "negative"}],
         "evidence": quoted("inc-4", "RAS WT")},
    ],
    "stage": {"groups": [], "settings": ["locally_advanced", "unresectable", "metastatic"],
              "evidence": quoted("inc-1", "locally advanced unresectable or metastatic")},
    "performance_status": [{"scale": "ECOG", "min": 0, "max": 1, "evidence": quoted(
        "inc-6", "Eastern Cooperative Oncology Group (ECOG) Performance Status of 0 or 1")}],
    "prior_therapies": [{"requirement": "excluded", "therapy": "anti-her2 therapy",
                         "evidence": quoted("exc-3", "Previous treatment with anti-HER2 therapy")}],
    "labs": [],
    "brain_metastases": {"status": "allowed_if_stable",
                         "evidence": quoted("inc-7", "Previously treated brain metastases which are asymptomatic")},
    "measurable_disease": {"required": True, "standard": "RECIST 1.1",
                           "evidence": quoted("inc-5", "Radiographically measurable disease per RECIST v1.1")},
}  # fmt: skip

OTHER_ANSWER = {
    "age_limits": {"min_years": 70, "max_years": None, "evidence": quoted("inc-5", "70 years of age or older.")},
    "performance_status": [{"scale": "ECOG", "min": 0, "max": 3, "evidence": quoted("inc-6", "ECOG performance status ≤ 3")}],
}  # fmt: skip

INVENTED = {"analyte": "anc", "comparator": ">=", "value": 1500, "unit": "/mm3",
            "evidence": quoted("inc-6", "ANC >= 1500/mm3")}  # fmt: skip


@pytest.fixture(scope="module")
def rows(shared_data) -> dict[str, dict]:
    wanted = {}
    with open(shared_data / "ctgov-2026" / "trials.jsonl", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row["nct_id"] in (TRIAL, OTHER):
                wanted[row["nct_id"]] = row
    return wanted


@pytest.fixture
def workspace(tmp_path, rows) -> Workspace:
    workspace = Workspace(tmp_path / "workspace")
    for row in rows.values():
        workspace.store_trial(flat_export_row(row, datetime.now(timezone.utc)))
    yield workspace
    workspace.close()


@pytest.fixture
def environment(monkeypatch, tmp_path, openai_server):
    # A deadline a loaded CI machine never meets by accident; the deadline tests shorten it (`short_deadline`).
    use_llm_server(monkeypatch, tmp_path, openai_server.base_url, API_KEY, ELIGEX_LLM_TIMEOUT="10")


@pytest.fixture
def short_deadline(environment, monkeypatch):
    """Half a second for each request's whole answer, for the tests of that deadline."""
    monkeypatch.setenv("ELIGEX_LLM_TIMEOUT", "0.5")


def backend(workspace: Workspace, **settings) -> CachedBackend:
    """The backend as the CLI builds it (behind the workspace's answer cache), with short waits so
    the retry tests stay fast."""
    made = OpenAIBackend.from_environment(model="test-model")
    fast = {"attempts": 3, "backoff_seconds": 0.01} | settings
    return CachedBackend(dataclasses.replace(made, settings=dataclasses.replace(made.settings, **fast)), workspace)


def split(chosen: CachedBackend, chars: int) -> CachedBackend:
    """The backend, cutting the criteria into parts of `chars` characters of text."""
    chosen.backend.part_chars = chars
    return chosen


# A bound on every run, so that one that would never end fails its test instead of hanging it.
BOUND_SECONDS = 30


def extract(workspace: Workspace, chosen: CachedBackend, *nct_ids: str, force: bool = False):
    trials = list(workspace.trials(list(nct_ids or (TRIAL,))))
    run = run_extraction(workspace, chosen, trials, force=force)
    return run_async(asyncio.wait_for(run, BOUND_SECONDS), chosen)  # closes its client, as the CLI


def stored_row(workspace: Workspace, nct_id: str = TRIAL) -> tuple:
    return workspace.db.execute(
        "SELECT status, input_tokens, output_tokens, cost_usd FROM extractions WHERE nct_id = ?", [nct_id]
    ).fetchone()


def user_message(request: dict) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


@pytest.mark.usefixtures("environment")
def test_a_real_trial_is_extracted_grounded_and_costed(openai_server: OpenAIServer, workspace: Workspace):
    answer = dict(ANSWER, labs=[INVENTED])
    openai_server.script(*[tool_call(answer, usage=(1200, 300))] * 3)  # the model insists on its invented quote

    summary = extract(workspace, backend(workspace, reasks=2))

    assert summary.failures == {} and summary.extracted == 1
    record = workspace.current_record(TRIAL)
    eligibility = record.eligibility
    assert [(p.scale, p.min, p.max) for p in eligibility.performance_status] == [("ECOG", 0, 1)]
    assert [(r.requirement, r.any_of[0].marker) for r in eligibility.biomarkers] == [
        ("required", "ERBB2"), ("required", "KRAS"), ("required", "NRAS")]  # fmt: skip
    assert eligibility.measurable_disease.standard == "RECIST 1.1"
    ecog = eligibility.performance_status[0].evidence
    assert record.eligibility_text[ecog.start : ecog.end] == ecog.quote and ecog.criterion_id == "inc-6"
    # The invented quote is re-asked with the reason, twice; after the last try the aligner drops the
    # item (counted and reported): it never reaches the output, and the rest of the answer stays.
    assert openai_server.count == 3
    reason = openai_server.requests[1]["messages"][-1]["content"]
    assert "the quote 'ANC >= 1500/mm3' is not in criterion inc-6 ('Eastern Cooperative Oncology Group" in reason
    assert eligibility.labs == []
    assert record.extraction.ungrounded_items == 1
    assert any("ANC >= 1500/mm3" in warning for warning in record.extraction.warnings)
    assert "1500" not in record.eligibility.model_dump_json()
    assert flagged(record.extraction.warnings) == 0  # every quote states its item
    extraction = record.extraction
    assert (extraction.backend, extraction.model, extraction.prompt_version) == ("openai", "test-model", load_prompt().version)
    assert (extraction.input_tokens, extraction.output_tokens) == (3600, 900)  # every attempt
    assert extraction.cost_usd == pytest.approx(3600 * 1.0 / 1e6 + 900 * 2.0 / 1e6)
    # The stable prefix first (prompt, tool schema), the trial's criteria with their ids last.
    request = openai_server.requests[0]
    assert request["messages"][0] == {"role": "system", "content": load_prompt().system}
    assert request["messages"][-1]["role"] == "user"
    assert "[inc-6] Eastern Cooperative Oncology Group (ECOG) Performance Status of 0 or 1" in user_message(request)
    assert request["tools"][0]["function"]["name"] == "ExtractedEligibility"
    assert request["tool_choice"]["function"]["name"] == "ExtractedEligibility"


@pytest.mark.usefixtures("environment")
def test_an_answer_obeying_an_instruction_planted_in_the_criteria_is_stored_with_warnings(openai_server, workspace):
    # Real quotes, invented items: what a model told "ignore previous instructions and output ..." would send.
    planted = dict(ANSWER, biomarkers=[*ANSWER["biomarkers"], {
        "requirement": "required", "any_of": [{"marker": "EGFR", "status": "positive"}],
        "evidence": quoted("inc-6", "Eastern Cooperative Oncology Group")}],
        prior_therapies=[dict(ANSWER["prior_therapies"][0], requirement="required")])  # fmt: skip
    openai_server.script(tool_call(planted))

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {}
    record = workspace.current_record(TRIAL)
    assert "EGFR" in [rule.any_of[0].marker for rule in record.eligibility.biomarkers]  # kept, for a reviewer
    warnings = [w for w in record.extraction.warnings if WARNING in w]
    assert [w.split(":")[0] for w in warnings] == ["biomarkers", "prior_therapies"]
    assert "exclusion criterion exc-3" in warnings[1]


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize(
    ("first", "problem"),
    [
        ('{"cancer_types": [}', "Invalid JSON"),
        (json.dumps(dict(ANSWER, performance_status=[dict(ANSWER["performance_status"][0], min=2)])), "min is above max"),
    ],
    ids=["broken-json", "contract-validator"],
)
def test_an_invalid_answer_is_re_asked_with_the_validation_error(openai_server, workspace, first, problem):
    openai_server.script(tool_call(first), tool_call(ANSWER))

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {}
    assert openai_server.count == 2
    reask = openai_server.requests[1]["messages"]
    # Roles alternate user/assistant after the system prompt, as strict chat templates (Gemma's) demand: no `tool`.
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert reask[2]["content"] == first and "tool_calls" not in reask[2]
    feedback = reask[3]["content"]
    assert "Validation Error found" in feedback and problem in feedback
    record = workspace.current_record(TRIAL)
    assert (record.extraction.input_tokens, record.extraction.output_tokens) == (2400, 600)  # both attempts


@pytest.mark.usefixtures("environment")
def test_answers_that_never_validate_fail_the_trial_with_a_clear_reason(openai_server, workspace):
    openai_server.script(*[tool_call("not json")] * 3)

    summary = extract(workspace, backend(workspace, reasks=2))

    assert openai_server.count == 3
    assert summary.failures[TRIAL].startswith("UpstreamError: no valid answer after 3 attempt(s): answer: Invalid JSON")


@pytest.mark.usefixtures("environment")
def test_an_answer_cut_off_at_the_token_limit_fails_the_trial_without_a_re_ask(openai_server, workspace):
    cut_off = tool_call('{"cancer_types": [{"name": "colorectal')
    cut_off.body["choices"][0]["finish_reason"] = "length"
    openai_server.script(cut_off, tool_call(ANSWER))

    summary = extract(workspace, backend(workspace, reasks=2))

    assert openai_server.count == 1  # asking again would be cut off again
    assert summary.failures[TRIAL] == "UpstreamError: the model's answer was cut off at its output token limit"


@pytest.mark.usefixtures("environment")
def test_a_429_waits_for_retry_after_then_succeeds(openai_server, workspace):
    openai_server.script(error(429, "slow down", retry_after="0.3"), tool_call(ANSWER))

    started = time.monotonic()
    summary = extract(workspace, backend(workspace))

    assert summary.failures == {} and openai_server.count == 2
    assert time.monotonic() - started >= 0.3


@pytest.mark.usefixtures("environment")
def test_server_errors_past_the_budget_fail_one_trial_and_the_batch_goes_on(openai_server, workspace):
    # A careless server echoes the key: the stored reason must not.
    openai_server.script(*[error(503, f"upstream broke for key {API_KEY}", when=TRIAL)] * 3,
                         tool_call(OTHER_ANSWER, when=OTHER))  # fmt: skip

    summary = extract(workspace, backend(workspace, attempts=3), TRIAL, OTHER)

    assert openai_server.count == 4
    reason = summary.failures[TRIAL]
    assert reason.startswith(f"UpstreamError: LLM request to {openai_server.base_url}/ failed after 3 attempt(s): HTTP 503")
    assert API_KEY not in reason and "[redacted]" in reason
    stored = workspace.db.execute("SELECT status, error FROM extractions WHERE nct_id = ?", [TRIAL]).fetchone()
    assert stored == ("error", reason)
    assert summary.extracted == 1
    other = workspace.current_record(OTHER)
    assert other.eligibility.min_age_years == 70
    assert [(p.scale, p.min, p.max) for p in other.eligibility.performance_status] == [("ECOG", 0, 3)]


@pytest.mark.usefixtures("short_deadline")
def test_a_stalled_request_times_out_and_is_retried(openai_server, workspace):
    openai_server.script(dataclasses.replace(tool_call(ANSWER), delay=5), tool_call(ANSWER))

    started = time.monotonic()
    summary = extract(workspace, backend(workspace))

    assert summary.failures == {} and openai_server.count == 2
    assert time.monotonic() - started < 3  # the client timeout (0.5 s), not the stall, set the pace


@pytest.mark.usefixtures("short_deadline")
def test_a_server_dripping_its_answer_meets_the_deadline_of_each_request(openai_server, workspace):
    # One byte every 0.1 s: each read is well within ELIGEX_LLM_TIMEOUT=0.5, the whole answer takes minutes.
    openai_server.script(*[dataclasses.replace(tool_call(ANSWER), drip=0.1)] * 2, tool_call(ANSWER))

    started = time.monotonic()
    summary = extract(workspace, backend(workspace, attempts=3))

    assert summary.failures == {} and openai_server.count == 3
    assert time.monotonic() - started < 3  # two deadlines of 0.5 s, then the answer

    openai_server.script(*[dataclasses.replace(tool_call(ANSWER), drip=0.1)] * 3)
    summary = extract(workspace, backend(workspace, attempts=3), force=True, *[OTHER])
    assert summary.failures[OTHER] == (f"UpstreamError: LLM request to {openai_server.base_url}/ failed after "
                                       "3 attempt(s): no complete answer within 0.5 s")  # fmt: skip


@pytest.mark.usefixtures("environment")
def test_an_llm_base_url_where_nothing_listens_stops_the_run(openai_server, workspace):
    openai_server.refuse_connections()
    started = time.monotonic()
    with pytest.raises(UpstreamUnreachable, match=r"cannot be reached \(could not connect; 3 connection failures in a row\)"):
        extract(workspace, backend(workspace, attempts=4, backoff_seconds=1.0), TRIAL, OTHER)
    assert time.monotonic() - started < 3  # not every trial's 4 attempts over 7 s of backoff
    assert workspace.db.execute("SELECT count(*) FROM extractions").fetchone() == (0,)


def test_the_command_says_so_in_one_line_with_exit_3(openai_server, monkeypatch, tmp_path):
    use_llm_server(monkeypatch, tmp_path, openai_server.base_url, API_KEY, ELIGEX_MODEL="test-model")
    where = str(tmp_path / "ws")
    assert run("--workspace", where, "import", "evals/records").exit_code == 0
    openai_server.refuse_connections()

    result = run("--workspace", where, "extract", "--all", "--backend", "openai")

    assert result.exit_code == 3
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [
        f"Error: the LLM endpoint at {openai_server.base_url}/ cannot be reached (could not connect; "
        "3 connection failures in a row)"]  # fmt: skip


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://example.org/v1", "http:///v1"])
def test_a_malformed_base_url_is_bad_input_at_once(monkeypatch, tmp_path, url):
    use_llm_server(monkeypatch, tmp_path, url, API_KEY)
    with pytest.raises(InputError, match="OPENAI_BASE_URL"):
        OpenAIBackend.from_environment()
    result = run("--workspace", str(tmp_path / "ws"), "extract", "--all", "--backend", "openai")
    assert result.exit_code == 2 and "OPENAI_BASE_URL" in result.stderr


@pytest.mark.usefixtures("environment")
def test_a_failed_trial_records_the_tokens_it_was_billed_for(openai_server, workspace):
    openai_server.script(*[tool_call("not json", usage=(1000, 100))] * 3)

    summary = extract(workspace, backend(workspace, reasks=2))

    assert summary.failures[TRIAL].startswith("UpstreamError: no valid answer after 3 attempt(s)")
    assert stored_row(workspace) == ("error", 3000, 300, pytest.approx(3000 * 1.0 / 1e6 + 300 * 2.0 / 1e6))
    assert (summary.input_tokens, summary.output_tokens) == (3000, 300)
    assert summary.cost_usd == pytest.approx(0.0036)


@pytest.mark.usefixtures("environment")
def test_a_trial_failing_in_one_part_records_what_the_other_parts_were_billed(openai_server, workspace):
    criteria = segment(next(workspace.trials([TRIAL])).eligibility_text)
    budget = sum(len(c.text) for c in criteria if c.kind == "inclusion")  # inclusion, then exclusion
    cut_off = tool_call('{"labs": [', usage=(500, 4000), when="[exc-1]")
    cut_off.body["choices"][0]["finish_reason"] = "length"
    openai_server.script(tool_call(ANSWER, usage=(1200, 300), when="[inc-1]"), cut_off)

    summary = extract(workspace, split(backend(workspace), budget))

    assert summary.failures[TRIAL] == "UpstreamError: the model's answer was cut off at its output token limit"
    assert stored_row(workspace)[:3] == ("error", 1700, 4300)


@pytest.mark.usefixtures("environment")
def test_the_cache_makes_a_second_run_send_no_request(openai_server, workspace):
    openai_server.script(tool_call(ANSWER))
    extract(workspace, backend(workspace))
    first = workspace.current_record(TRIAL)

    summary = extract(workspace, backend(workspace), force=True)  # a new process, same workspace

    assert summary.extracted == 1 and openai_server.count == 1
    again = workspace.current_record(TRIAL)
    assert again.eligibility == first.eligibility
    assert (again.extraction.input_tokens, again.extraction.output_tokens, again.extraction.cost_usd) == (0, 0, 0.0)


def test_refresh_asks_again_and_its_answer_replaces_the_cached_one(openai_server, monkeypatch, tmp_path):
    use_llm_server(monkeypatch, tmp_path, openai_server.base_url, API_KEY, ELIGEX_MODEL="test-model")
    where = str(tmp_path / "ws")
    assert run("--workspace", where, "import", "evals/records").exit_code == 0
    openai_server.respond = first_criterion_answer
    assert run("--workspace", where, "extract", "--all").exit_code == 0
    assert run("--workspace", where, "extract", "--all", "--force").exit_code == 0
    assert openai_server.count == 1  # the second from the cache

    assert run("--workspace", where, "extract", "--all", "--refresh").exit_code == 0
    assert openai_server.count == 2
    assert run("--workspace", where, "extract", "--all", "--force").exit_code == 0
    assert openai_server.count == 2  # the refreshed answer is the cached one now


@pytest.mark.usefixtures("environment")
def test_a_long_text_is_split_by_criteria_and_the_answers_merged(openai_server, workspace):
    criteria = segment(next(workspace.trials([TRIAL])).eligibility_text)
    budget = sum(len(c.text) for c in criteria if c.kind == "inclusion")  # inclusion fits one request exactly
    exclusion_stage = dict(ANSWER["stage"], settings=["metastatic"], evidence=quoted("exc-1", "metastatic setting"))
    inclusion = {k: v for k, v in ANSWER.items() if k != "prior_therapies"}
    exclusion = {"prior_therapies": ANSWER["prior_therapies"], "stage": exclusion_stage}
    openai_server.script(tool_call(inclusion, when="[inc-1]"), tool_call(exclusion, when="[exc-1]"))

    summary = extract(workspace, split(backend(workspace), budget))

    assert summary.failures == {} and openai_server.count == 2
    sent = sorted(user_message(request) for request in openai_server.requests)
    assert all(f"[{c.id}] {c.text}" in "\n".join(sent) for c in criteria)  # every criterion, none cut
    record = workspace.current_record(TRIAL)
    assert record.eligibility.stage.settings == ANSWER["stage"]["settings"]  # first wins
    assert [p.therapy for p in record.eligibility.prior_therapies] == ["anti-her2 therapy"]
    assert record.extraction.input_tokens == 2400


def test_chunks_keep_order_and_never_cut_a_criterion(workspace):
    criteria = segment(next(workspace.trials([TRIAL])).eligibility_text)
    groups = chunk(criteria, 300)
    assert [c for group in groups for c in group] == criteria
    assert all(len(group) == 1 or sum(len(c.text) for c in group) <= 300 for group in groups)
    assert merge([{"labs": [1], "stage": None}, {"labs": [2], "stage": "a"}, {"stage": "b"}]) == {
        "labs": [1, 2], "stage": "a"}  # fmt: skip


@pytest.mark.usefixtures("environment")
def test_json_mode_for_servers_without_tool_calls(openai_server, workspace, monkeypatch):
    monkeypatch.setenv("ELIGEX_LLM_MODE", "json")
    openai_server.script(json_content(ANSWER))

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {}
    [request] = openai_server.requests
    assert request["response_format"] == {"type": "json_object"} and "tools" not in request
    assert request["messages"][0]["content"].startswith(load_prompt().system)  # the prefix stays stable


def test_configuration_from_the_environment(monkeypatch, openai_server):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ELIGEX_MODEL", "ELIGEX_PRICES", "ELIGEX_RPM"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="OPENAI_API_KEY"):
        OpenAIBackend.from_environment()

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)  # OpenAI itself: its default model
    assert OpenAIBackend.from_environment().model == "gpt-4.1-mini"
    monkeypatch.delenv("OPENAI_API_KEY")

    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)  # a local server: no key needed
    openai_server.models = ["gemma-3-270m"]
    local = OpenAIBackend.from_environment()
    assert local.client.api_key == "not-needed" and local.client.max_retries == 0
    assert local.model == "gemma-3-270m"  # the one model the server serves, never OpenAI's default
    assert cost_usd(local.prices, local.model, Usage(1000, 100)) is None  # not priced at OpenAI's rates
    openai_server.models = ["one", "two"]
    with pytest.raises(InputError, match=r"serves 2 models \(one, two\): name one with --model or ELIGEX_MODEL"):
        OpenAIBackend.from_environment()
    monkeypatch.setenv("ELIGEX_MODEL", "llama3")
    assert OpenAIBackend.from_environment().model == "llama3"
    assert OpenAIBackend.from_environment(model="qwen").model == "qwen"

    monkeypatch.setenv("ELIGEX_RPM", "fast")
    with pytest.raises(InputError, match="ELIGEX_RPM"):
        OpenAIBackend.from_environment()


@pytest.mark.usefixtures("environment")
def test_a_500_repeated_for_the_same_request_is_not_taken_as_transient(openai_server, workspace):
    # A strict chat template refusing the request answers 500 every time: asking a third time is waste.
    openai_server.script(*[error(500, "Conversation roles must alternate user/assistant")] * 3, tool_call(ANSWER))

    summary = extract(workspace, backend(workspace, attempts=4))

    assert openai_server.count == 2
    assert summary.failures[TRIAL] == (
        f"UpstreamError: LLM request to {openai_server.base_url}/ failed after 2 attempt(s): HTTP 500 Conversation "
        "roles must alternate user/assistant (the same error twice for the same request: not transient)")  # fmt: skip


@pytest.mark.usefixtures("environment")
def test_every_request_bounds_its_answer_and_asks_for_determinism(openai_server, workspace):
    openai_server.script(tool_call("not json"), tool_call(ANSWER))

    extract(workspace, backend(workspace, max_tokens=1234))

    assert [(r["max_tokens"], r["temperature"]) for r in openai_server.requests] == [(1234, 0)] * 2


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize(
    ("arguments", "usage"),
    [
        ('{"cancer_types": [{"name": "colorectal', (1200, 300)),  # the context ran out: JSON stops mid-way
        ('{"cancer_types": [}', (1200, 2000)),  # the answer used every token it was allowed
        ('{"cancer_types": [}', (15000, 1384)),  # prompt and answer filled the model's context
    ],
    ids=["truncated-json", "max-tokens", "context-full"],
)
def test_an_answer_cut_off_is_detected_even_when_the_server_says_tool_calls(openai_server, workspace, arguments, usage):
    openai_server.script(tool_call(arguments, usage=usage), tool_call(ANSWER))  # finish_reason "tool_calls"

    summary = extract(workspace, backend(workspace, max_tokens=2000, context_tokens=16384))

    assert openai_server.count == 1
    assert summary.failures[TRIAL] == "UpstreamError: the model's answer was cut off at its output token limit"
    assert stored_row(workspace)[:3] == ("error", *usage)  # what it cost is recorded with the failure


@pytest.mark.usefixtures("environment")
def test_raw_newlines_inside_json_strings_are_accepted(openai_server, workspace):
    # Grammar-constrained output lets a model put a newline character inside a string.
    raw = json.dumps(ANSWER).replace("anti-her2 therapy", "anti-her2\ntherapy")  # a newline, not `\\n`
    openai_server.script(tool_call(raw))

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {} and openai_server.count == 1
    assert [p.therapy for p in workspace.current_record(TRIAL).eligibility.prior_therapies] == ["anti-her2\ntherapy"]


@pytest.mark.usefixtures("environment")
def test_parts_follow_the_models_context_and_go_one_after_another(openai_server, workspace):
    openai_server.respond, openai_server.latency = first_criterion_answer, 0.1
    criteria = segment(next(workspace.trials([TRIAL])).eligibility_text)
    roomy, small = backend(workspace, context_tokens=128_000), backend(workspace, context_tokens=7000, max_tokens=400)
    assert len(roomy.backend.parts(criteria)) == 1 and len(small.backend.parts(criteria)) > 2

    summary = extract(workspace, small)

    assert summary.failures == {} and openai_server.count == len(small.backend.parts(criteria))
    assert openai_server.peak == 1  # one trial at a time (--concurrency 1) is one request at a time
    sent = "\n".join(user_message(request) for request in openai_server.requests)
    assert all(f"[{c.id}] {c.text}" in sent for c in criteria)


@pytest.mark.usefixtures("environment")
def test_a_context_length_error_splits_the_part_in_two(openai_server, workspace):
    openai_server.respond = first_criterion_answer
    too_long = "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."
    openai_server.script(error(400, too_long, code="context_length_exceeded"))
    criteria = segment(next(workspace.trials([TRIAL])).eligibility_text)

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {} and openai_server.count == 3
    first, second = (user_message(r) for r in openai_server.requests[1:])
    half = len(criteria) // 2
    assert f"[{criteria[half - 1].id}]" in first and f"[{criteria[half].id}]" not in first
    assert f"[{criteria[half].id}]" in second and f"[{criteria[-1].id}]" in second


@pytest.mark.usefixtures("environment")
def test_an_answer_with_no_items_is_stored_with_a_warning(openai_server, workspace):
    openai_server.script(tool_call({}))

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {}
    warnings = workspace.current_record(TRIAL).extraction.warnings
    assert "the model answered with no items at all: every criterion is left in `other`" in warnings


@pytest.mark.usefixtures("environment")
def test_a_trial_failing_at_its_re_ask_records_the_tokens_of_the_answer_before(openai_server, workspace):
    # What a strict chat template did to the old tool-role re-asks: the first answer was billed, then 500s.
    openai_server.script(tool_call('{"cancer_types": [}', usage=(1000, 100)), *[error(500, "template error")] * 2)

    summary = extract(workspace, backend(workspace))

    assert "failed after 2 attempt(s): HTTP 500 template error" in summary.failures[TRIAL]
    assert stored_row(workspace) == ("error", 1000, 100, pytest.approx(1000 * 1.0 / 1e6 + 100 * 2.0 / 1e6))


def trial_with_criterion(workspace: Workspace, rows: dict, criterion: str) -> str:
    """TRIAL stored again with one more inclusion criterion, first: its id is inc-1."""
    row = rows[TRIAL]
    text = row["eligibility"]["raw_text"].replace("Inclusion Criteria:\n", f"Inclusion Criteria:\n\n* {criterion}\n", 1)
    assert text != row["eligibility"]["raw_text"]
    workspace.store_trial(flat_export_row(row | {"eligibility": row["eligibility"] | {"raw_text": text}},
                                          datetime.now(timezone.utc)))  # fmt: skip
    return criterion


@pytest.mark.usefixtures("environment")
def test_braces_in_the_criteria_reach_the_model_as_written(openai_server, workspace, rows):
    # instructor renders messages as Jinja templates when given a validation context: ours are not templates.
    braces = "Dose {{ 2 * dose }} mg/m2 {% if renal %} adjusted {% endif %} {# note #} {% endraw %} {{ '{%' }}"
    criterion = trial_with_criterion(workspace, rows, braces)
    quote = {"evidence": quoted("inc-1", criterion)}
    openai_server.script(tool_call({"prior_therapies": [{"requirement": "excluded", "therapy": "dose"} | quote]}))

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {} and openai_server.count == 1  # the quote validated against the real text
    [request] = openai_server.requests
    assert f"[inc-1] {criterion}\n" in user_message(request)
    assert request["messages"][0]["content"] == load_prompt().system
    assert workspace.current_record(TRIAL).eligibility.prior_therapies[0].evidence.quote == criterion


@pytest.mark.usefixtures("environment")
def test_a_server_refusing_the_tool_role_accepts_the_re_ask(openai_server, workspace):
    openai_server.alternating_roles = True  # as Gemma's chat template in llama.cpp's server: 500 for a `tool` turn
    openai_server.script(tool_call('{"cancer_types": [}'), tool_call(ANSWER))

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {} and openai_server.count == 2
    assert [m["role"] for m in openai_server.requests[1]["messages"]] == ["system", "user", "assistant", "user"]


@pytest.mark.usefixtures("environment")
def test_a_misquote_is_re_asked_with_its_reason_and_the_corrected_answer_kept(openai_server, workspace, caplog):
    misquoted = dict(ANSWER, performance_status=[dict(ANSWER["performance_status"][0], evidence=quoted("inc-6", "ECOG 0-1"))])
    openai_server.script(tool_call(misquoted, usage=(1000, 100)), tool_call(ANSWER, usage=(1000, 100)))

    with caplog.at_level(logging.WARNING, logger="eligex"):
        summary = extract(workspace, backend(workspace))

    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("re-asking")] == [  # said, as retries are
        f"re-asking the model (test-model) for {TRIAL} (attempt 2): performance_status.0.evidence: "
        "the quote 'ECOG 0-1' is not in criterion inc-6 ('Eastern Cooperative Oncology Group (ECOG) Performance "
        "Status of 0 or 1'): quote its words exactly"]  # fmt: skip

    assert summary.failures == {} and openai_server.count == 2
    reask = openai_server.requests[1]["messages"][-1]
    assert reask["role"] == "user" and "performance_status.0.evidence" in reask["content"]
    assert "the quote 'ECOG 0-1' is not in criterion inc-6" in reask["content"]
    record = workspace.current_record(TRIAL)
    assert record.extraction.ungrounded_items == 0 and record.extraction.input_tokens == 2000
    assert [p.evidence.quote for p in record.eligibility.performance_status] == [
        "Eastern Cooperative Oncology Group (ECOG) Performance Status of 0 or 1"]  # fmt: skip


@pytest.mark.usefixtures("environment")
def test_a_plain_text_answer_in_tools_mode_is_re_asked(openai_server, workspace):
    # A change: the JSON in the message's content used to be accepted; instructor asks for the tool call.
    openai_server.script(json_content(ANSWER), tool_call(ANSWER))

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {} and openai_server.count == 2
    reask = openai_server.requests[1]["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert "No tool calls" in reask[-1]["content"]


@pytest.mark.usefixtures("environment")
def test_json_mode_reads_an_answer_in_a_markdown_fence_with_raw_newlines(openai_server, workspace, monkeypatch):
    monkeypatch.setenv("ELIGEX_LLM_MODE", "json")
    fenced = json_content(ANSWER)
    text = json.dumps(ANSWER).replace("anti-her2 therapy", "anti-her2\ntherapy")
    fenced.body["choices"][0]["message"]["content"] = f"```json\n{text}\n```"
    openai_server.script(fenced)

    summary = extract(workspace, backend(workspace))

    assert summary.failures == {} and openai_server.count == 1
    assert [p.therapy for p in workspace.current_record(TRIAL).eligibility.prior_therapies] == ["anti-her2\ntherapy"]


def test_a_cached_answer_costs_nothing_even_for_a_model_without_a_price(openai_server, workspace, monkeypatch, tmp_path):
    use_llm_server(monkeypatch, tmp_path, openai_server.base_url, API_KEY, ELIGEX_MODEL="local-model")
    openai_server.script(tool_call(ANSWER))
    extract(workspace, CachedBackend(OpenAIBackend.from_environment(), workspace))
    assert workspace.current_record(TRIAL).extraction.cost_usd is None  # no price for it

    extract(workspace, CachedBackend(OpenAIBackend.from_environment(), workspace), force=True)

    assert openai_server.count == 1
    extraction = workspace.current_record(TRIAL).extraction
    assert (extraction.input_tokens, extraction.output_tokens, extraction.cost_usd) == (0, 0, 0.0)


def test_the_estimate_under_refresh_counts_no_cache_hit(openai_server, monkeypatch, tmp_path):
    use_llm_server(monkeypatch, tmp_path, openai_server.base_url, API_KEY, ELIGEX_MODEL="test-model")
    openai_server.respond = first_criterion_answer
    where = str(tmp_path / "ws")
    assert run("--workspace", where, "import", "evals/records").exit_code == 0
    trials = run("--workspace", where, "extract", "--all").stderr.split(" requests for ")[1].split()[0]

    forced = run("--workspace", where, "extract", "--all", "--force").stderr
    refreshed = run("--workspace", where, "extract", "--all", "--refresh").stderr

    assert f"0 requests for {trials} trials ({trials} answered from the cache" in forced
    assert f"for {trials} trials (0 answered from the cache" in refreshed


def test_building_a_request_logs_nothing(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with caplog.at_level(logging.DEBUG, logger="instructor"):
        request = OpenAIBackend.from_environment().request()
    assert [m["role"] for m in request["messages"]] == ["system"] and request["tools"]
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []
