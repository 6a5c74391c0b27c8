"""Does the hybrid ever score below rules alone? The real local model on the first N dev gold trials.

llama-cpp-python's server with Gemma 3 270M (tests/local_llm.py: built once into ~/.cache/eligex-llm,
started here at `nice -n 10`, one thread) is sent the hybrid's requests for the first N trials of the
dev split in evals/splits.json order (a fixed rule, not chosen by result): the criteria the rules
are not confident of, part after part, each the openai backend's own request with the rules' draft,
answers bounded at 512 tokens. The tool call's arguments are kept as the model wrote them in
bench/results/hybrid_local_answers.json, keyed by the request's version and the criteria sent, so a
change to the merge or the check is scored again on the same answers without the model.

The model repeats items until its token limit in most answers, and the backend fails such a trial
(rightly: the answer is cut off). To measure the check on what the model did say, the items it
finished writing are kept (`salvaged`) and merged into the rules' draft two ways: by the merge before
extract/support.py (main at BASELINE: a quote in the criterion sufficed) and by today's `combine`.
Each record goes through `extract.backend.assemble` (grounding, the registry's scalars) and the
harness's scoring, beside the rules' own. Written to bench/results/hybrid_local.json:

    .venv/bin/python -m bench.hybrid_local --trials 8   # the figures in the README; 20 is the default
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import openai
from pydantic import ValidationError

from bench.hybrid import gold_trials
from bench.openai_latency import environment
from bench.run import ROOT
from extract.backend import Draft, assemble
from extract.evaluate.harness import load_gold, split_ids
from extract.evaluate.scoring import FIELDS, score_trial, summarise
from extract.hybrid import HybridBackend, combine, items_of
from extract.llm import ExtractedEligibility, OpenAIBackend, merge, to_eligibility
from extract.rules import RulesBackend, extract_eligibility
from extract.store import Workspace
from extract.text import segment

sys.path.insert(0, str(ROOT / "tests"))
import local_llm  # noqa: E402 (tests/local_llm.py: the server's install and start)

OUT = ROOT / "bench" / "results" / "hybrid_local.json"
ANSWERS = ROOT / "bench" / "results" / "hybrid_local_answers.json"
# The README's local-server settings: the context the server runs with, a bound on each answer.
# 512 tokens an answer: the model's answers run to any limit (above), and each token costs ~50 ms here.
SETTINGS = {"ELIGEX_LLM_CONTEXT": str(local_llm.CONTEXT_TOKENS), "ELIGEX_LLM_MAX_TOKENS": "512",
            "ELIGEX_MODEL": local_llm.MODEL_ALIAS, "ELIGEX_LLM_TIMEOUT": "900"}  # fmt: skip
NICE = 10
BASELINE = "d73328d"  # main before extract/support.py: the merge measured as "hybrid_before"


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
    """(trial, criteria sent, the backend asking for their fields) for every trial with no answer kept
    for the criteria it sends now."""
    found = []
    for trial in trials:
        criteria = segment(trial.eligibility_text)
        sent, llm = backend.plan(extract_eligibility(criteria), criteria)
        if sent and (answers.get(trial.nct_id) or {}).get("sent") != [c.id for c in sent]:
            found.append((trial, sent, llm))
    return found


def ask(backend: HybridBackend, base_url: str, pending: list, answers: dict[str, Any], path: Path) -> None:
    """The model's answer for each pending trial, part after part as the backend sends them: the
    backend's own request scoped to the fields asked (`OpenAIBackend.request`: system prompt, tool,
    model, temperature 0) with its messages (`messages`: the criteria and the rules' draft), the tool
    call's arguments kept as the model wrote them. Saved after each trial."""
    client = openai.OpenAI(base_url=base_url, api_key="not-needed", timeout=1800, max_retries=0)
    for trial, sent, llm in pending:
        prefix = {key: value for key, value in llm.request().items() if key != "messages"}
        started, parts = time.monotonic(), []
        for part in llm.parts(sent):
            answer = client.chat.completions.create(**prefix, messages=llm.messages(trial, part))
            call = answer.choices[0].message.tool_calls
            parts.append({"criteria": [c.id for c in part], "finish_reason": answer.choices[0].finish_reason,
                          "arguments": call[0].function.arguments if call else answer.choices[0].message.content or "",
                          "input_tokens": answer.usage.prompt_tokens, "output_tokens": answer.usage.completion_tokens})  # fmt: skip
        answers[trial.nct_id] = {"sent": [c.id for c in sent], "seconds": round(time.monotonic() - started, 1), "parts": parts}
        print(f"{trial.nct_id}: {len(sent)} criteria sent, {len(parts)} requests, {answers[trial.nct_id]['seconds']} s, "
              f"{sum(map(cut_off, parts))} cut off", file=sys.stderr)  # fmt: skip
        path.write_text(json.dumps({"answer_version": backend.answer_version, "model": backend.model,
                                    "trials": answers}, indent=1) + "\n")  # fmt: skip


def cut_off(part: dict[str, Any]) -> bool:
    """The answer stopped at its limit: llama-cpp-python says `tool_calls` even then, so the JSON tells."""
    try:
        json.loads(part["arguments"])
    except ValueError:
        return True
    return part["finish_reason"] == "length"


def salvaged(arguments: str) -> dict[str, Any]:
    """The items of a tool call's arguments that the model finished writing: Gemma 3 270M, greedy, goes
    on repeating items until its token limit, so most answers are cut off (the backend fails such a
    trial, rightly). Each complete item is kept when the answer model (`ExtractedEligibility`) accepts
    it; the one cut off, and anything after, is dropped."""
    decoder, found = json.JSONDecoder(), {}
    text, at = arguments, arguments.find("{") + 1
    while at > 0:
        key = re.compile(r'\s*,?\s*"(\w+)"\s*:\s*').match(text, at)
        if not key:
            break
        at, name = key.end(), key.group(1)
        if text.startswith("[", at):
            items, at = [], at + 1
            while True:
                try:
                    item, at = decoder.raw_decode(text, re.compile(r"\s*,?\s*").match(text, at).end())
                except ValueError:
                    break
                items.append(item)
            found[name] = items
            closing = re.compile(r"\s*\]").match(text, at)
            if not closing:
                break
            at = closing.end()
        else:
            try:
                found[name], at = decoder.raw_decode(text, at)
            except ValueError:
                break
    answer: dict[str, Any] = {}
    for name, value in found.items():
        for one in value if isinstance(value, list) else [value]:
            try:
                checked = ExtractedEligibility.model_validate({name: [one] if isinstance(value, list) else one})
            except (ValidationError, TypeError):
                continue
            kept = checked.model_dump(mode="json")[name]
            if isinstance(value, list):
                answer.setdefault(name, []).extend(kept)
            else:
                answer.setdefault(name, kept)
    return answer


def model_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """The model's eligibility for one trial, its parts merged as the backend merges them."""
    return to_eligibility(merge([salvaged(part["arguments"]) for part in answer.get("parts") or []]))


def baseline_combine():
    """`combine` as it was before extract/support.py (main at BASELINE): a quote in the criterion sufficed."""
    source = subprocess.run(["git", "show", f"{BASELINE}:extract/hybrid.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    module = types.ModuleType("hybrid_baseline")
    with tempfile.TemporaryDirectory() as folder:  # its hybrid_relevant.txt, read as it loads (by `confident` only)
        relevant = subprocess.run(["git", "show", f"{BASELINE}:extract/hybrid_relevant.txt"], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout  # fmt: skip
        (Path(folder) / "hybrid_relevant.txt").write_text(relevant, encoding="utf-8")
        module.__file__ = str(Path(folder) / "hybrid.py")
        exec(compile(source, f"{BASELINE}:extract/hybrid.py", "exec"), module.__dict__)
    return module.combine


def _reason(warning: str) -> str:
    """A rejection's reason without its quotes, values and ids: what kind of reason it is."""
    field, why = re.match(r"hybrid: rejected the model's (\w+) for \S+: (.*); kept", warning).groups()
    why = re.sub(r"'[^']*'|\"[^\"]*\"", "…", why)
    why = re.sub(r"the rules read .*? in …, not .*", "the rules read other facts in the quote", why)
    return f"{field}: {re.sub(r'(inc|exc)-[0-9]+', 'X', why)}"


def score(backend: HybridBackend, trials, answers: dict[str, Any], gold: dict[str, Any]) -> dict[str, Any]:
    """Rules alone, the hybrid with the baseline's merge and with today's, scored on the same trials."""
    merges = {"hybrid_before": baseline_combine(), "hybrid": combine}
    scored: dict[str, list] = {"rules": [], **{name: [] for name in merges}}
    changes: dict[str, Any] = {name: {"rejected": 0} for name in merges}
    reasons: Counter = Counter()
    model_items = 0
    for trial in trials:
        criteria = segment(trial.eligibility_text)
        answer = answers.get(trial.nct_id) or {}
        sent = [c for c in criteria if c.id in set(answer.get("sent") or [])]
        model = model_answer(answer)
        drafts = {"rules": Draft(eligibility=extract_eligibility(criteria))}
        for name, merge_with in merges.items():
            eligibility, warnings = merge_with(extract_eligibility(criteria), json.loads(json.dumps(model)), sent)
            drafts[name] = Draft(eligibility=eligibility, warnings=warnings)
            changes[name]["rejected"] += sum(w.startswith("hybrid: rejected") for w in warnings)
            if name == "hybrid":
                reasons.update(_reason(w) for w in warnings if w.startswith("hybrid: rejected"))
        model_items += len(items_of(model))
        for name, made in drafts.items():
            record = assemble(trial, criteria, made, backend.rules if name == "rules" else backend)
            scored[name].append(score_trial(trial.nct_id, gold[trial.nct_id]["eligibility"], record.model_dump(mode="json")))
    result: dict[str, Any] = {}
    for name, trials_scored in scored.items():
        summary = summarise(trials_scored, resamples=0)
        result[name] = {"micro": summary["micro"], "fields": {field: summary["fields"][field] for field in FIELDS}}
    result["changes"] = changes | {"model_items": model_items, "hybrid_rejected_why": dict(reasons.most_common())}
    for name in merges:
        result[f"{name}_fields_below_rules"] = [field for field in FIELDS
                                                if (result[name]["fields"][field]["f1"] or 0) < (result["rules"]["fields"][field]["f1"] or 0)]  # fmt: skip
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
        trials = gold_trials(workspace, nct_ids)
        workspace.close()
        offline = hybrid_backend("http://127.0.0.1:9/v1")  # builds the request; sends nothing
        answers = load_answers(args.answers, offline.answer_version)
        pending = to_ask(offline, trials, answers)
        if pending:
            local_llm.install()  # nothing when it is installed already
            with local_llm.serve(Path(folder), nice=NICE) as base_url:
                ask(hybrid_backend(base_url), base_url, pending, answers, args.answers)
    asked = [answers[t.nct_id] for t in trials if t.nct_id in answers]
    seconds = [a["seconds"] for a in asked]
    parts = [part for a in asked for part in a["parts"]]
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
        "requests": len(parts), "requests_cut_off_at_max_tokens": sum(map(cut_off, parts)),
        "input_tokens_per_trial": round(sum(p["input_tokens"] for p in parts) / max(len(trials), 1), 1),
        "output_tokens_per_trial": round(sum(p["output_tokens"] for p in parts) / max(len(trials), 1), 1),
        **score(offline, trials, answers, gold),
        "bench_seconds": round(time.monotonic() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("hybrid_before_fields_below_rules", "hybrid_fields_below_rules", "changes",
                                             "model_seconds_per_trial")}
                     | {"micro": {n: result[n]["micro"]["f1"] for n in ("rules", "hybrid_before", "hybrid")}}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
