"""`eligex extract`: run a backend over stored trials, one record per trial, nothing lost on a crash.

Each trial's result is written as soon as it is ready (the record file atomically, then its row,
committed with the rows of the other trials finishing meanwhile), so a killed run loses at most the
trials in flight; running again skips every trial whose
current record came from the same content and the same backend version, and does the rest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

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


def new_run_id(backend: Backend, kind: str = "") -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{backend.name}{kind}"


def up_to_date(workspace: Workspace, backend: Backend) -> set[str]:
    """Trials whose latest successful extraction used this backend version on the current content."""
    rows = workspace.db.execute(
        """
        SELECT e.nct_id
        FROM extractions e JOIN runs r USING (run_id) JOIN trials t USING (nct_id)
        WHERE e.status = 'ok' AND e.content_sha256 = t.content_sha256
          AND r.backend = ? AND r.model IS NOT DISTINCT FROM ? AND r.prompt_version IS NOT DISTINCT FROM ?
        """,
        [backend.name, backend.model, backend.prompt_version],
    ).fetchall()
    return {nct_id for (nct_id,) in rows}


async def run_extraction(
    workspace: Workspace,
    backend: Backend,
    trials: list[Trial],
    *,
    force: bool = False,
    concurrency: int = 4,
    on_done: Callable[[str], None] = lambda nct_id: None,
) -> RunSummary:
    summary = RunSummary(run_id=new_run_id(backend), backend=backend.name)
    workspace.start_run(summary.run_id, backend.name, backend.model, backend.prompt_version)
    done = set() if force else up_to_date(workspace, backend)
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
                await store_one(workspace, trial, outcome, summary)
        on_done(trial.nct_id)

    await asyncio.gather(*(one(trial) for trial in trials))
    workspace.finish_run(summary.run_id, summary.as_dict() | {"failures": summary.failures})
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


async def store_one(workspace: Workspace, trial: Trial, outcome: EligibilityRecord | Failure, summary: RunSummary) -> None:
    # The writes (record file with fsync, DuckDB row) go to a worker thread, grouped with the other
    # trials' (Workspace.write_row): the event loop goes on with the trials in flight meanwhile, and
    # this trial counts as done only once its file and row are on disk.
    if isinstance(outcome, Failure):
        summary.failures[trial.nct_id] = outcome.reason
        summary.input_tokens += outcome.billed.input_tokens
        summary.output_tokens += outcome.billed.output_tokens
        summary.cost_usd += outcome.billed.cost_usd or 0.0
        await workspace.save_error(summary.run_id, trial, outcome.reason, outcome.billed)
        return
    await workspace.save_record(summary.run_id, outcome)
    summary.extracted += 1
    summary.input_tokens += outcome.extraction.input_tokens
    summary.output_tokens += outcome.extraction.output_tokens
    summary.cost_usd += outcome.extraction.cost_usd or 0.0
