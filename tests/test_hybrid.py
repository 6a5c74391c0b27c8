"""The hybrid backend against the scripted OpenAI server: what it sends, what it keeps, what it rejects."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest
from openai_server import OpenAIServer, openai_server, tool_call  # noqa: F401

from cli import make_backend, run_async
from extract.hybrid import DRAFT_HEADING, HybridBackend
from extract.pipeline import plan, run_extraction
from extract.rules import extract_eligibility
from extract.sources import RawRecord
from extract.store import Workspace
from extract.text import segment
from extract.hashing import canonical_sha256
from schemas import Trial
from schemas.record import Source, TrialFacts

from conftest import use_llm_server

COVERED = ("Inclusion Criteria:\n\n- ECOG performance status 0-1\n"
           "- Histologically confirmed HER2-positive breast cancer\n\n"
           "Exclusion Criteria:\n\n- Pregnant or breastfeeding")  # fmt: skip
# The rules read nothing in it; the check could take a prior therapy there (trastuzumab, named where the
# rules' tests let it speak).
UNCOVERED = "\n- Patients who received trastuzumab-based therapy as part of a neoadjuvant regimen, documented in the chart"
# A washout: the check would reject any therapy item quoting it, so it is not sent.
WASHOUT = "\n- Prior treatment with trastuzumab or other investigational agents within 4 weeks"
# The rules read ECOG 0-2, and the check could take a prior therapy they did not read: it is sent, with the draft.
LONG_ECOG = ("\n\nInclusion Criteria:\n\n- ECOG performance status 0-2 as assessed by the investigator, for patients "
             "who received trastuzumab-based therapy as part of a neoadjuvant regimen")  # fmt: skip


def trial(nct_id: str, text: str) -> Trial:
    source = Source(registry="test", retrieved_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                    content_sha256=canonical_sha256({"nct_id": nct_id, "text": text}))  # fmt: skip
    return Trial(nct_id=nct_id, source=source, trial=TrialFacts(title="A trial"), eligibility_text=text)


@pytest.fixture
def workspace(tmp_path, monkeypatch, openai_server):
    use_llm_server(monkeypatch, tmp_path, openai_server.base_url, "sk-test-0123456789abcdef", ELIGEX_LLM_TIMEOUT="5")
    workspace = Workspace(tmp_path / "workspace")
    yield workspace
    workspace.close()


def extract(workspace: Workspace, *trials: Trial):
    for one in trials:
        workspace.store_trial(RawRecord("test", "json", one.model_dump_json().encode(), one))
    chosen = make_backend("hybrid", "test-model", workspace)
    assert isinstance(chosen.backend, HybridBackend)
    run = run_extraction(workspace, chosen, list(workspace.trials([t.nct_id for t in trials])))
    return run_async(asyncio.wait_for(run, 30), chosen)


def user_message(request: dict) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


def test_a_trial_the_rules_account_for_sends_no_request(openai_server: OpenAIServer, workspace):
    summary = extract(workspace, trial("NCT00000001", COVERED))

    assert summary.extracted == 1 and openai_server.count == 0
    record = workspace.current_record("NCT00000001")
    assert record.extraction.backend == "hybrid" and record.extraction.input_tokens == 0
    assert [(p.scale, p.min, p.max) for p in record.eligibility.performance_status] == [("ECOG", 0, 1)]
    assert [b.any_of[0].marker for b in record.eligibility.biomarkers] == ["ERBB2"]


def test_only_the_uncovered_criteria_are_sent_with_the_draft_and_a_second_run_is_free(openai_server, workspace):
    answer = {"prior_therapies": [{"requirement": "excluded", "therapy": "trastuzumab",
                                   "evidence": {"criterion_id": "exc-2", "quote": "Patients who received trastuzumab"}}]}  # fmt: skip
    openai_server.script(tool_call(answer, usage=(1000, 100)))

    summary = extract(workspace, trial("NCT00000002", COVERED + UNCOVERED))

    assert summary.extracted == 1 and openai_server.count == 1
    sent = user_message(openai_server.requests[0])
    assert "[exc-2] Patients who received trastuzumab-based therapy" in sent
    assert "[inc-1]" not in sent and "[inc-2]" not in sent and "[exc-1]" not in sent
    assert DRAFT_HEADING in sent
    record = workspace.current_record("NCT00000002")
    assert [t.therapy for t in record.eligibility.prior_therapies] == ["trastuzumab"]
    assert [p.max for p in record.eligibility.performance_status] == [1]  # the rules' item, never sent
    assert record.extraction.input_tokens == 1000

    chosen = make_backend("hybrid", "test-model", workspace)
    rerun = run_extraction(workspace, chosen, list(workspace.trials(["NCT00000002"])), force=True)
    assert run_async(asyncio.wait_for(rerun, 30), chosen).extracted == 1
    assert openai_server.count == 1  # answered from the cache
    assert workspace.current_record("NCT00000002").extraction.input_tokens == 0


def test_a_criterion_where_the_check_could_take_nothing_is_not_sent(openai_server, workspace):
    summary = extract(workspace, trial("NCT00000009", COVERED + WASHOUT))

    assert summary.extracted == 1 and openai_server.count == 0
    record = workspace.current_record("NCT00000009")
    assert [o.criterion_id for o in record.eligibility.other] == ["exc-1", "exc-2"]


def test_a_request_asks_only_for_the_fields_its_criteria_concern(openai_server, workspace):
    openai_server.script(tool_call({}))

    extract(workspace, trial("NCT00000008", COVERED + UNCOVERED))

    [request] = openai_server.requests
    # exc-2 names a prior therapy, nothing else: that field's schema and conventions, and no other's
    assert list(request["tools"][0]["function"]["parameters"]["properties"]) == ["prior_therapies"]
    system = request["messages"][0]["content"]
    assert "# Prior therapies" in system and "# Evidence" in system and "# Decisions of the labelling guide" in system
    assert "# Biomarkers" not in system and "# Labs" not in system and "# Performance status" not in system


def test_a_model_that_fails_leaves_the_rules_items_with_a_warning_and_is_asked_again_next_time(openai_server, workspace):
    cut_off = tool_call('{"prior_therapies": [{"requirement": "excluded", "therapy": "trastu', usage=(900, 256))
    cut_off.body["choices"][0]["finish_reason"] = "length"
    openai_server.script(cut_off)

    summary = extract(workspace, trial("NCT00000010", COVERED + UNCOVERED))

    assert summary.extracted == 1 and summary.failures == {} and openai_server.count == 1
    record = workspace.current_record("NCT00000010")
    assert [p.max for p in record.eligibility.performance_status] == [1]  # the rules' items, all of them
    assert [b.any_of[0].marker for b in record.eligibility.biomarkers] == ["ERBB2"]
    assert record.extraction.input_tokens == 900  # what the failed answer cost
    assert [w for w in record.extraction.warnings if w.startswith("hybrid:")] == [
        "hybrid: the model gave no answer (the model's answer was cut off at its output token limit); kept the rules' "
        "items only (a rerun asks again)"]
    # marked incomplete and not cached: a plain rerun asks the model again, and its complete record stays
    assert record.extraction.incomplete
    openai_server.script(tool_call({}))
    chosen = make_backend("hybrid", "test-model", workspace)
    assert plan(workspace, chosen).to_extract == 1
    rerun = run_extraction(workspace, chosen, list(workspace.trials(["NCT00000010"])))
    assert run_async(asyncio.wait_for(rerun, 30), chosen).extracted == 1 and openai_server.count == 2
    assert not workspace.current_record("NCT00000010").extraction.incomplete
    assert plan(workspace, chosen).to_extract == 0


def ecog(maximum: int, quote: str) -> dict:
    return {"performance_status": [{"scale": "ECOG", "min": 0, "max": maximum,
                                    "evidence": {"criterion_id": "inc-1", "quote": quote}}]}  # fmt: skip


def test_a_change_its_quote_does_not_support_is_rejected_and_the_rules_item_kept(openai_server, workspace):
    # The quote is in the criterion, but it says 0-2: the rules' parser reads 0-2 there, not the model's 0-1.
    openai_server.script(tool_call(ecog(1, "ECOG performance status 0-2 as assessed by the investigator")))

    extract(workspace, trial("NCT00000003", LONG_ECOG))

    assert openai_server.count == 1
    sent = user_message(openai_server.requests[0])
    assert '"field": "performance_status", "scale": "ECOG", "min": 0, "max": 2' in sent  # the draft
    record = workspace.current_record("NCT00000003")
    assert [p.max for p in record.eligibility.performance_status] == [2]
    rejected = [w for w in record.extraction.warnings if w.startswith("hybrid: rejected")]
    assert rejected == ["hybrid: rejected the model's performance_status for inc-1: the rules read ECOG/0/2 in "
                        "'ECOG performance status 0-2 as assessed by the investigator', not ECOG/0/1; "
                        "kept the rules' reading"]  # fmt: skip


CLAUDIN = ("Inclusion Criteria:\n\n- ECOG performance status 0-1\n"
           "- A tumour that expresses Claudin 18.2 at 2+ or 3+ in at least 75% of cells")  # fmt: skip


def test_an_addition_its_quote_supports_is_taken_and_wrong_ones_rejected(openai_server, workspace):
    quote = "A tumour that expresses Claudin 18.2 at 2+ or 3+ in at least 75% of cells"

    def rule(requirement: str, marker: str) -> dict:
        return {"requirement": requirement, "any_of": [{"marker": marker, "status": "positive"}],
                "evidence": {"criterion_id": "inc-2", "quote": quote}}  # fmt: skip

    openai_server.script(tool_call({"biomarkers": [rule("required", "CLDN18"), rule("excluded", "CLDN18"), rule("required", "EGFR")]}))

    extract(workspace, trial("NCT00000007", CLAUDIN))

    assert openai_server.count == 1  # the rules read nothing in inc-2: it is sent
    record = workspace.current_record("NCT00000007")
    assert [(r.requirement, [t.marker for t in r.any_of]) for r in record.eligibility.biomarkers] == [("required", ["CLDN18"])]
    assert record.eligibility.biomarkers[0].evidence.quote == quote  # grounded like any LLM item
    rejected = [w for w in record.extraction.warnings if w.startswith("hybrid: rejected")]
    assert len(rejected) == 2
    assert "its requirement 'excluded' is not what the criterion says there" in rejected[0]
    assert "no marker name of 'EGFR' is in it" in rejected[1]


def test_a_change_whose_quote_is_not_in_its_criterion_is_rejected_and_the_rules_item_kept(openai_server, workspace):
    openai_server.script(*[tool_call(ecog(1, "ECOG performance status 0-1"))] * 3)  # re-asked twice, insists

    extract(workspace, trial("NCT00000004", LONG_ECOG))

    record = workspace.current_record("NCT00000004")
    assert [p.max for p in record.eligibility.performance_status] == [2]
    assert any(warning.startswith("hybrid: rejected the model's performance_status for inc-1")
               and "'ECOG performance status 0-1'" in warning for warning in record.extraction.warnings)  # fmt: skip


def test_the_estimate_before_a_run_counts_only_what_is_sent(workspace):
    from extract.pipeline import estimate

    for one in (trial("NCT00000005", COVERED), trial("NCT00000006", COVERED + UNCOVERED)):
        workspace.store_trial(RawRecord("test", "json", one.model_dump_json().encode(), one))
    chosen = make_backend("hybrid", "test-model", workspace)
    planned = estimate(chosen, list(workspace.trials(["NCT00000005", "NCT00000006"])))
    assert planned.requests == 1 and planned.input_tokens > 0


def test_the_estimate_counts_a_pack_as_one_request_whose_prompt_its_trials_share(workspace, monkeypatch):
    from extract.pipeline import estimate

    nct_ids = [f"NCT0000007{n}" for n in range(3)]
    for nct_id in nct_ids:
        one = trial(nct_id, COVERED + UNCOVERED)
        workspace.store_trial(RawRecord("test", "json", one.model_dump_json().encode(), one))
    packed = estimate(make_backend("hybrid", "test-model", workspace), list(workspace.trials(nct_ids)))
    monkeypatch.setenv("ELIGEX_PACK_TRIALS", "1")
    alone = estimate(make_backend("hybrid", "test-model", workspace), list(workspace.trials(nct_ids)))

    assert (packed.requests, alone.requests) == (1, 3)
    assert packed.input_tokens < alone.input_tokens / 2  # the prompt and the tool are most of a request


def test_the_version_follows_both_the_rules_and_the_prompt(workspace):
    chosen = make_backend("hybrid", "test-model", workspace).backend
    before = (chosen.prompt_version, chosen.answer_version)
    assert chosen.rules.prompt_version in before[0] and chosen.llm.prompt_version in before[0]
    chosen.rules.prompt_version = "rules-000000000000"  # an edit to a vocabulary
    assert chosen.prompt_version != before[0] and chosen.answer_version != before[1]



def test_a_criterion_whose_every_reading_the_rules_made_already_is_not_sent(openai_server, workspace):
    # The rules read ECOG 0-2 there and nothing else could be taken, however little of it their quote covers.
    text = ("Inclusion Criteria:\n\n- ECOG performance status 0-2 as assessed by the investigator at screening "
            "within 28 days before the first dose")  # fmt: skip
    summary = extract(workspace, trial("NCT00000011", text))

    assert summary.extracted == 1 and openai_server.count == 0
    assert [p.max for p in workspace.current_record("NCT00000011").eligibility.performance_status] == [2]


# -- packs: the trials in flight share a request (extract/packing.py) --------------------------------


@pytest.fixture
def patient_packs(monkeypatch):
    """A pack's trials reach it one rules reading apart: a loaded machine must not split them."""
    monkeypatch.setattr("extract.hybrid.PACK_WAIT_SECONDS", 2.0)

