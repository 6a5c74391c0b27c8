"""`eligex batch`: the provider's Batch API for large jobs, at half the online price.

submit writes one request per trial part (the online path's own request: `OpenAIBackend.request`,
the very chat completion `extract` sends first) to `batches/<run_id>/input.jsonl`, uploads it and
creates the batch; each step is recorded in the `batches` table as it ends, so running submit again
after a crash goes on from the last step and never creates a second batch. collect downloads the
output and error files and puts every trial through the pipeline's own per-trial path: each answer is
read as the online path reads one (`OpenAIBackend.answered`: the same validation, without re-asks),
then `assemble`; the answer cache (extract/cache.py) is filled, and records and errors are stored in
the batch's run.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

import openai
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from extract.backend import Draft
from extract.cache import CachedBackend, cache_key
from extract.errors import InputError, UpstreamError, one_line, redact
from extract.llm import OpenAIBackend, Usage, _problem, describe, merge
from extract.pipeline import RunSummary, extract_one, new_run_id, store_one, up_to_date
from extract.store import Workspace, atomic_write
from extract.text import segment
from schemas import Criterion, Trial

ENDPOINT = "/v1/chat/completions"
BATCH_PRICE_FACTOR = 0.5  # the Batch API bills half the online list price (prompts/prices.json)
MAX_REQUESTS = 50_000  # the provider's limit per batch
FINISHED = ("completed", "expired", "cancelled", "failed")
# Why a request has no line in the output or error file, by the batch's final state.
MISSING = {"expired": "batch expired", "cancelled": "batch cancelled", "failed": "batch failed"}
DEFAULT_DEADLINE = 120.0  # seconds, for a client configured without a plain timeout
TRANSFER_DEADLINE_FACTOR = 20  # input and output files run to hundreds of megabytes


# -- the request ----------------------------------------------------------------------------------


def custom_id(trial: Trial, prompt_version: str, part: int) -> str:
    return f"{trial.nct_id}:{prompt_version}:{part}"


def requests(llm: OpenAIBackend, trial: Trial, criteria: list[Criterion]) -> list[dict[str, Any]]:
    """One Batch API line per part of the trial: the online path's first request, as it is sent."""
    return [
        {"custom_id": custom_id(trial, llm.prompt_version, index), "method": "POST", "url": ENDPOINT,
         "body": llm.request(trial, part)}
        for index, part in enumerate(llm.parts(criteria))
    ]  # fmt: skip


# -- submit -----------------------------------------------------------------------------------------


def batch_dir(workspace: Workspace, run_id: str) -> Path:
    return workspace.root / "batches" / run_id


