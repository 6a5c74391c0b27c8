"""The openai backend against a real server: llama-cpp-python running Gemma 3 270M (`make test-llm`).

The model is tiny and its answers poor: these tests hold eligex to its contract with real servers
(requests they accept, answers that end, failures said in one line, the cache), never to quality.
Skipped unless ELIGEX_REAL_LLM=1 (`make test-llm` sets it, after installing the server).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from local_llm import CONTEXT_TOKENS, MODEL_ALIAS, local_llm  # noqa: F401 (a fixture)

from extract.importer import files_under, import_files
from extract.llm import OpenAIBackend
from extract.store import Workspace
from extract.text import segment

pytestmark = pytest.mark.skipif(not os.environ.get("ELIGEX_REAL_LLM"), reason="`make test-llm` runs these")

ROOT = Path(__file__).resolve().parents[1]
ELIGEX = Path(sys.executable).with_name("eligex")
TRIAL = "NCT06450314"  # the seed trial: 948 characters of criteria, one request
PACKED_WITH = "NCT05913115"  # the hybrid sends one criterion of it (68 characters): it shares the seed's request
SHARED_DATA = ROOT.parent / "shared" / "data"
# A bound on each command, so that an answer that never ends fails the test instead of hanging it.
# The answers are bounded at 256 tokens: grammar-constrained sampling over Gemma's 262,000-token
# vocabulary is slow on a CPU.
BOUND_SECONDS = 900


def environment(base_url: str, workspace: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ELIGEX_"))}
    return env | {"OPENAI_BASE_URL": base_url, "ELIGEX_WORKSPACE": str(workspace), "ELIGEX_LLM_TIMEOUT": "600",
                  "ELIGEX_LLM_CONTEXT": str(CONTEXT_TOKENS), "ELIGEX_LLM_MAX_TOKENS": "256"} | settings  # fmt: skip


def eligex(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ELIGEX), *args], env=env, capture_output=True, text=True, timeout=BOUND_SECONDS,
                          cwd=ROOT)  # fmt: skip


def failed_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("failed: ")]


def test_the_server_refuses_a_tool_role_and_accepts_our_re_ask(local_llm, tmp_path, monkeypatch):
    for name, value in environment(local_llm, tmp_path / "ws").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ELIGEX_LLM_MAX_TOKENS", "64")  # the answer's content does not matter here
    workspace = Workspace(tmp_path / "ws")
    try:
        import_files(workspace, files_under([ROOT / "evals" / "records"]))
        [trial] = workspace.trials([TRIAL])
        backend = OpenAIBackend.from_environment()
        assert backend.model == MODEL_ALIAS  # asked of the server: nothing named, no OpenAI default
        request = backend.request(trial, segment(trial.eligibility_text))
        # What instructor's tools mode re-asks with: the chat template has no `tool` role, the server says 500.
        tool_reask = [*request["messages"], {"role": "assistant", "content": "", "tool_calls": [{
            "id": "call_1", "type": "function", "function": {"name": "ExtractedEligibility", "arguments": "{"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Validation Error found"}]  # fmt: skip
        refused = httpx.post(f"{local_llm}/chat/completions", json=request | {"messages": tool_reask}, timeout=600)
        assert refused.status_code == 500
        # What eligex sends of it (`alternating`): the tool call as an assistant turn, the problem as a user turn. Accepted.
        response = asyncio.run(_post(backend, request | {"messages": tool_reask}))
        assert response.choices and response.choices[0].message.tool_calls
    finally:
        workspace.close()


def test_one_trial_end_to_end_then_from_the_cache(local_llm, tmp_path):
    env = environment(local_llm, tmp_path / "ws")
    assert eligex(env, "import", "evals/records").returncode == 0

    first = eligex(env, "extract", TRIAL, "--backend", "openai", "--concurrency", "1")

    assert "Traceback" not in first.stderr
    assert first.returncode in (0, 1), first.stderr
    if first.returncode == 1:  # a poor answer the model never corrected: said in one line
        [line] = failed_lines(first)
        assert line.startswith(f"failed: {TRIAL}: UpstreamError: ") and len(line) < 1100
        return
    record = json.loads((tmp_path / "ws" / "structured" / f"{TRIAL}.json").read_text())
    extraction = record["extraction"]
    assert (extraction["backend"], extraction["model"]) == ("openai", MODEL_ALIAS)
    assert extraction["input_tokens"] > 0 and extraction["cost_usd"] is None  # a local model has no price

    again = eligex(env, "extract", TRIAL, "--backend", "openai", "--force")

    assert again.returncode == 0, again.stderr
    cached = json.loads((tmp_path / "ws" / "structured" / f"{TRIAL}.json").read_text())
    assert (cached["extraction"]["input_tokens"], cached["extraction"]["cost_usd"]) == (0, 0.0)  # the cache answered
    assert cached["eligibility"] == record["eligibility"]


def test_the_hybrid_sends_a_real_server_a_pack_of_scoped_requests_and_keeps_every_rules_item(local_llm, tmp_path):
    env = environment(local_llm, tmp_path / "ws")
    assert eligex(env, "import", "evals/records", str(SHARED_DATA / "ctgov-v2" / f"{PACKED_WITH}.json")).returncode == 0
    trials = (TRIAL, PACKED_WITH)
    record_files = [tmp_path / "ws" / "structured" / f"{nct_id}.json" for nct_id in trials]
    assert eligex(env, "extract", *trials, "--backend", "rules").returncode == 0
    rules = [json.loads(path.read_text())["eligibility"] for path in record_files]

    # Both trials in flight: one request for both (the pack's schema as the grammar), asked again trial by
    # trial if its answer is cut off.
    hybrid = eligex(env, "extract", *trials, "--backend", "hybrid", "--concurrency", "2")

    assert hybrid.returncode == 0 and "Traceback" not in hybrid.stderr, hybrid.stderr
    for path, before in zip(record_files, rules):
        record = json.loads(path.read_text())
        assert record["extraction"]["backend"] == "hybrid" and record["extraction"]["input_tokens"] > 0
        assert not [w for w in record["extraction"]["warnings"] if "HTTP" in w]  # the server took every request
        # never below rules: a model item replaces a rules item or adds one; a failed answer keeps them all
        for name, value in before.items():
            if isinstance(value, list) and name != "other":
                assert len(record["eligibility"][name]) >= len(value), name
            elif value is not None and name != "origins":
                assert record["eligibility"][name] is not None, name


def test_an_answer_cut_off_at_its_bound_is_a_one_line_error(local_llm, tmp_path):
    env = environment(local_llm, tmp_path / "ws", ELIGEX_LLM_MAX_TOKENS="1")  # Gemma often answers `{}`: 3 tokens
    assert eligex(env, "import", "evals/records").returncode == 0

    result = eligex(env, "extract", TRIAL, "--backend", "openai", "--concurrency", "1")

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert failed_lines(result) == [f"failed: {TRIAL}: UpstreamError: the model's answer was cut off at its output token limit"]


async def _post(backend: OpenAIBackend, request: dict):
    try:
        return await backend._post(**request)
    finally:
        await backend.client.close()