def therapy(nct_id: str, quote: str = "Patients who received trastuzumab") -> dict:
    return {"nct_id": nct_id, "prior_therapies": [{"requirement": "excluded", "therapy": "trastuzumab",
                                                   "evidence": {"criterion_id": "exc-2", "quote": quote}}]}  # fmt: skip


def alone(answer: dict) -> dict:
    """A trial's answer as a request asking it alone wants it."""
    return {name: value for name, value in answer.items() if name != "nct_id"}


@pytest.mark.usefixtures("patient_packs")
def test_trials_in_flight_share_one_request_each_with_its_items_and_its_share_of_the_tokens(openai_server, workspace):
    openai_server.script(tool_call({"trials": [therapy("NCT00000021"), therapy("NCT00000022")]}, usage=(1000, 100)))

    summary = extract(workspace, trial("NCT00000021", COVERED + UNCOVERED), trial("NCT00000022", COVERED + UNCOVERED),
                      trial("NCT00000023", COVERED))  # fmt: skip

    assert summary.extracted == 3 and openai_server.count == 1  # the third needs no request
    [request] = openai_server.requests
    sent = user_message(request)
    assert "Trial NCT00000021" in sent and "Trial NCT00000022" in sent and "NCT00000023" not in sent
    assert sent.count(DRAFT_HEADING) == 2  # each trial with its own draft
    assert list(request["tools"][0]["function"]["parameters"]["properties"]) == ["trials"]
    records = [workspace.current_record(nct_id) for nct_id in ("NCT00000021", "NCT00000022")]
    assert [[t.therapy for t in r.eligibility.prior_therapies] for r in records] == [["trastuzumab"], ["trastuzumab"]]
    assert [r.eligibility.prior_therapies[0].evidence.start for r in records] == [(COVERED + UNCOVERED).index("Patients")] * 2
    # the same text from each: half each, the totals whole
    assert [r.extraction.input_tokens for r in records] == [500, 500] and summary.input_tokens == 1000
    assert summary.output_tokens == 100


