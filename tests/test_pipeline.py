"""Storage in a run: what holds a slot, what bounds the trials not yet stored, when queued rows reach disk."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from pathlib import Path

from extract.backend import Draft
from extract.importer import import_files
from extract.pipeline import run_extraction
from extract.store import Workspace
from schemas import Criterion, Trial

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "trials" / "ctgov-2026-sample.jsonl"


class CountingBackend:
    """A real backend that finds nothing, after a short wait like a model's; it counts its calls."""

    name, model, prompt_version = "counting", None, "test"

    def __init__(self) -> None:
        self.calls = 0
        self.running = self.most_running = 0

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        self.calls += 1
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        return Draft(eligibility={})


def test_storage_holds_no_extraction_slot_but_unstored_trials_are_bounded(tmp_path):
    workspace = Workspace(tmp_path / "workspace")
    assert import_files(workspace, [SAMPLE]).failures == []
    trials = list(workspace.trials())
    backend = CountingBackend()
    calls_while_storage_stalled = []

    # Storage stalls: the workspace's writer is held (as a slow disk would hold it) for half a second.
    def stall() -> None:
        with workspace._io:
            threading.Event().wait(0.5)
            calls_while_storage_stalled.append(backend.calls)

    staller = threading.Thread(target=stall)
    staller.start()
    summary = asyncio.run(run_extraction(workspace, backend, trials, concurrency=3))
    staller.join()

    # Trials waiting for their write leave their slot to others, up to twice the concurrency in all.
    assert calls_while_storage_stalled == [6]
    assert backend.most_running == 3
    assert summary.extracted == len(trials) == 188 and summary.failures == {}
    assert len(list((workspace.root / "structured").glob("NCT*.json"))) == 188
    workspace.close()


def test_a_cached_answer_is_written_with_the_next_group_or_at_close(tmp_path):
    entry = {"model": "m", "prompt_version": "p", "schema_version": "s", "response": {"labs": []},
             "input_tokens": 10, "output_tokens": 2}  # fmt: skip
    workspace = Workspace(tmp_path / "workspace")
    assert asyncio.run(workspace.cache_lookup("a")) is None  # reads the (empty) set of keys once
    workspace.cache_put("a", **entry)
    awaited = ["b", "m", "p", "s", "{}", 0, 0, datetime.now(timezone.utc)]
    asyncio.run(workspace.write_rows([("llm_cache", awaited)]))  # a row someone waits for: "a" goes with it
    assert asyncio.run(workspace.cache_lookup("a")) == {"response": {"labs": []}, "input_tokens": 10, "output_tokens": 2}
    workspace.cache_put("c", **entry)
    workspace.close()  # nobody waited for "c": close writes it

    reopened = Workspace(tmp_path / "workspace")
    assert [reopened.cache_get(key) is not None for key in "abcd"] == [True, True, True, False]
    reopened.close()
