"""`eligex extract`: run a backend over stored trials, one record per trial, nothing lost on a crash.

Each trial's result is written as soon as it is ready (its row, committed with the rows of the other
trials finishing meanwhile, then the record file), so a killed run loses at most the trials in
flight; running again skips every trial whose current record came from the same content and the
same backend version, and does the rest.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

from extract.backend import Backend, assemble
from extract.errors import Billed, UpstreamUnreachable, billed, one_line, redact
from extract.store import Workspace
from extract.text import segment
from schemas import EligibilityRecord, Trial


@dataclass
class RunSummary:
    run_id: str
    backend: str
    extracted: int = 0
    skipped: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id, "backend": self.backend, "extracted": self.extracted, "skipped": self.skipped,
            "failed": len(self.failures), "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }  # fmt: skip


# Output tokens per request, for estimates only: a generous bound (answers measured at about 40 tokens
# per trial, bench/results/openai.json), so that the estimate errs high.
OUTPUT_TOKENS_PER_REQUEST = 400


@dataclass
class Estimate:
    trials: int = 0
    cached: int = 0  # answered from the LLM cache: no request, no cost
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = 0.0  # None when the price table does not know the model


def estimate(backend, trials: list[Trial], on_trial: Callable[[], None] = lambda: None) -> Estimate:
    """What extracting `trials` with the cached LLM backend (extract/cache.py) will ask and cost, before
    anything is sent; under `refresh` no trial is answered from the cache. `on_trial` after each trial."""
    from extract.llm import Usage, cost_usd

    llm = backend.backend
    result = Estimate(trials=len(trials))
    parts = 0
    for trial in trials:
        if backend.cached(trial):
            result.cached += 1
        else:
            criteria = segment(trial.eligibility_text)
            parts += len(llm.parts(criteria))
            result.input_tokens += llm.input_tokens_estimate(trial, criteria)
        on_trial()
    result.requests = math.ceil(parts / getattr(llm, "pack_trials", 1))  # the hybrid's trials share requests
    result.output_tokens = result.requests * OUTPUT_TOKENS_PER_REQUEST
    result.usd = cost_usd(llm.prices, llm.model, Usage(result.input_tokens, result.output_tokens))
    return result


def new_run_id(backend: Backend, kind: str = "") -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{backend.name}{kind}"


# The trials whose current record (the one `show` and `export` serve) came from this backend version
# on the current content: per backend, so that another backend's record is never "up to date".
_UP_TO_DATE = """
    SELECT c.nct_id
    FROM current_records c JOIN extractions e USING (run_id, nct_id) JOIN runs r USING (run_id)
         JOIN trials t ON t.nct_id = c.nct_id
    WHERE e.status = 'ok' AND NOT e.incomplete AND e.content_sha256 = t.content_sha256
      AND r.backend = ? AND r.model IS NOT DISTINCT FROM ? AND r.prompt_version IS NOT DISTINCT FROM ?