async def submit(
    workspace: Workspace, llm: OpenAIBackend, trials: list[Trial], *, force: bool = False, stop_after: str | None = None
) -> dict[str, Any]:
    """Submit the trials that need a request; `stop_after` ("write", "upload") ends early, as a crash would."""
    done = set() if force else up_to_date(workspace, llm)
    todo = [trial for trial in trials if trial.nct_id not in done]
    cache = CachedBackend(llm, workspace)
    cached, lines, cache_keys = [], [], {}
    for trial in todo:
        if cache.cached(trial):
            cached.append(trial)  # its answer is known: extracted at once, no request
        else:
            lines += requests(llm, trial, segment(trial.eligibility_text))
            cache_keys[trial.nct_id] = cache.key(trial)
    if len(lines) > MAX_REQUESTS:
        raise InputError(f"{len(lines)} requests are more than a batch holds ({MAX_REQUESTS}): submit fewer trials")
    custom_ids = [line["custom_id"] for line in lines]
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    row = _same_requests(workspace, llm, custom_ids) if lines else None
    if row is None:
        run_id = new_run_id(llm, "-batch")
        workspace.start_run(run_id, llm.name, llm.model, llm.prompt_version)
        summary = RunSummary(run_id=run_id, backend=llm.name)
        for trial in cached:
            await store_one(workspace, trial, await extract_one(cache, trial), summary)
        if not lines:
            workspace.finish_run(run_id, summary.as_dict() | {"failures": summary.failures})
            return {"run_id": run_id, "batch_id": None, "state": "nothing to submit", "requests": 0,
                    "skipped": len(done), "from_cache": len(cached), "failed": len(summary.failures)}  # fmt: skip
        atomic_write(batch_dir(workspace, run_id) / "input.jsonl", text.encode())
        workspace.save_batch(run_id, state="written", model=llm.model, prompt_version=llm.prompt_version,
                             custom_ids=custom_ids, cache_keys=cache_keys)  # fmt: skip
        row = _row(workspace, run_id)
    client = _client(llm)
    if row["state"] == "written" and stop_after != "write":
        path = batch_dir(workspace, row["run_id"]) / "input.jsonl"
        if not path.exists():  # removed since: the same requests make the same file
            atomic_write(path, text.encode())
        upload = client.files.create(file=(path.name, path.read_bytes()), purpose="batch")
        uploaded = await _call("upload", client, upload, transfer=True)
        workspace.save_batch(row["run_id"], state="uploaded", input_file_id=uploaded.id)
        row = _row(workspace, row["run_id"])
    if row["state"] == "uploaded" and stop_after not in ("write", "upload"):
        created = await _created(client, row["input_file_id"]) or await _call(
            "batch creation", client, client.batches.create(
                input_file_id=row["input_file_id"], endpoint=ENDPOINT, completion_window="24h",
                metadata={"eligex_run": row["run_id"]},
            ),
        )  # fmt: skip
        _update(workspace, row["run_id"], created)
        row = _row(workspace, row["run_id"])
    return _report(row) | {"requests": len(row["custom_ids"]), "skipped": len(done), "from_cache": len(cached)}


def _same_requests(workspace: Workspace, llm: OpenAIBackend, custom_ids: list[str]) -> dict[str, Any] | None:
    """An uncollected batch holding exactly these requests: resumed or reported, never sent twice."""
    for row in workspace.batches():
        same = (row["model"], row["prompt_version"], row["custom_ids"]) == (llm.model, llm.prompt_version, custom_ids)
        if same and row["collected_at"] is None:
            return row
    return None


async def _created(client: openai.AsyncOpenAI, input_file_id: str) -> Any:
    """The batch made from this file when a crash came between creating it and recording it."""
    page = await _call("batch listing", client, client.batches.list(limit=100))
    return next((batch for batch in page.data if batch.input_file_id == input_file_id), None)


# -- status -----------------------------------------------------------------------------------------


def find(workspace: Workspace, ref: str | None) -> dict[str, Any]:
    """The batch named by its batch id or run id, or the newest one."""
    rows = workspace.batches()
    found = next((row for row in rows if ref in (None, row["run_id"], row["batch_id"])), None)
    if found is None:
        where = f" {ref!r}" if ref else "es"
        raise InputError(f"no batch{where} in {workspace.db_path}: `eligex batch submit` first")
    return found


async def poll(workspace: Workspace, client: openai.AsyncOpenAI, ref: str | None) -> dict[str, Any]:
    """The batch's state, asked of the provider once (unless not created yet or already collected)."""
    row = find(workspace, ref)
    if row["batch_id"] and row["collected_at"] is None:
        batch = await _call("batch status", client, client.batches.retrieve(row["batch_id"]))
        _update(workspace, row["run_id"], batch)
        row = _row(workspace, row["run_id"])
    return _report(row)


async def watch(
    workspace: Workspace, client: openai.AsyncOpenAI, ref: str | None, *, wait: bool = False,
    interval: float = 60.0, on_poll: Callable[[dict[str, Any]], None] = lambda report: None,
) -> dict[str, Any]:  # fmt: skip
    """Poll once, or until the batch is finished; the workspace is held only while polling."""
    while True:
        with workspace.writing(wait_seconds=interval):
            report = await poll(workspace, client, ref)
        on_poll(report)
        if not wait or report["state"] in FINISHED or not report["batch_id"] or report["collected"]:
            return report
        await asyncio.sleep(interval)


