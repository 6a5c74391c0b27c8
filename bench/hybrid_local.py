"""Does the hybrid ever score below rules alone? The real local model on the first N dev gold trials.

llama-cpp-python's server with Gemma 3 270M (tests/local_llm.py: built once into ~/.cache/eligex-llm,
started here at `nice -n 10`, one thread) answers the hybrid's requests for the first N trials of the
dev split in evals/splits.json order (a fixed rule, not chosen by result). The model's answers are
kept in bench/results/hybrid_local_answers.json, keyed by the criteria sent and the request's version,
so that a change to the merge or the support check (extract/hybrid.py, extract/support.py) is scored
again on the same answers without the model; a trial whose request changed is asked again. Each
trial is then scored twice, as the rules made it and as the hybrid merged it, both through
`extract.backend.assemble` (grounding, the registry's scalars) and the harness's scoring. Written to
bench/results/hybrid_local.json:

    .venv/bin/python -m bench.hybrid_local --trials 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.hybrid import SOURCES
from bench.openai_latency import environment
from bench.run import ROOT
from extract.backend import Draft, assemble
from extract.evaluate.harness import load_gold, split_ids
from extract.evaluate.scoring import FIELDS, score_trial, summarise
from extract.hybrid import HybridBackend, merged
from extract.importer import files_under, import_files
from extract.llm import OpenAIBackend
from extract.rules import RulesBackend, extract_eligibility
from extract.store import Workspace
from extract.text import segment

sys.path.insert(0, str(ROOT / "tests"))
import local_llm  # noqa: E402 (tests/local_llm.py: the server's install and start)

OUT = ROOT / "bench" / "results" / "hybrid_local.json"
ANSWERS = ROOT / "bench" / "results" / "hybrid_local_answers.json"
# The README's local-server settings: the context the server runs with, a bound on each answer.
SETTINGS = {"ELIGEX_LLM_CONTEXT": str(local_llm.CONTEXT_TOKENS), "ELIGEX_LLM_MAX_TOKENS": "1024",
            "ELIGEX_MODEL": local_llm.MODEL_ALIAS, "ELIGEX_LLM_TIMEOUT": "900"}  # fmt: skip
NICE = 10


def hybrid_backend(base_url: str) -> HybridBackend:
    with environment(SETTINGS | {"OPENAI_BASE_URL": base_url}):
        return HybridBackend(RulesBackend(), OpenAIBackend.from_environment())


def load_answers(path: Path, version: str) -> dict[str, Any]:
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return kept["trials"] if kept.get("answer_version") == version else {}


def to_ask(backend: HybridBackend, trials, answers: dict[str, Any]) -> list:
    """(trial, criteria sent) for every trial with no answer kept for the criteria it sends now."""
    found = []
    for trial in trials:
        criteria = segment(trial.eligibility_text)
        sent = backend.to_send(extract_eligibility(criteria), criteria)
        if sent and (answers.get(trial.nct_id) or {}).get("sent") != [c.id for c in sent]:
            found.append((trial, sent))
    return found


async def ask(backend: HybridBackend, pending: list, answers: dict[str, Any], path: Path) -> None:
    """The model's answer for each pending trial, saved after each."""
    for trial, sent in pending:
        ids = [c.id for c in sent]
        started = time.monotonic()
        try:
            draft = await backend.llm.extract(trial, sent)
            answer = {"eligibility": draft.eligibility, "warnings": draft.warnings, "input_tokens": draft.input_tokens,
                      "output_tokens": draft.output_tokens}  # fmt: skip
        except Exception as error:  # a failed trial is scored as rules alone would be, and named
            answer = {"error": f"{type(error).__name__}: {error}"[:300]}
        answers[trial.nct_id] = {"sent": ids, "seconds": round(time.monotonic() - started, 1), **answer}
        print(f"{trial.nct_id}: {len(ids)} criteria sent, {answers[trial.nct_id]['seconds']} s", file=sys.stderr)
        path.write_text(json.dumps({"answer_version": backend.llm.answer_version, "model": backend.model,
                                    "trials": answers}, indent=1) + "\n")  # fmt: skip