@pytest.mark.usefixtures("patient_packs")
def test_a_packs_request_can_be_built_without_sending_it(openai_server, workspace):
    # bench/hybrid_local.py sends packs itself, to keep the model's answers as written
    openai_server.script(tool_call({"trials": [therapy("NCT00000024"), therapy("NCT00000025")]}))
    trials = [trial("NCT00000024", COVERED + UNCOVERED), trial("NCT00000025", COVERED + LONG_ECOG)]

    extract(workspace, *trials)

    hybrid = make_backend("hybrid", "test-model", workspace).backend
    asks = []
    for one in trials:
        criteria = segment(one.eligibility_text)
        sent, llm = hybrid.plan(extract_eligibility(criteria), criteria)
        asks.append((one, sent, llm.prompt.fields))
    built = hybrid.pack_asking(asks).pack_request([(one, sent) for one, sent, _ in asks])
    assert openai_server.requests == [json.loads(json.dumps(built))]


@pytest.mark.usefixtures("patient_packs")
def test_a_quote_from_another_trial_of_the_pack_is_re_asked_with_the_reason(openai_server, workspace):
    other = UNCOVERED.replace("trastuzumab", "pertuzumab")
    wrong = {"trials": [therapy("NCT00000031"), therapy("NCT00000032")]}  # the second quotes the first's text
    right = {"trials": [therapy("NCT00000031"), therapy("NCT00000032", "Patients who received pertuzumab") | {
        "prior_therapies": [{"requirement": "excluded", "therapy": "pertuzumab",
                             "evidence": {"criterion_id": "exc-2", "quote": "Patients who received pertuzumab"}}]}]}  # fmt: skip
    openai_server.script(tool_call(wrong), tool_call(right))

    extract(workspace, trial("NCT00000031", COVERED + UNCOVERED), trial("NCT00000032", COVERED + other))

    assert openai_server.count == 2
    reask = openai_server.requests[1]["messages"][-1]["content"]
    assert "'Patients who received trastuzumab' is not in criterion exc-2 ('Patients who received pertuzumab" in reask
    assert [t.therapy for t in workspace.current_record("NCT00000032").eligibility.prior_therapies] == ["pertuzumab"]


