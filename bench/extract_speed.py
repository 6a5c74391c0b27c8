"""Milliseconds per trial of the whole `eligex extract --all --force` (rules) over every shared record,
for this checkout and others: what a curator waits for, storage included.

    .venv/bin/python bench/extract_speed.py [--tree ../wt-base] [--rounds 3] [--out bench/results/extract_speed.json]

Each checkout imports the shared records (../shared/data: API v2, classic XML, the 2026 export) into a
workspace of its own with its own code, then extracts them all again and again, the checkouts taking
turns so that the load of other work on the machine falls on each alike; the figures are medians.
A checkout whose `extract` has --workers runs once with --workers 1 (one core, like a checkout without
it) and once with its default (every core). Wall time from start to exit, and the CPU time of the
command and its worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FOLDERS = [SHARED / "ctgov-v2", SHARED / "ctgov-classic-xml", SHARED / "ctgov-2026"]


def eligex(tree: Path, workspace: Path, *args: str) -> subprocess.CompletedProcess:
    """A command of `tree`'s CLI (its own code first on the path), run in `workspace`."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run([sys.executable, str(tree / "cli.py"), *args], cwd=workspace, env=env, capture_output=True, text=True)


def timed(tree: Path, workspace: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of one command (CPU: its own and its children's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = eligex(tree, workspace, *args)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{tree}: eligex {' '.join(args)} exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="Another checkout to measure beside this one.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    trees = [ROOT, *(tree.resolve() for tree in args.tree)]
    with tempfile.TemporaryDirectory(prefix="eligex-extract-speed-") as scratch:
        runs: list[tuple[Path, Path, tuple[str, ...]]] = []  # (tree, workspace, extract options)
        for number, tree in enumerate(trees):
            workspace = Path(scratch) / f"ws-{number}"
            workspace.mkdir()
            eligex(tree, workspace, "import", *map(str, FOLDERS))  # a search page among the files fails: expected
            has_workers = "--workers" in eligex(tree, workspace, "extract", "--help").stdout
            runs += [(tree, workspace, ("--workers", "1"))] if has_workers else [(tree, workspace, ())]
            runs += [(tree, workspace, ())] if has_workers else []
        figures: dict[tuple, list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for tree, workspace, options in runs:
                figures.setdefault((tree, options), []).append(timed(tree, workspace, "extract", "--all", "--force", *options))
        trials = len(list((Path(scratch) / "ws-0" / "structured").glob("*.json")))
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()},
        "rounds": args.rounds,
        "trials": trials,
        "checkouts": [
            {
                "tree": tree.name if tree != ROOT else "this checkout",
                "commit": commit(tree),
                "options": " ".join(options) or "(default)",
                "wall_ms_per_trial": round(statistics.median(wall for wall, _ in found) * 1000 / trials, 2),
                "cpu_ms_per_trial": round(statistics.median(cpu for _, cpu in found) * 1000 / trials, 2),
                "passes": [{"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)} for wall, cpu in found],
            }
            for (tree, options), found in figures.items()
        ],
    }
    text = json.dumps(result, indent=1) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
