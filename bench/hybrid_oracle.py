"""What the hybrid could reach with a perfect model, and what its choice of criteria to send keeps of it.

The oracle is a model that answers, for the criteria it is sent, exactly the gold items quoting them
(the gold's evidence names its criterion: evals/add_criterion_ids.py), of the fields it is asked
for. Its answer goes through the hybrid's own merge and check (`extract.hybrid.combine`,
`extract.support`), then `assemble` and the harness's scoring, as a real answer would. Three ways of
choosing what to send are scored on the same trials: every criterion and every field (the ceiling
the check allows), the backend's choice (`HybridBackend.plan`: criteria and fields), and none (rules
alone). Beside each: criteria and characters sent, trials that cost no request, and the prompt
tokens the openai backend's request builder would send (characters over 4, as bench/hybrid.py's
server counts them).

Only totals are printed and written, for the test split too: nobody reads a test trial's misses.

    .venv/bin/python -m bench.hybrid_oracle [--split dev|test] [--out bench/results/hybrid_oracle.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench.hybrid import gold_trials
from bench.openai_latency import environment
from bench.run import ROOT
from extract.backend import Draft, assemble
from extract.evaluate.harness import load_gold, split_ids
from extract.evaluate.scoring import FIELDS, score_trial, summarise
from extract.hybrid import HybridBackend, answer_field, combine, criterion_of, items_of
from extract.llm import OpenAIBackend
from extract.rules import RulesBackend, extract_eligibility
from extract.store import Workspace
from extract.text import segment
from schemas import Criterion
from schemas.fields import LIST_FIELDS, SINGLE_FIELDS

OUT = ROOT / "bench" / "results" / "hybrid_oracle.json"
Chooser = Callable[[dict[str, Any], list[Criterion]], tuple[list[Criterion], OpenAIBackend]]


def oracle_answer(gold: dict[str, Any], sent: list[Criterion], fields: tuple[str, ...]) -> dict[str, Any]:
    """The gold items of `fields` quoting the sent criteria, as a model asked for them would answer them."""
    ids = {c.id for c in sent}
    answer: dict[str, Any] = {name: [] for name in LIST_FIELDS} | {name: None for name in SINGLE_FIELDS}
    for name, item in items_of(copy.deepcopy(gold)):  # a copy: the merge may change the items it takes
        if criterion_of(item) in ids and answer_field(name) in fields:
            if name in LIST_FIELDS:
                answer[name].append(item)
            elif name in SINGLE_FIELDS:  # ages (evidence in `origins`) are not the oracle's to answer
                answer[name] = item
    return answer


def measure(backend: HybridBackend, trials, gold: dict[str, Any], choose: Chooser) -> dict[str, Any]:
    scored, criteria_n, sent_n, chars, sent_chars, without, tokens, accepted = [], 0, 0, 0, 0, 0, 0, 0
    for trial in trials:
        criteria = segment(trial.eligibility_text)
        rules = extract_eligibility(criteria)
        sent, llm = choose(rules, criteria)
        eligibility, warnings = combine(rules, oracle_answer(gold[trial.nct_id]["eligibility"], sent, llm.prompt.fields), sent)
        accepted += len(items_of(eligibility)) - len(items_of(rules))
        record = assemble(trial, criteria, Draft(eligibility=eligibility, warnings=warnings), backend)
        scored.append(score_trial(trial.nct_id, gold[trial.nct_id]["eligibility"], record.model_dump(mode="json")))
        criteria_n, sent_n = criteria_n + len(criteria), sent_n + len(sent)
        chars, sent_chars = chars + sum(len(c.text) for c in criteria), sent_chars + sum(len(c.text) for c in sent)
        without += not sent
        tokens += llm.input_tokens_estimate(trial, sent) if sent else 0
    summary = summarise(scored, resamples=0)
    return {"micro_f1": summary["micro"]["f1"], "fields_f1": {f: summary["fields"][f]["f1"] for f in FIELDS},
            "criteria_sent": f"{sent_n} of {criteria_n}", "chars_sent_share": round(sent_chars / max(chars, 1), 3),
            "trials_without_a_request": f"{without} of {len(trials)}",
            "prompt_tokens_per_trial": round(tokens / max(len(trials), 1), 1),
            "net_items_added": accepted}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="dev", choices=("dev", "test"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    gold = load_gold()
    with environment({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "ELIGEX_MODEL": "oracle"}):
        backend = HybridBackend(RulesBackend(), OpenAIBackend.from_environment())  # builds requests; sends nothing
    with tempfile.TemporaryDirectory() as folder:
        workspace = Workspace(Path(folder) / "workspace")
        trials = gold_trials(workspace, split_ids(args.split))
        workspace.close()
    choosers: dict[str, Chooser] = {"rules alone": lambda rules, criteria: ([], backend.llm),
                                    "every criterion": lambda rules, criteria: (criteria, backend.llm),
                                    "the backend's choice": backend.plan}  # fmt: skip
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "split": args.split,
              "trials": len(trials), "hybrid": backend.prompt_version}  # fmt: skip
    result |= {name: measure(backend, trials, gold, choose) for name, choose in choosers.items()}
    kept = json.loads(args.out.read_text()) if args.out.exists() else {}
    kept[args.split] = result
    args.out.write_text(json.dumps(kept, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