@pytest.mark.usefixtures("patient_packs")
def test_a_pack_cut_off_is_asked_again_trial_by_trial_and_every_attempt_is_billed(openai_server, workspace):
    cut_off = tool_call('{"trials": [{"nct_id": "NCT00000041", "prior_the', usage=(2000, 4096))
    cut_off.body["choices"][0]["finish_reason"] = "length"
    openai_server.script(cut_off, tool_call(alone(therapy("NCT00000041")), usage=(600, 50), when="NCT00000041"),
                         tool_call({}, usage=(600, 10), when="NCT00000042"))  # fmt: skip

    summary = extract(workspace, trial("NCT00000041", COVERED + UNCOVERED), trial("NCT00000042", COVERED + UNCOVERED))

    assert openai_server.count == 3 and summary.failures == {}
    first, second = (workspace.current_record(n) for n in ("NCT00000041", "NCT00000042"))
    assert [t.therapy for t in first.eligibility.prior_therapies] == ["trastuzumab"]
    assert not first.extraction.incomplete and not second.extraction.incomplete
    assert summary.input_tokens == 3200 and summary.output_tokens == 4156
    assert first.extraction.input_tokens == 1600  # its half of the cut-off pack, and its own request


@pytest.mark.usefixtures("patient_packs")
def test_a_pack_that_fails_is_each_trials_failure_each_billed_its_share(openai_server, workspace):
    openai_server.script(*[tool_call('{"trials": "nothing"}', usage=(1000, 20))] * 3)  # never valid, re-asked twice

    summary = extract(workspace, trial("NCT00000051", COVERED + UNCOVERED), trial("NCT00000052", COVERED + UNCOVERED))

    assert openai_server.count == 3 and summary.failures == {}
    records = [workspace.current_record(n) for n in ("NCT00000051", "NCT00000052")]
    assert all(r.extraction.incomplete and [p.max for p in r.eligibility.performance_status] == [1] for r in records)
    assert [r.extraction.input_tokens for r in records] == [1500, 1500] and summary.input_tokens == 3000


def test_one_trial_a_request_when_packs_are_turned_off(openai_server, workspace, monkeypatch):
    monkeypatch.setenv("ELIGEX_PACK_TRIALS", "1")
    openai_server.script(tool_call({}, when="NCT00000061"), tool_call({}, when="NCT00000062"))

    extract(workspace, trial("NCT00000061", COVERED + UNCOVERED), trial("NCT00000062", COVERED + UNCOVERED))

    assert openai_server.count == 2
    assert all("trials" not in r["tools"][0]["function"]["parameters"]["properties"] for r in openai_server.requests)
