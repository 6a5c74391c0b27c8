"""The openai backend against a local OpenAI-compatible server that takes a fixed time per call.

With the model's latency fixed, the pipeline should finish `concurrency / latency` trials a second;
the ratio to that ideal shows what our side (limits, connection pool, semaphores, storage) costs.
Then a rerun over unchanged trials must send nothing, and the requests the server recorded give the
tokens per trial and the share of each request that is a stable, cacheable prefix.

What limits the ratio at high concurrency is the work each trial does on the event loop: the
rerun forced through the cache (no HTTP at all) measures that part alone, as ms_per_trial; with
it at t ms, no concurrency gets past 1000 / t trials a second.

`instructor_cost` measures what instructor's public API costs per request, in this process and
without HTTP: one part's answer through the backend's own path (`OpenAIBackend.answered`: instructor
prepares and templates the request, parses and validates the answer with the quote context) against
the same answer parsed and validated directly, and profiles the former
(bench/results/openai_instructor_profile.txt).

The server runs in a process of its own (tests/openai_server.py as a script), as a remote provider
would: in this process its Python work (parsing ~22 KB request bodies, building answers) would take
the interpreter lock from the client it is timing. Its request count and the bodies it recorded come
back over GET /v1/_stats.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from bench.run import ROOT, repeated
from cli import run_async
from extract.cache import CachedBackend
from extract.llm import ANSWER_MODEL, OpenAIBackend, Usage, quote_context
from extract.pipeline import run_extraction
from extract.sources import RawRecord
from extract.store import Workspace

LATENCY = 0.3  # seconds per call
STEPS = ((1, 10), (8, 80), (32, 320))  # (concurrency, trials)
RERUN_TRIALS = 1000
RERUN_CONCURRENCY = 32
NO_THROTTLE = {"ELIGEX_RPM": "1000000", "ELIGEX_TPM": "1000000000", "ELIGEX_MODEL": "bench-model"}


class RemoteServer:
    """tests/openai_server.py in a child process: its base URL, request count and recorded bodies."""

    def __init__(self, latency: float) -> None:
        script = ROOT / "tests" / "openai_server.py"
        self._process = subprocess.Popen(
            [sys.executable, str(script), "--latency", str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.base_url = self._process.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            self.stop()
            raise RuntimeError("the OpenAI test server did not start")

    def _stats(self, requests: bool = False) -> dict:
        url = f"{self.base_url}/_stats" + ("?requests=1" if requests else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    @property
    def count(self) -> int:
        return self._stats()["count"]

    @property
    def requests(self) -> list[dict]:
        return self._stats(requests=True)["requests"]

    def stop(self) -> None:
        self._process.stdin.close()  # the server stops when its stdin closes
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextmanager
def environment(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def store(workspace: Workspace, trials) -> None:
    with workspace.transaction():
        for trial in trials:
            workspace.store_trial(RawRecord("bench", "json", trial.model_dump_json().encode(), trial))


def extract(workspace: Workspace, trials, concurrency: int, force: bool = False) -> tuple[dict, float]:
    """One run of the real backend, as the CLI builds it; its summary and seconds."""
    backend = CachedBackend(OpenAIBackend.from_environment(), workspace)
    started, cpu = time.perf_counter(), time.process_time()
    summary = run_async(run_extraction(workspace, backend, trials, force=force, concurrency=concurrency), backend)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu  # this process only: the server runs in its own
    if summary.failures:
        raise RuntimeError(f"{len(summary.failures)} trials failed, e.g. {next(iter(summary.failures.items()))}")
    return summary.as_dict() | {"cpu_seconds": cpu}, seconds


def throughput(server: RemoteServer, trials, concurrency: int, folder: Path) -> dict:
    workspace = Workspace(folder / f"c{concurrency}")
    store(workspace, trials)
    calls = server.count
    summary, seconds = extract(workspace, trials, concurrency)
    workspace.close()
    rate = len(trials) / seconds
    ideal = concurrency / LATENCY
    return {"trials": len(trials), "concurrency": concurrency, "calls": server.count - calls,
            "seconds": round(seconds, 3), "trials_per_s": round(rate, 2), "ideal_trials_per_s": round(ideal, 2),
            "ratio": round(rate / ideal, 3), "input_tokens": summary["input_tokens"],
            "client_cpu_ms_per_call": round(summary["cpu_seconds"] / max(1, server.count - calls) * 1000, 2),
            "output_tokens": summary["output_tokens"]}  # fmt: skip


def rerun_unchanged(server: RemoteServer, trials, folder: Path) -> dict:
    """Extract every trial once, then again: up to date (skipped), then forced (answers from the cache)."""
    workspace = Workspace(folder / "rerun")
    store(workspace, trials)
    first, first_seconds = extract(workspace, trials, RERUN_CONCURRENCY)
    result = {"first_run": {"trials": len(trials), "concurrency": RERUN_CONCURRENCY, "seconds": round(first_seconds, 3),
                            "trials_per_s": round(len(trials) / first_seconds, 2),
                            "ratio": round(len(trials) / first_seconds / (RERUN_CONCURRENCY / LATENCY), 3)}}  # fmt: skip
    for label, force in (("rerun_unchanged", False), ("rerun_forced_cached", True)):
        calls = server.count
        summary, seconds = extract(workspace, trials, RERUN_CONCURRENCY, force=force)
        assert server.count == calls, f"{label}: {server.count - calls} calls on unchanged trials"
        result[label] = {"trials": len(trials), "calls": 0, "extracted": summary["extracted"],
                         "skipped": summary["skipped"], "seconds": round(seconds, 3),
                         "trials_per_s": round(len(trials) / seconds, 1),
                         "ms_per_trial": round(seconds / len(trials) * 1000, 2)}  # fmt: skip
    workspace.close()
    return result


def prompt_shape(requests: list[dict], trials: int, input_tokens: int, output_tokens: int) -> dict:
    """Tokens per trial (as the server reports usage: prompt characters / 4) and the stable prefix share."""
    prefix = body = 0
    for request in requests:
        system = "".join(m["content"] for m in request["messages"] if m["role"] == "system")
        prefix += len(system) + len(json.dumps(request.get("tools", [])))
        body += len(json.dumps(request))
    return {"requests": len(requests), "requests_per_trial": round(len(requests) / trials, 3),
            "input_tokens_per_trial": round(input_tokens / trials, 1),
            "output_tokens_per_trial": round(output_tokens / trials, 1),
            "stable_prefix_share": round(prefix / body, 3), "stable_prefix_chars_per_request": prefix // len(requests),
            "request_chars_mean": body // len(requests)}  # fmt: skip


INSTRUCTOR_REQUESTS = 300
PROFILE = ROOT / "bench" / "results" / "openai_instructor_profile.txt"


def instructor_cost(trials) -> dict:
    """CPU ms per request of the answer path through instructor, against the bare parse and validation."""
    sys.path.insert(0, str(ROOT / "tests"))
    from openai_server import first_criterion_answer
    from openai.types.chat import ChatCompletion

    from extract.text import segment

    llm = OpenAIBackend.from_environment()
    cases = []
    for trial in repeated([t for t in trials if t.eligibility_text.strip()], INSTRUCTOR_REQUESTS):
        part = llm.parts(segment(trial.eligibility_text))[0]
        request = {"messages": llm.messages(trial, part), "tools": []}
        cases.append((trial, part, first_criterion_answer(request).body))

    async def through_instructor() -> None:
        for trial, part, body in cases:
            await llm.answered(trial, part, ChatCompletion.model_validate(body), Usage())

    def bare() -> None:
        for trial, part, body in cases:
            completion = ChatCompletion.model_validate(body)
            ANSWER_MODEL.model_validate_json(completion.choices[0].message.tool_calls[0].function.arguments,
                                             context=quote_context(trial, part), strict=False)  # fmt: skip

    asyncio.run(through_instructor())  # warm: schemas and templates built once
    started = time.process_time()
    asyncio.run(through_instructor())
    instructor_ms = (time.process_time() - started) / len(cases) * 1000
    started = time.process_time()
    bare()
    bare_ms = (time.process_time() - started) / len(cases) * 1000
    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, through_instructor())
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    PROFILE.write_text(f"# {len(cases)} answers through OpenAIBackend.answered (instructor's public API), cProfile\n"
                       + "\n".join(line.replace(str(ROOT.parent), "") for line in text.getvalue().splitlines()) + "\n")  # fmt: skip
    return {"requests": len(cases), "through_instructor_cpu_ms": round(instructor_ms, 2),
            "bare_parse_cpu_ms": round(bare_ms, 2), "instructor_cpu_ms_per_request": round(instructor_ms - bare_ms, 2)}  # fmt: skip


def run(trials) -> dict:
    trials = [t for t in trials if t.eligibility_text.strip()]  # each makes at least one call
    server = RemoteServer(latency=LATENCY)
    try:
        with environment(NO_THROTTLE | {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench"}):
            with tempfile.TemporaryDirectory() as folder:
                result: dict = {"latency_s": LATENCY, "load_average_before": os.getloadavg()[0]}  # a shared machine?
                for concurrency, count in STEPS:
                    result[f"concurrency_{concurrency}"] = throughput(server, repeated(trials, count), concurrency, Path(folder))
                steps = [result[f"concurrency_{c}"] for c, _ in STEPS]
                result["prompt"] = prompt_shape(
                    server.requests, sum(s["trials"] for s in steps),
                    sum(s["input_tokens"] for s in steps), sum(s["output_tokens"] for s in steps),
                )  # fmt: skip
                result |= rerun_unchanged(server, repeated(trials, RERUN_TRIALS), Path(folder))
                result["instructor_cost"] = instructor_cost(trials)
        return result
    finally:
        server.stop()