def score(backend: HybridBackend, trials, answers: dict[str, Any], gold: dict[str, Any]) -> dict[str, Any]:
    """Rules alone and the hybrid, scored on the same trials; what the merge rejected."""
    scored: dict[str, list] = {"rules": [], "hybrid": []}
    rejected = accepted = 0
    for trial in trials:
        criteria = segment(trial.eligibility_text)
        answer = answers.get(trial.nct_id) or {}
        sent = [c for c in criteria if c.id in set(answer.get("sent") or [])]
        draft = Draft(eligibility=extract_eligibility(criteria))
        if sent and "eligibility" in answer:
            model = Draft(eligibility=json.loads(json.dumps(answer["eligibility"])), warnings=answer["warnings"])
            draft = merged(extract_eligibility(criteria), model, sent)
            rejected += sum(w.startswith("hybrid: rejected") for w in draft.warnings)
            accepted += sum(w.startswith("hybrid: accepted") for w in draft.warnings)
        for name, made in (("rules", Draft(eligibility=extract_eligibility(criteria))), ("hybrid", draft)):
            record = assemble(trial, criteria, made, backend.rules if name == "rules" else backend)
            scored[name].append(score_trial(trial.nct_id, gold[trial.nct_id]["eligibility"], record.model_dump(mode="json")))
    result = {}
    for name, trials_scored in scored.items():
        summary = summarise(trials_scored, resamples=0)
        result[name] = {"micro": summary["micro"],
                        "fields": {field: summary["fields"][field] for field in FIELDS}}  # fmt: skip
    result["hybrid_changes"] = {"rejected": rejected, "accepted": accepted}
    result["fields_below_rules"] = [field for field in FIELDS
                                    if (result["hybrid"]["fields"][field]["f1"] or 0) < (result["rules"]["fields"][field]["f1"] or 0)]  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="the first N dev trials (default 20)")
    parser.add_argument("--answers", type=Path, default=ANSWERS, help="the model's answers, kept between runs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    gold = load_gold()
    nct_ids = split_ids("dev")[: args.trials]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        workspace = Workspace(Path(folder) / "workspace")
        import_files(workspace, files_under([*SOURCES, ROOT / "evals" / "records"]))
        trials = [t for t in workspace.trials(nct_ids) if t.eligibility_text.strip()]
        workspace.close()
        offline = hybrid_backend("http://127.0.0.1:9/v1")  # builds the request; sends nothing
        answers = load_answers(args.answers, offline.llm.answer_version)
        pending = to_ask(offline, trials, answers)
        if pending:
            local_llm.install()  # nothing when it is installed already
            with local_llm.serve(Path(folder), nice=NICE) as base_url:
                asyncio.run(ask(hybrid_backend(base_url), pending, answers, args.answers))
    asked = [answers[t.nct_id] for t in trials if t.nct_id in answers]
    seconds = [a["seconds"] for a in asked if "error" not in a]
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "split": "dev", "rule": f"the first {args.trials} dev trials in evals/splits.json order",
        "trial_ids": [t.nct_id for t in trials],
        "model": f"{local_llm.MODEL_ALIAS} ({local_llm.PACKAGES[1]}), llama-cpp-python {local_llm.PACKAGES[0]}, "
                 f"n_ctx {local_llm.CONTEXT_TOKENS}, 1 thread, nice {NICE}",
        "settings": SETTINGS,
        "load": os.getloadavg(),
        "model_seconds_per_trial": {"median": statistics.median(seconds) if seconds else None,
                                    "mean": round(statistics.mean(seconds), 1) if seconds else None,
                                    "total": round(sum(seconds), 1), "trials_asked": len(seconds)},  # fmt: skip
        "failed_trials": {nct: a["error"] for nct, a in answers.items() if "error" in a and nct in nct_ids},
        "input_tokens_per_trial": round(sum(a.get("input_tokens", 0) for a in asked) / max(len(trials), 1), 1),
        **score(offline, trials, answers, gold),
        "bench_seconds": round(time.monotonic() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("fields_below_rules", "hybrid_changes", "model_seconds_per_trial")}
                     | {"micro": {n: result[n]["micro"]["f1"] for n in ("rules", "hybrid")}}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
