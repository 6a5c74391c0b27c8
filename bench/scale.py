"""The cost curve, whole commands: import, extract, rerun and export at 1k, 10k (100k) trials.

    .venv/bin/python bench/scale.py [--sizes 1000,10000] [--out bench/results/scale.json]

Trials are synthesised by re-identifying real ones: the rows of the 2026 export (../shared/data),
again and again, each under an id of its own (NCT9xxxxxxx), as one JSONL file. Each step is the
`eligex` command, a process of its own, timed from start to exit, with its peak resident memory
(the largest process: with --workers, each worker is one). `extract` runs with --workers 1 and
then, forced, with --workers 2 (the ratio is the point: the machine is shared, so the load average
is written beside each step). The projection for 560,000 studies is linear in the largest size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = ROOT.parent / "shared" / "data" / "ctgov-2026" / "trials.jsonl"
ELIGEX = str(Path(sys.executable).with_name("eligex"))
REGISTRY = 560_000


def synthesise(count: int, path: Path) -> None:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    with path.open("w") as out:
        for number in range(count):
            out.write(json.dumps(rows[number % len(rows)] | {"nct_id": f"NCT9{number:07d}"}) + "\n")


def step(workspace: Path, *args: str) -> dict:
    """One eligex command: seconds, peak RSS of its largest process, the load when it started."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    child = subprocess.Popen([ELIGEX, "--workspace", str(workspace), *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    stderr = child.stderr.read().decode()
    if status != 0:
        raise SystemExit(f"eligex {' '.join(args)} failed:\n{stderr[-2000:]}")
    # CPU seconds of the command and its workers: what the work costs, whatever the machine's load.
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "load_1min": round(load, 2), "said": stderr.strip().splitlines()[-1]}  # fmt: skip


def bench_size(count: int, folder: Path) -> dict:
    source = folder / f"trials-{count}.jsonl"
    synthesise(count, source)
    workspace = folder / f"ws-{count}"
    steps = {
        "import": step(workspace, "import", str(source)),
        "extract_workers_1": step(workspace, "extract", "--all", "--backend", "rules", "--workers", "1"),
        "rerun_unchanged": step(workspace, "extract", "--all", "--backend", "rules"),
        "extract_workers_2": step(workspace, "extract", "--all", "--backend", "rules", "--workers", "2", "--force"),
        "export_parquet": step(workspace, "export", "--out", str(folder / f"records-{count}.parquet")),
    }
    for measured in steps.values():
        measured["trials_per_s"] = round(count / measured["seconds"], 1)
    steps["workers_2_over_1"] = round(steps["extract_workers_1"]["seconds"] / steps["extract_workers_2"]["seconds"], 2)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    results = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
               "sizes": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="eligex-scale-") as scratch:
        for count in sizes:
            results["sizes"][str(count)] = bench_size(count, Path(scratch))
            print(json.dumps({count: results["sizes"][str(count)]}, indent=1), file=sys.stderr)
    largest = results["sizes"][str(max(sizes))]
    results["projection_560k_minutes"] = {
        name: round(largest[name]["seconds"] * REGISTRY / max(sizes) / 60, 1)
        for name in ("import", "extract_workers_1", "extract_workers_2", "rerun_unchanged", "export_parquet")
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {options.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