"""


def up_to_date(workspace: Workspace, backend: Backend) -> set[str]:
    rows = workspace.db.execute(_UP_TO_DATE, _versions(backend)).fetchall()
    return {nct_id for (nct_id,) in rows}


def _versions(backend: Backend) -> list:
    return [backend.name, backend.model, backend.prompt_version]


@dataclass(frozen=True)
class Plan:
    """Which stored trials a run extracts, decided in the database before any trial is loaded."""

    nct_ids: list[str] | None  # the trials named, or None for all
    force: bool
    to_extract: int
    skipped: int  # up to date

    def where(self, backend: Backend) -> tuple[str, list]:
        named = "(? IS NULL OR nct_id IN (SELECT unnest(?)))"
        fresh = f"(? OR nct_id NOT IN ({_UP_TO_DATE}))"
        return f"{named} AND {fresh}", [self.nct_ids, self.nct_ids or [], self.force, *_versions(backend)]


def plan(workspace: Workspace, backend: Backend, nct_ids: list[str] | None = None, force: bool = False) -> Plan:
    counted = Plan(nct_ids, force, 0, 0)
    where, parameters = counted.where(backend)
    named = "(? IS NULL OR nct_id IN (SELECT unnest(?)))"
    to_extract, total = workspace.db.execute(
        f"SELECT count(*) FILTER (WHERE {where}), count(*) FILTER (WHERE {named}) FROM trials",
        parameters + [nct_ids, nct_ids or []],
    ).fetchone()
    return Plan(nct_ids, force, to_extract, total - to_extract)


def planned_rows(workspace: Workspace, backend: Backend, chosen: Plan, size: int) -> Iterator[list[tuple[str, str]]]:
    """The trials `chosen` extracts as (nct_id, trial JSON) rows, `size` at a time, streamed from the
    database in one scan, in the table's order (a cursor of its own: the run's writes go on meanwhile).
    The database's memory holds a chunk of documents, not the whole run's (an ORDER BY over them
    outgrew its buffer pool at 15,000 trials); and each document is read once: a lookup of each batch
    by id scanned the whole table, a cost per batch that grew with the table (179 ms a batch of 64 at
    10,000 trials, a quarter of the writer's time)."""
    where, parameters = chosen.where(backend)
    documents = workspace.db.cursor()
    try:
        documents.execute(f"SELECT nct_id, trial FROM trials WHERE {where}", parameters)
        while batch := documents.fetchmany(size):
            yield batch
    finally:
        documents.close()


def planned_trials(workspace: Workspace, backend: Backend, chosen: Plan) -> list[Trial]:
    """The trials `chosen` extracts, in id order."""
    trials = [Trial.model_validate_json(document) for rows in planned_rows(workspace, backend, chosen, 512)
              for _, document in rows]  # fmt: skip
    return sorted(trials, key=lambda trial: trial.nct_id)


# Trials per batch of the pool: one task for a worker, one transaction and one flush for the writer.
POOL_BATCH = 64


def run_in_pool(
    workspace: Workspace,
    backend: Backend,
    chosen: Plan,
    *,
    workers: int,
    on_done: Callable[[str], None] = lambda nct_id: None,
    run_id: str | None = None,
    batch_size: int = POOL_BATCH,
) -> RunSummary:
    """Extract the trials `chosen` names in `workers` processes, for a backend that computes (the rules):
    each worker extracts a batch of trials (extract/parallel.py), and this process, the one writer,
    stores each batch in one transaction as it comes back, in the order read. One worker too, so
    that its extraction and the writes overlap; one batch only is extracted in this process.
    A kill loses only the batches in flight; Ctrl-C stops the pool and the run ends 'interrupted'."""
    from extract.parallel import extract_rows, start_worker

    summary = RunSummary(run_id=run_id or new_run_id(backend), backend=backend.name, skipped=chosen.skipped)
    workspace.start_run(summary.run_id, backend.name, backend.model, backend.prompt_version)
    batches = planned_rows(workspace, backend, chosen, batch_size)
    pool = None
    if chosen.to_extract > batch_size:  # a pool is worth its start for more than one batch
        # fork: the workers start at once, with the modules this process has loaded
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=start_worker, initargs=(os.getpid(),))
    status = "failed"
    try:
        if pool is None:
            results = (extract_rows(rows, backend) for rows in batches)
        else:
            results = _in_order(pool, functools.partial(extract_rows, backend=backend), batches, ahead=2 * workers)
        for batch in results:
            workspace.save_results(summary.run_id, batch)
            for result in batch:
                if result.record is None:
                    summary.failures[result.nct_id] = result.error
                else:
                    summary.extracted += 1
                summary.input_tokens += result.input_tokens
                summary.output_tokens += result.output_tokens
                summary.cost_usd += result.cost_usd or 0.0
                on_done(result.nct_id)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        summary.extracted = workspace.stored_records(summary.run_id)  # what it stored, the batch under way too
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        batches.close()
        try:
            workspace.finish_run(summary.run_id, summary.as_dict() | {"failures": summary.failures}, status)
        except Exception:
            if status == "finished":
                raise
    return summary


def _in_order(pool: ProcessPoolExecutor, work: Callable, items: Iterator, ahead: int) -> Iterator:
    """`work` of each item in the pool, the results in the items' order, with at most `ahead` items
    submitted and not yet taken (memory stays flat however many items there are)."""
    waiting: collections.deque = collections.deque()
    for item in items:
        waiting.append(pool.submit(work, item))
        if len(waiting) >= ahead:
            yield waiting.popleft().result()
    while waiting:
        yield waiting.popleft().result()


