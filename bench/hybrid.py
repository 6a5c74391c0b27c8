"""Tokens and requests per trial: the hybrid backend against the openai backend, on the dev gold trials.

Both run against the scripted server (tests/openai_server.py as a script, in a process of its own,
answering every call with `first_criterion_answer` and reporting as prompt tokens the characters of
the messages and the tool schema over 4), with no answer cache, over the dev split's trials imported
as the README's evaluation does, 8 trials in flight (`eligex extract`'s default); the hybrid with its
packs (`pack_trials` trials a request at most) and without them (`hybrid_alone`: ELIGEX_PACK_TRIALS=1).
Written to bench/results/hybrid.json:

    .venv/bin/python -m bench.hybrid
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench.openai_latency import NO_THROTTLE, RemoteServer, environment
from bench.run import ROOT
from cli import make_backend, run_async
from extract.hybrid import PACK_TRIALS
from extract.importer import files_under, import_files
from extract.pipeline import run_extraction
from extract.store import Workspace
from extract.text import segment

SOURCES = [ROOT.parent / "shared" / "data" / name for name in ("ctgov-v2", "ctgov-classic-xml", "ctgov-2026")]
OUT = ROOT / "bench" / "results" / "hybrid.json"
CONCURRENCY = 8  # `eligex extract`'s default: the trials in flight, whose asks the hybrid packs


def gold_trials(workspace: Workspace, nct_ids: list[str]) -> list:
    """The trials of `nct_ids` with criteria, their records imported into `workspace` as the README's
    evaluation imports them."""
    import_files(workspace, files_under([*SOURCES, ROOT / "evals" / "records"]))
    return [t for t in workspace.trials(nct_ids) if t.eligibility_text.strip()]


def measure(workspace: Workspace, server: RemoteServer, name: str, trials) -> dict:
    backend = make_backend(name, None)
    calls = server.count
    run = run_extraction(workspace, backend, trials, force=True, concurrency=CONCURRENCY)
    summary = run_async(run, backend).as_dict()
    requests = server.count - calls
    result = {"trials": len(trials), "requests": requests, "requests_per_trial": round(requests / len(trials), 3),
              "input_tokens_per_trial": round(summary["input_tokens"] / len(trials), 1),
              "output_tokens_per_trial": round(summary["output_tokens"] / len(trials), 1),
              "failures": len(summary.get("failures") or {})}  # fmt: skip
    if name == "hybrid":
        inner = backend.backend if hasattr(backend, "backend") else backend
        criteria = sent = chars = sent_chars = skipped = 0
        for trial in trials:
            all_ = segment(trial.eligibility_text)
            rules = extract_rules(all_)
            to_send, _ = inner.plan(rules, all_)
            criteria, sent = criteria + len(all_), sent + len(to_send)
            chars, sent_chars = chars + sum(len(c.text) for c in all_), sent_chars + sum(len(c.text) for c in to_send)
            skipped += not to_send
        result |= {"criteria": criteria, "criteria_sent": sent, "criteria_chars_sent_share": round(sent_chars / chars, 3),
                   "trials_without_a_request": skipped}  # fmt: skip
    return result


def extract_rules(criteria):
    from extract.rules import extract_eligibility

    return extract_eligibility(criteria)


def main() -> None:
    dev = json.loads((ROOT / "evals" / "splits.json").read_text())["dev"]
    server = RemoteServer(latency=0)
    try:
        with environment(NO_THROTTLE | {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench"}):
            with tempfile.TemporaryDirectory() as folder:
                workspace = Workspace(Path(folder) / "workspace")
                trials = gold_trials(workspace, dev)
                result: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "split": "dev",
                                "server": "tests/openai_server.py (scripted)", "concurrency": CONCURRENCY,
                                "pack_trials": PACK_TRIALS}  # fmt: skip
                for name in ("openai", "hybrid"):
                    result[name] = measure(workspace, server, name, trials)
                with environment({"ELIGEX_PACK_TRIALS": "1"}):  # each trial a request of its own
                    result["hybrid_alone"] = measure(workspace, server, "hybrid", trials)
                workspace.close()
        o = result["openai"]
        for name in ("hybrid", "hybrid_alone"):
            result[f"{name}_over_openai"] = {
                "input_tokens": round(result[name]["input_tokens_per_trial"] / o["input_tokens_per_trial"], 3),
                "requests": round(result[name]["requests_per_trial"] / o["requests_per_trial"], 3),
            }
    finally:
        server.stop()
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
