"""The extraction as a pure function of rows, for a process pool (`extract --workers`) or a batch engine.

`extract_rows` takes trials as the workspace stores them (`nct_id`, `trial`: the normalised trial as
JSON) and returns one result per trial: the record as JSON, or why there is none. Nothing is read
or written besides: the caller stores the results (`Workspace.save_results`), so any engine that
maps a function over partitions can run it (examples/dask_extract.py), and the records are the
ones `eligex extract` writes.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from dataclasses import dataclass
from typing import Any, Iterable

from schemas import Trial

RESULT_COLUMNS = ("nct_id", "content_sha256", "record", "error", "input_tokens", "output_tokens", "cost_usd",
                  "incomplete")


@dataclass(frozen=True)
class Result:
    """One trial's outcome, small to send between processes: the record's JSON (as `structured/`
    holds it), or the one-line reason it failed, and what it cost."""

    nct_id: str
    content_sha256: str
    record: str | None  # the EligibilityRecord as JSON, indented as its file
    error: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    incomplete: bool = False  # the record's `extraction.incomplete`: the next run redoes it

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RESULT_COLUMNS}


def extract_rows(rows: Iterable[tuple[str, str]], backend: Any = None) -> list[Result]:
    """Each (nct_id, trial JSON) row's result with `backend` (default: the rules). A trial that fails
    is a result with its reason; an upstream that cannot be reached at all raises, as in `extract`."""
    return asyncio.run(_extract_all(list(rows), backend or _default_backend()))


def extract_frame(frame: Any, backend: Any = None) -> Any:
    """`extract_rows` over a pandas DataFrame with columns nct_id and trial (a partition, for Dask's
    `map_partitions`); a DataFrame of RESULT_COLUMNS."""
    import pandas

    results = extract_rows(zip(frame["nct_id"], frame["trial"]), backend)
    return pandas.DataFrame([result.as_dict() for result in results], columns=list(RESULT_COLUMNS))


async def _extract_all(rows: list[tuple[str, str]], backend: Any) -> list[Result]:
    from extract.pipeline import Failure, extract_one

    results = []
    for nct_id, document in rows:
        try:
            trial = Trial.model_validate_json(document)
        except ValueError as error:  # a row that is not a trial: that row's failure
            results.append(Result(nct_id, "", None, f"not a stored trial: {str(error).splitlines()[0]}"))
            continue
        outcome = await extract_one(backend, trial)
        if isinstance(outcome, Failure):
            billed = outcome.billed
            results.append(Result(nct_id, trial.source.content_sha256, None, outcome.reason, billed.input_tokens,
                                  billed.output_tokens, billed.cost_usd))  # fmt: skip
        else:
            extraction = outcome.extraction
            results.append(Result(nct_id, trial.source.content_sha256, outcome.model_dump_json(indent=2), None,
                                  extraction.input_tokens, extraction.output_tokens, extraction.cost_usd,
                                  extraction.incomplete))  # fmt: skip
    return results


_backend: Any = None


def _default_backend() -> Any:
    """One rules backend per process (its version hashes the rules' files)."""
    global _backend
    if _backend is None:
        from extract.rules import RulesBackend

        _backend = RulesBackend()
    return _backend


def start_worker(parent: int) -> None:
    """A pool worker leaves Ctrl-C to the parent, which stops the pool and stores what was done; and
    ends with the parent, if that is killed outright (else it would wait for work forever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prctl = getattr(_libc(), "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # killed before the line above
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # Linux: the signal a process gets when its parent dies


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