async def run_extraction(
    workspace: Workspace,
    backend: Backend,
    trials: list[Trial],
    *,
    force: bool = False,
    concurrency: int = 4,
    on_done: Callable[[str], None] = lambda nct_id: None,
    run_id: str | None = None,
    split: str | None = None,
    skipped: int | None = None,
) -> RunSummary:
    """Extract `trials` in a new run. An evaluation run (`split`, the gold split it extracts) stores
    its records in the run only: what `show` and `export` serve stays as it was.

    `skipped`: the caller left the up-to-date trials out already (`plan`), this many.
    The run ends 'finished', 'interrupted' (Ctrl-C: the trials stored so far stay) or 'failed'.
    """
    summary = RunSummary(run_id=run_id or new_run_id(backend), backend=backend.name, skipped=skipped or 0)
    workspace.start_run(summary.run_id, backend.name, backend.model, backend.prompt_version, split=split)
    done = set() if force or skipped is not None else up_to_date(workspace, backend)
    extracting = asyncio.Semaphore(concurrency)  # the requests in flight, for an LLM backend
    # A result waiting for its write holds no extraction slot, so storage latency does not idle the
    # model; but the trials between start and stored are bounded too, so that slow storage slows
    # extraction down rather than piling results up in memory.
    started = asyncio.Semaphore(2 * concurrency)

    async def one(trial: Trial) -> None:
        if trial.nct_id in done:
            summary.skipped += 1
        else:
            async with started:
                async with extracting:
                    outcome = await extract_one(backend, trial)
                await store_one(workspace, trial, outcome, summary, serve=split is None)
        on_done(trial.nct_id)

    status = "failed"
    try:
        await asyncio.gather(*(one(trial) for trial in trials))
        status = "finished"
    except (asyncio.CancelledError, KeyboardInterrupt):
        status = "interrupted"
        # Rows still queued are written now; the run's count is then what it stored, not what it saw.
        summary.extracted = workspace.stored_records(summary.run_id)
        raise
    finally:
        try:
            workspace.finish_run(summary.run_id, summary.as_dict() | {"failures": summary.failures}, status)
        except Exception:
            if status == "finished":
                raise  # otherwise the error that ended the run is the one to report
    return summary


@dataclass(frozen=True)
class Failure:
    reason: str  # one line, redacted
    billed: Billed = Billed()  # what the provider charged for the failed work


async def extract_one(backend: Backend, trial: Trial) -> EligibilityRecord | Failure:
    """The trial's record, or why it has none: one trial's failure never stops the batch (an
    upstream that cannot be reached at all does: every other trial would fail the same way)."""
    try:
        criteria = segment(trial.eligibility_text)
        draft = await backend.extract(trial, criteria)
        return assemble(trial, criteria, draft, backend)
    except UpstreamUnreachable:
        raise
    except Exception as error:
        return Failure(redact(one_line(f"{type(error).__name__}: {error}", limit=1000)), billed(error))


async def store_one(workspace: Workspace, trial: Trial, outcome: EligibilityRecord | Failure, summary: RunSummary,
                    serve: bool = True) -> None:  # fmt: skip
    # The writes (record file with fsync, DuckDB row) go to a worker thread, grouped with the other
    # trials' (Workspace.write_rows): the event loop goes on with the trials in flight meanwhile, and
    # this trial counts as done only once its file and row are on disk.
    if isinstance(outcome, Failure):
        summary.failures[trial.nct_id] = outcome.reason
        summary.input_tokens += outcome.billed.input_tokens
        summary.output_tokens += outcome.billed.output_tokens
        summary.cost_usd += outcome.billed.cost_usd or 0.0
        await workspace.save_error(summary.run_id, trial, outcome.reason, outcome.billed)
        return
    await workspace.save_record(summary.run_id, outcome, serve=serve)
    summary.extracted += 1
    summary.input_tokens += outcome.extraction.input_tokens
    summary.output_tokens += outcome.extraction.output_tokens
    summary.cost_usd += outcome.extraction.cost_usd or 0.0