def _update(workspace: Workspace, run_id: str, batch: Any) -> None:
    counts = batch.request_counts.model_dump() if batch.request_counts else None
    workspace.save_batch(run_id, batch_id=batch.id, state=batch.status, output_file_id=batch.output_file_id,
                         error_file_id=batch.error_file_id, request_counts=counts)  # fmt: skip


def _report(row: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": row["run_id"], "batch_id": row["batch_id"], "state": row["state"],
            "request_counts": row["request_counts"], "collected": row["collected_at"] is not None}  # fmt: skip


# -- collect ----------------------------------------------------------------------------------------


async def collect(workspace: Workspace, llm: OpenAIBackend, row: dict[str, Any]) -> RunSummary | None:
    """Store every trial of a finished batch in its run; None when it was collected already."""
    if row["collected_at"] is not None:
        return None
    if not row["batch_id"]:
        raise InputError(f"run {row['run_id']} was not submitted yet: run `eligex batch submit` again to resume")
    if (row["model"], row["prompt_version"]) != (llm.model, llm.prompt_version):
        raise InputError(f"batch {row['batch_id']} was made with {row['prompt_version']}; "
                         f"this eligex sends {llm.prompt_version}: submit the trials again")  # fmt: skip
    client = _client(llm)
    batch = await _call("batch status", client, client.batches.retrieve(row["batch_id"]))
    _update(workspace, row["run_id"], batch)
    if batch.status not in FINISHED:
        raise InputError(f"batch {batch.id} is {batch.status}: wait with `eligex batch status {batch.id} --wait`")
    lines: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    for name, file_id in (("output.jsonl", batch.output_file_id), ("errors.jsonl", batch.error_file_id)):
        if file_id:
            content = await _call("download", client, client.files.content(file_id), transfer=True)
            atomic_write(batch_dir(workspace, row["run_id"]) / name, content.content)
            unreadable += read_lines(name, content.text, lines)
    missing = MISSING.get(batch.status, "no result in the batch output")
    if batch.status == "failed" and batch.errors and batch.errors.data:
        missing += f": {batch.errors.data[0].message}".splitlines()[0]
    if unreadable:  # some request's result may have been one of them
        missing += f" ({'; '.join(unreadable)})"
    # The batch's answers are new: they replace any cached answer for the same text (`refresh`).
    answers = CachedBackend(Answers(llm, lines, row, missing), workspace, refresh=True)
    summary = RunSummary(run_id=row["run_id"], backend=llm.name)
    trials = {trial.nct_id: trial for trial in workspace.trials(list(row["cache_keys"]))}
    for nct_id in row["cache_keys"]:
        if nct_id in trials:
            trial = trials[nct_id]
            await store_one(workspace, trial, await extract_one(answers, trial), summary)
        else:
            summary.failures[nct_id] = "InputError: the trial is no longer in the workspace"
    workspace.finish_run(row["run_id"], summary.as_dict() | {"failures": summary.failures, "batch_id": batch.id})
    workspace.save_batch(row["run_id"], collected_at=datetime.now(timezone.utc))
    return summary


_CUSTOM_ID = re.compile(r'"custom_id"\s*:\s*"([^"\\]+)"')


def read_lines(name: str, text: str, lines: dict[str, dict[str, Any]]) -> list[str]:
    """Add the file's lines to `lines` by custom_id. A line that cannot be read (a file cut short)
    becomes its request's error when its custom_id can still be read; the others are returned, as
    one note naming them, for the reason of the requests left without a result."""
    lost = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as error:
            problem = f"is not JSON (cut short?): {error}"
        else:
            if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
                lines[line["custom_id"]] = line
                continue
            problem = "is not a batch result (no custom_id)"
        found = _CUSTOM_ID.search(raw)
        if found:
            lines[found[1]] = {"unreadable": f"line {number} of {name} {problem}"}
        else:
            lost.append(number)
    if not lost:
        return []
    count = f"{len(lost)} line{'s' if len(lost) > 1 else ''}"
    return [f"{count} of {name} could not be read: line{'s' if len(lost) > 1 else ''} {', '.join(map(str, lost[:10]))}"]


