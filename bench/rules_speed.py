"""CPU milliseconds per trial of the rules backend over every shared trial, for this checkout and others.

    .venv/bin/python bench/rules_speed.py [--tree ../wt-base] [--rounds 3] [--trials FILE] [--out bench/results/rules_speed.json]

Each checkout runs in a process of its own (its own code on the path), the checkouts taking turns,
`--rounds` times; the figure is the median. Turns in one run let the load of other work on the
machine fall on every checkout alike. Two figures per pass:
- `extract_ms`: the rules backend's extraction (the finders and the merge) of pre-segmented criteria;
- `whole_ms`: the whole rules path of `bench/run.py` (segment, extract, assemble: grounding and validation).
CPU time (`time.process_time`), not wall time. `--trials` reads the trials of one records file instead
(bench/workers_ratio.py times the core on the trials it runs end to end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(tree: Path, source: Path | None = None) -> dict:
    """One pass over every shared trial, or `source`'s, with `tree`'s code (run in a process of its own)."""
    import asyncio
    import time

    sys.path.insert(0, str(tree))
    # The shared trials read with `tree`'s code: rules_outputs (beside this file) imports the checkout on PYTHONPATH.
    from rules_outputs import shared_trials

    from extract.backend import assemble
    from extract.rules import RulesBackend
    from extract.sources import RawRecord, parse_document
    from extract.text import segment

    if source is None:
        trials = shared_trials()
    else:
        trials = [p.trial for p in parse_document(source.read_bytes(), source.name) if isinstance(p, RawRecord)]
    backend = RulesBackend()
    segmented = [(trial, segment(trial.eligibility_text)) for trial in trials]

    async def extract_only() -> None:
        for trial, criteria in segmented:
            await backend.extract(trial, criteria)

    async def whole() -> None:
        for trial in trials:
            criteria = segment(trial.eligibility_text)
            assemble(trial, criteria, await backend.extract(trial, criteria), backend)

    asyncio.run(backend.extract(*segmented[0]))  # vocabularies loaded before the clock starts
    figures = {"trials": len(trials)}
    for name, run in (("extract_ms", extract_only), ("whole_ms", whole)):
        started = time.process_time()
        asyncio.run(run())
        figures[name] = round((time.process_time() - started) * 1000 / len(trials), 2)
    return figures


def measure(tree: Path, source: Path | None = None) -> dict:
    python = tree / ".venv" / "bin" / "python"
    command = [str(python if python.exists() else sys.executable), str(Path(__file__).resolve()), "--child", str(tree)]
    command += ["--trials", str(source)] if source else []
    done = subprocess.run(command, cwd=tree, env=os.environ | {"PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{tree}: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout)


def git_commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to measure in the same run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--trials", type=Path, help="a records file whose trials to time (default: every shared trial)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.trials)))
        return
    trees = [ROOT, *(tree.resolve() for tree in args.tree)]
    passes: dict[Path, list[dict]] = {tree: [] for tree in trees}
    for round_ in range(args.rounds):
        for tree in trees:
            passes[tree].append(measure(tree, args.trials))
            print(f"round {round_ + 1}: {tree.name} {passes[tree][-1]}", file=sys.stderr)
    results = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()},
        "rounds": args.rounds,
        "checkouts": [
            {
                "tree": tree.name, "commit": git_commit(tree), "trials": found[0]["trials"],
                **{name: statistics.median(one[name] for one in found) for name in ("extract_ms", "whole_ms")},
                "passes": found,
            }
            for tree, found in passes.items()
        ],
    }  # fmt: skip
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
