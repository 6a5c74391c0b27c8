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

    .venv/bin/python -m bench.hybrid_local --trials 30                  # the README's figures; 20 by default
    .venv/bin/python -m bench.hybrid_local --trials 30 --pack-trials 4  # packs, as ELIGEX_PACK_TRIALS=4

With `--pack-trials N` the trials asked go in packs of up to N (extract/packing.py: in order, up to
the part's characters), each pack one request as the backend sends it, its answer read trial by
trial under their NCT ids (hybrid_local_packsN.json, answers in hybrid_local_answers_packsN.json).
"""

from __future__ import annotations

import argparse
import asyncio
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


def hybrid_backend(base_url: str, pack_trials: int) -> HybridBackend:
    with environment(SETTINGS | {"OPENAI_BASE_URL": base_url}):
        return HybridBackend(RulesBackend(), OpenAIBackend.from_environment(), pack_trials=pack_trials)


def load_answers(path: Path, version: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The answers kept for this request version: each trial's, and the packs' its trials point to."""
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, []
    return (kept["trials"], kept.get("packs", [])) if kept.get("answer_version") == version else ({}, [])


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


def ask(backend: HybridBackend, base_url: str, pending: list, answers: dict[str, Any], packs: list[dict[str, Any]],
        path: Path) -> None:  # fmt: skip
    """The model's answer for each pending trial, as the backend asks it: its trials in packs of up to
    `pack_trials` and `part_chars` (extract/packing.py, in evals/splits.json order; a pack's request is
    `pack_request`), a trial alone part after part (`request`: system prompt, tool scoped to the fields
    asked, model, temperature 0, the criteria and the rules' draft). One request at a time, as the
    one-thread server answers; the tool call's arguments kept as the model wrote them (a pack's cut
    off is not asked again in halves, as the backend would: its finished items are what is measured).
    Saved after each request."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", timeout=1800, max_retries=0)
    one_at_a_time = asyncio.Lock()

    async def answer(request: dict[str, Any], criteria: list[str]) -> dict[str, Any]:
        async with one_at_a_time:
            started = time.monotonic()
            answered = await client.chat.completions.create(**request)
        call = answered.choices[0].message.tool_calls
        return {"criteria": criteria, "finish_reason": answered.choices[0].finish_reason,
                "arguments": call[0].function.arguments if call else answered.choices[0].message.content or "",
                "input_tokens": answered.usage.prompt_tokens, "output_tokens": answered.usage.completion_tokens,
                "seconds": round(time.monotonic() - started, 1)}  # fmt: skip

    async def send(asks: list) -> list[None]:
        if len(asks) == 1:
            [(trial, sent, fields)] = asks
            llm = backend.asking(fields)
            parts = [await answer(llm.request(trial, part), [c.id for c in part]) for part in llm.parts(sent)]
            answers[trial.nct_id] = {"sent": [c.id for c in sent], "seconds": round(sum(p["seconds"] for p in parts), 1),
                                     "parts": parts}  # fmt: skip
            done = parts
        else:
            request = backend.pack_asking(asks).pack_request([(trial, sent) for trial, sent, _ in asks])
            packs.append(await answer(request, [c.id for _, sent, _ in asks for c in sent])
                         | {"trials": [trial.nct_id for trial, *_ in asks]})  # fmt: skip
            for trial, sent, _ in asks:
                answers[trial.nct_id] = {"sent": [c.id for c in sent], "pack": len(packs) - 1}
            done = packs[-1:]
        print(f"{', '.join(t.nct_id for t, *_ in asks)}: {sum(len(s) for _, s, _ in asks)} criteria sent, "
              f"{len(done)} requests, {sum(p['seconds'] for p in done):.1f} s, {sum(map(cut_off, done))} cut off",
              file=sys.stderr)  # fmt: skip
        path.write_text(json.dumps({"answer_version": backend.answer_version, "model": backend.model,
                                    "trials": answers, "packs": packs}, indent=1) + "\n")  # fmt: skip
        return [None] * len(asks)

    async def every() -> None:
        packer = backend.packer(send, wait=0.1)
        await asyncio.gather(*(packer.ask((trial, sent, llm.prompt.fields)) for trial, sent, llm in pending))

    asyncio.run(every())


def cut_off(part: dict[str, Any]) -> bool:
    """The answer stopped at its limit: llama-cpp-python says `tool_calls` even then, so the JSON tells."""
    try:
        json.loads(part["arguments"])
    except ValueError:
        return True
    return part["finish_reason"] == "length"


_KEY = re.compile(r'\s*,?\s*"(\w+)"\s*:\s*')
_GAP = re.compile(r"\s*,?\s*")
_END_ARRAY, _END_OBJECT = re.compile(r"\s*\]"), re.compile(r"\s*\}")


def finished(text: str, at: int, into: frozenset[str] = frozenset()) -> tuple[dict[str, Any], bool]:
    """The members of the JSON object opened just before `at` that the model finished writing (an
    array: its finished elements), and whether the object itself was finished. An element of an
    array named in `into` (a pack's `trials`) that was cut off is read the same way, member by member."""
    decoder, found = json.JSONDecoder(), {}
    while not _END_OBJECT.match(text, at):
        key = _KEY.match(text, at)
        if not key:
            return found, False
        at, name = key.end(), key.group(1)
        if not text.startswith("[", at):
            try:
                found[name], at = decoder.raw_decode(text, at)
            except ValueError:
                return found, False
            continue
        items, at = found.setdefault(name, []), at + 1
        while not _END_ARRAY.match(text, at):
            at = _GAP.match(text, at).end()
            try:
                item, at = decoder.raw_decode(text, at)
            except ValueError:
                if name in into and text.startswith("{", at):
                    items.append(finished(text, at + 1)[0])
                return found, False
            items.append(item)
        at = _END_ARRAY.match(text, at).end()
    return found, True


def checked(found: dict[str, Any]) -> dict[str, Any]:
    """The items of `found` that the answer model (`ExtractedEligibility`) accepts, each on its own."""
    answer: dict[str, Any] = {}
    for name, value in found.items():
        for one in value if isinstance(value, list) else [value]:
            try:
                valid = ExtractedEligibility.model_validate({name: [one] if isinstance(value, list) else one})
            except (ValidationError, TypeError):
                continue
            kept = valid.model_dump(mode="json")[name]
            if isinstance(value, list):
                answer.setdefault(name, []).extend(kept)
            else:
                answer.setdefault(name, kept)
    return answer


def salvaged(arguments: str) -> dict[str, Any]:
    """The items of a tool call's arguments that the model finished writing: Gemma 3 270M, greedy, goes
    on repeating items until its token limit, so most answers are cut off (the backend fails such a
    trial, rightly). Each complete item is kept when the answer model accepts it; the one cut off,
    and anything after, is dropped."""
    at = arguments.find("{") + 1
    return checked(finished(arguments, at)[0]) if at else {}


def salvaged_pack(arguments: str, nct_id: str) -> list[dict[str, Any]]:
    """`salvaged` for one trial of a pack's answer: the items it finished writing under that trial's NCT
    id (in a trial's answer cut off too)."""
    at = arguments.find("{") + 1
    trials = finished(arguments, at, frozenset({"trials"}))[0].get("trials", []) if at else []
    return [checked({k: v for k, v in one.items() if k != "nct_id"})
            for one in trials if isinstance(one, dict) and one.get("nct_id") == nct_id]  # fmt: skip


def model_answer(nct_id: str, answer: dict[str, Any], packs: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's eligibility for one trial, its parts (or its pack's answers for it) merged as the
    backend merges them."""
    if "pack" in answer:
        return to_eligibility(merge(salvaged_pack(packs[answer["pack"]]["arguments"], nct_id)))
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


def score(backend: HybridBackend, trials, answers: dict[str, Any], packs: list[dict[str, Any]],
          gold: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
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
        model = model_answer(trial.nct_id, answer, packs)
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
    parser.add_argument("--pack-trials", type=int, default=1,
                        help="trials asked in one request at most, as ELIGEX_PACK_TRIALS (default 1: each alone)")
    parser.add_argument("--answers", type=Path, help=f"the model's answers, kept between runs (default {ANSWERS.name}, "
                        "or with _packsN for packs of N)")  # fmt: skip
    parser.add_argument("--out", type=Path, help=f"default {OUT.name}, or with _packsN")
    args = parser.parse_args()
    suffix = f"_packs{args.pack_trials}" if args.pack_trials > 1 else ""
    answers_path = args.answers or ANSWERS.with_name(f"{ANSWERS.stem}{suffix}.json")
    out = args.out or OUT.with_name(f"{OUT.stem}{suffix}.json")
    gold = load_gold()
    nct_ids = split_ids("dev")[: args.trials]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        workspace = Workspace(Path(folder) / "workspace")
        trials = gold_trials(workspace, nct_ids)
        workspace.close()
        offline = hybrid_backend("http://127.0.0.1:9/v1", args.pack_trials)  # builds the requests; sends nothing
        answers, packs = load_answers(answers_path, offline.answer_version)
        pending = to_ask(offline, trials, answers)
        if pending:
            local_llm.install()  # nothing when it is installed already
            with local_llm.serve(Path(folder), nice=NICE) as base_url:
                ask(hybrid_backend(base_url, args.pack_trials), base_url, pending, answers, packs, answers_path)
    asked = [answers[t.nct_id] for t in trials if t.nct_id in answers]
    in_packs = sorted({a["pack"] for a in asked if "pack" in a})
    requests = [part for a in asked for part in a.get("parts", [])] + [packs[i] for i in in_packs]
    # a pack's time is shared by its trials
    seconds = [a["seconds"] if "parts" in a else packs[a["pack"]]["seconds"] / len(packs[a["pack"]]["trials"])
               for a in asked]  # fmt: skip
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "split": "dev", "rule": f"the first {args.trials} dev trials in evals/splits.json order",
        "trial_ids": [t.nct_id for t in trials],
        "model": f"{local_llm.MODEL_ALIAS} ({local_llm.PACKAGES[1]}), llama-cpp-python {local_llm.PACKAGES[0]}, "
                 f"n_ctx {local_llm.CONTEXT_TOKENS}, 1 thread, nice {NICE}",
        "settings": SETTINGS, "pack_trials": args.pack_trials,
        "load": os.getloadavg(),
        "model_seconds_per_trial": {"median": statistics.median(seconds) if seconds else None,
                                    "mean": round(statistics.mean(seconds), 1) if seconds else None,
                                    "total": round(sum(seconds), 1), "trials_asked": len(seconds)},  # fmt: skip
        "requests": len(requests), "packs": len(in_packs), "requests_cut_off_at_max_tokens": sum(map(cut_off, requests)),
        "input_tokens_per_trial": round(sum(p["input_tokens"] for p in requests) / max(len(trials), 1), 1),
        "output_tokens_per_trial": round(sum(p["output_tokens"] for p in requests) / max(len(trials), 1), 1),
        **score(offline, trials, answers, packs, gold),
        "bench_seconds": round(time.monotonic() - started, 1),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("hybrid_before_fields_below_rules", "hybrid_fields_below_rules", "changes",
                                             "model_seconds_per_trial", "requests", "packs")}
                     | {"micro": {n: result[n]["micro"]["f1"] for n in ("rules", "hybrid_before", "hybrid")}}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