@dataclass
class Answers:
    """The batch's lines as a backend, so that collect stores each trial exactly as `extract` does."""

    llm: OpenAIBackend
    lines: dict[str, dict[str, Any]]
    row: dict[str, Any]
    missing: str  # the reason for a request without a line
    name: str = "openai"

    @property
    def model(self) -> str:
        return self.llm.model

    @property
    def prompt_version(self) -> str:
        return self.llm.prompt_version

    @property
    def answer_version(self) -> str:
        return self.llm.answer_version

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        if cache_key(self.answer_version, trial) != self.row["cache_keys"][trial.nct_id]:
            raise InputError("the trial's text changed after the batch was submitted: submit it again")
        usage = Usage()
        parts = self.llm.parts(criteria)  # as submitted: the same text, the same answer version
        answers, failed = [], None
        for index, part in enumerate(parts):
            try:  # every part read, so that a failure carries what all of them were billed
                completion = completion_of(self.lines.get(custom_id(trial, self.prompt_version, index)), self.missing)
                answers.append(await self.llm.answered(trial, part, completion, usage))
            except UpstreamError as error:
                failed = failed or error
        if failed is not None:
            raise self.llm.billed(failed, usage, BATCH_PRICE_FACTOR)
        return self.llm.draft(merge(answers), usage, price_factor=BATCH_PRICE_FACTOR)


def completion_of(line: dict[str, Any] | None, missing: str) -> ChatCompletion:
    """One line of the output or error file as the chat completion it holds, or UpstreamError with a
    one-line reason."""
    if line is None:
        raise UpstreamError(missing)
    if "unreadable" in line:
        raise UpstreamError(one_line(line["unreadable"], 300))
    error, response = line.get("error"), line.get("response") or {}
    if error:
        if error.get("code") == "batch_expired":
            raise UpstreamError("batch expired")
        raise UpstreamError(one_line(f"batch request failed: {error.get('code')}: {error.get('message')}", 300))
    body = response.get("body")
    if response.get("status_code") != 200:
        message = ((body or {}).get("error") or {}).get("message") if isinstance(body, dict) else None
        raise UpstreamError(one_line(f"HTTP {response.get('status_code')} {message or 'error'}", 300))
    try:
        return ChatCompletion.model_validate(body)
    except ValidationError as invalid:
        raise UpstreamError(f"not a chat completion: {_problem(invalid)}") from None


# -- transport --------------------------------------------------------------------------------------


def _client(llm: OpenAIBackend) -> openai.AsyncOpenAI:
    # A handful of control calls: the client's own retries (which honour Retry-After) are enough.
    return llm.client.with_options(max_retries=3)


async def _call(what: str, client: openai.AsyncOpenAI, request: Awaitable[Any], transfer: bool = False) -> Any:
    """One control call, within a deadline: the client's timeout (ELIGEX_LLM_TIMEOUT), the client's own
    retries included; a file's upload or download, `TRANSFER_DEADLINE_FACTOR` times that."""
    deadline = client.timeout if isinstance(client.timeout, (int, float)) else DEFAULT_DEADLINE
    deadline *= TRANSFER_DEADLINE_FACTOR if transfer else 1
    try:
        async with asyncio.timeout(deadline):
            return await request
    except TimeoutError:
        raise UpstreamError(redact(f"Batch API {what} at {client.base_url} failed: "
                                   f"no complete answer within {deadline:g} s")) from None  # fmt: skip
    except openai.OpenAIError as error:
        raise UpstreamError(redact(f"Batch API {what} at {client.base_url} failed: {describe(error)}")) from error


def _row(workspace: Workspace, run_id: str) -> dict[str, Any]:
    return next(row for row in workspace.batches() if row["run_id"] == run_id)
