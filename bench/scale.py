"""The cost curve, whole commands: import, extract, rerun and export at 1k, 10k (100k) trials.

    .venv/bin/python bench/scale.py [--sizes 1000,10000] [--steps import,...] [--keep] [--out bench/results/scale.json]

Trials are synthesised by re-identifying real ones: the rows of the 2026 export (../shared/data),
again and again, each under an id of its own (NCT9xxxxxxx), as one JSONL file. Each step is the
`eligex` command, a process of its own, timed from start to exit, with its peak resident memory
(the largest process: with --workers, each worker is one). `extract` runs with --workers 1 and
then, forced, with --workers 2 (the ratio is the point: the machine is shared, so the load average
is written beside each step, at its start and its end). The projection for 560,000 studies is
linear in the largest size that measured the step; `curve` gives ms per trial and peak MiB at every
size, so whether time is linear and memory flat can be read off. The results file is rewritten after
every step, so an interrupted run keeps what it measured; --keep adds sizes to an earlier file
(e.g. 100k run later), --steps picks and orders the steps (import first).
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


STEPS = {
    "import": lambda source, folder, count: ("import", str(source)),
    "extract_workers_1": lambda source, folder, count: ("extract", "--all", "--backend", "rules", "--workers", "1", "--force"),
    "rerun_unchanged": lambda source, folder, count: ("extract", "--all", "--backend", "rules"),
    "extract_workers_2": lambda source, folder, count: ("extract", "--all", "--backend", "rules", "--workers", "2", "--force"),
    "export_parquet": lambda source, folder, count: ("export", "--out", str(folder / f"records-{count}.parquet")),
}  # fmt: skip
DEFAULT_STEPS = "import,extract_workers_1,rerun_unchanged,extract_workers_2,export_parquet"


def step(workspace: Path, *args: str) -> dict:
    """One eligex command: seconds, peak RSS of its largest process, the load when it started and ended."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    child = subprocess.Popen([ELIGEX, "--workspace", str(workspace), *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)  # fmt: skip
    stderr = child.stderr.read().decode()  # read before waiting: a full pipe would stall the command
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    # CPU seconds of the command and its workers: what the work costs, whatever the machine's load.
    cpu = usage.ru_utime + usage.ru_stime
    measured = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                "load_1min_start": round(load, 2), "load_1min_end": round(os.getloadavg()[0], 2),
                "said": (stderr.strip().splitlines() or [""])[-1]}  # fmt: skip
    if status != 0:  # kept in the results: a size the command cannot do is a result too
        errors = [line for line in stderr.splitlines() if "Error" in line]
        measured["failed"] = f"exit status {os.waitstatus_to_exitcode(status)}"
        measured["said"] = errors[-1] if errors else measured["said"]
        print(f"eligex {' '.join(args)} failed:\n{stderr[-2000:]}", file=sys.stderr)
    return measured


def summarise(results: dict) -> None:
    """The curve (ms per trial and peak MiB per size, per step), the workers ratio and the 560k projection,
    from the steps that succeeded."""
    sizes = sorted(results["sizes"], key=int)
    done = {size: {name: measured for name, measured in results["sizes"][size].items()
                   if isinstance(measured, dict) and "failed" not in measured} for size in sizes}  # fmt: skip
    names = [name for name in STEPS if any(name in done[size] for size in sizes)]
    results["curve"] = {
        name: {size: {"ms_per_trial": round(done[size][name]["seconds"] * 1000 / int(size), 2),
                      "peak_rss_mib": done[size][name]["peak_rss_mib"]}
               for size in sizes if name in done[size]}
        for name in names
    }  # fmt: skip
    for size in sizes:
        steps = done[size]
        if "extract_workers_1" in steps and "extract_workers_2" in steps:
            results["sizes"][size]["workers_2_over_1"] = round(steps["extract_workers_1"]["seconds"] / steps["extract_workers_2"]["seconds"], 2)
    # Linear in the largest size that measured each step (the curve says whether linear holds).
    projection = {}
    for name in names:
        size = max((size for size in sizes if name in done[size]), key=int)
        projection[name] = {"from_size": int(size),
                            "minutes": round(done[size][name]["seconds"] * REGISTRY / int(size) / 60, 1)}  # fmt: skip
    results["projection_560k"] = projection


def save(results: dict, out: Path) -> None:
    summarise(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".json.part")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(out)


def bench_size(count: int, folder: Path, names: list[str], results: dict, out: Path) -> None:
    """Each step is saved to out as soon as it is measured: an interrupted run keeps what it measured."""
    source = folder / f"trials-{count}.jsonl"
    synthesise(count, source)
    workspace = folder / f"ws-{count}"
    # when and at which commit, per size: --keep puts sizes of several runs in one file
    steps = results["sizes"].setdefault(str(count), {"when": results["when"], "commit": results["commit"]})
    for name in names:
        measured = step(workspace, *STEPS[name](source, folder, count))
        if "failed" not in measured:
            measured["trials_per_s"] = round(count / measured["seconds"], 1)
        steps[name] = measured
        save(results, out)
        print(json.dumps({count: {name: measured}}), file=sys.stderr, flush=True)
        if "failed" in measured:
            return  # the steps after it would measure what it left undone


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--steps", default=DEFAULT_STEPS, help=f"in this order; default {DEFAULT_STEPS}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    parser.add_argument("--keep", action="store_true", help="add the sizes to those already in --out")
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    names = options.steps.split(",")
    if unknown := [name for name in names if name not in STEPS]:
        raise SystemExit(f"unknown steps {unknown}: choose from {', '.join(STEPS)}")
    if names[0] != "import":
        raise SystemExit("--steps must start with import: each size has a workspace of its own")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    results = json.loads(options.out.read_text()) if options.keep and options.out.exists() else {"sizes": {}}
    results |= {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit.stdout.strip(),
                "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()}}  # fmt: skip
    results.pop("projection_560k_minutes", None)
    with tempfile.TemporaryDirectory(prefix="eligex-scale-") as scratch:
        for count in sizes:
            results["sizes"].pop(str(count), None)
            bench_size(count, Path(scratch), names, results, options.out)
    print(f"wrote {options.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
