"""`extract --all --force --workers 2` over `--workers 1` (rules) on synthesised trials, for this checkout
and others, in paired alternating rounds: the ratio issue 14 asks for (at least 1.7 on 2 cores).

    .venv/bin/python bench/workers_ratio.py [--sizes 1000,10000] [--rounds 3] [--tree ../wt-base] [--out bench/results/workers_ratio.json]

The trials are bench/scale.py's (the 2026 export's rows re-identified). Each checkout imports them into
a workspace of its own with its own code; then, round after round, each checkout runs --workers 1 and
--workers 2 in turn, so that the load of other work on the machine falls on each alike. Per run: wall
and CPU seconds (the command and its workers) and the load average (1 min) at its start; per
checkout and size, the medians and the ratio of the median walls, and each round's own ratio.

Each round also times the rules core (bench/rules_speed.py, CPU ms a trial) on the same trials (their
distinct rows): `workers_1_share_of_core` is the core's rate over `--workers 1`'s end to end (issue 14
asks for at least 0.8), against the finders and merge alone (`extract_ms`) and against the whole pure
path (`whole_ms`: segment, extract, assemble).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_speed import commit  # noqa: E402
from rules_speed import measure as core_ms  # noqa: E402
from scale import ROWS, synthesise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(tree: Path, workspace: Path, *args: str) -> dict:
    """One command of `tree`'s CLI (its own code first on the path): wall and CPU seconds, load at its start."""
    load = os.getloadavg()[0]
    env = dict(os.environ, PYTHONPATH=str(tree))
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(tree / "cli.py"), "--workspace", str(workspace), *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    stderr = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.exit(f"{tree}: eligex {' '.join(args)} failed: {stderr.strip().splitlines()[-1:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "load_1min": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="Another checkout to measure beside this one.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    trees = [ROOT, *(tree.resolve() for tree in args.tree)]
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
              "rounds": args.rounds, "sizes": {}}  # fmt: skip
    extract = ("extract", "--all", "--backend", "rules", "--force", "--workers")
    with tempfile.TemporaryDirectory(prefix="eligex-workers-ratio-") as scratch:
        for size in (int(size) for size in args.sizes.split(",")):
            source = Path(scratch) / f"trials-{size}.jsonl"
            synthesise(size, source)
            distinct = Path(scratch) / f"distinct-{size}.jsonl"  # the core's trials: each row once
            synthesise(min(size, len(ROWS.read_text().splitlines())), distinct)
            cores: dict[Path, list[dict]] = {tree: [] for tree in trees}
            workspaces = {tree: Path(scratch) / f"ws-{size}-{number}" for number, tree in enumerate(trees)}
            for tree, workspace in workspaces.items():
                run(tree, workspace, "import", str(source))
            passes: dict[Path, dict[str, list[dict]]] = {tree: {"1": [], "2": []} for tree in trees}
            for _ in range(args.rounds):
                for tree in trees:
                    cores[tree].append(core_ms(tree, distinct))
                    for workers in ("1", "2"):
                        passes[tree][workers].append(run(tree, workspaces[tree], *extract, workers))
                        print(json.dumps({"size": size, "tree": tree.name, "workers": workers, **passes[tree][workers][-1]}),
                              file=sys.stderr, flush=True)  # fmt: skip
            result["sizes"][str(size)] = [
                {
                    "tree": tree.name if tree != ROOT else "this checkout",
                    "commit": commit(tree),
                    **{f"workers_{workers}_wall_ms_per_trial": round(statistics.median(p["wall_s"] for p in found) * 1000 / size, 2)
                       for workers, found in passes[tree].items()},
                    **{f"workers_{workers}_cpu_ms_per_trial": round(statistics.median(p["cpu_s"] for p in found) * 1000 / size, 2)
                       for workers, found in passes[tree].items()},
                    **{f"core_{name}": statistics.median(one[name] for one in cores[tree]) for name in ("extract_ms", "whole_ms")},
                    **{f"workers_1_share_of_core_{name}": round(statistics.median(one[name] for one in cores[tree]) * size
                                                               / statistics.median(p["wall_s"] * 1000 for p in passes[tree]["1"]), 2)
                       for name in ("extract_ms", "whole_ms")},
                    "workers_2_over_1": round(statistics.median(p["wall_s"] for p in passes[tree]["1"])
                                              / statistics.median(p["wall_s"] for p in passes[tree]["2"]), 2),
                    "per_round": [round(one["wall_s"] / two["wall_s"], 2) for one, two in zip(passes[tree]["1"], passes[tree]["2"])],
                    # the machine's speed drifts between rounds: each round's share, of the core timed in it
                    "workers_1_share_of_core_extract_ms_per_round": [round(core["extract_ms"] * size / (one["wall_s"] * 1000), 2)
                                                                     for core, one in zip(cores[tree], passes[tree]["1"])],
                    "passes": passes[tree],
                    "core_passes": cores[tree],
                }
                for tree in trees
            ]  # fmt: skip
            if args.out:  # after each size: an interrupted run keeps what it measured
                args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
