"""Benchmarks, run on demand (`make bench`): throughput and memory on this machine, as JSON and a table.

    .venv/bin/python bench/run.py [--only rules,rules_length,import,pipeline,openai,import_memory] [--out bench/results/latest.json]

Measures
- rules: the rules backend alone (segmentation + extraction + grounding + validation, no I/O) over
  every shared record, and its growth from 100 to 1,000 to 5,000 trials (records repeated under new
  ids), with peak Python memory;
- rules_length: the rules backend on one trial whose one exclusion criterion is 10 KB to 5 MB long
  (a real-looking sentence repeated): time grows linearly with length (it was quadratic);
- import: `import` of every shared file into a fresh workspace;
- pipeline: `extract --all` with the rules backend into that workspace (records written, rows
  stored), then the same run again over unchanged trials (everything up to date);
- import_memory: peak resident memory of `eligex import` (a process of its own) over JSONL files of
  about 1, 50 and 200 MB (the 2026 export's rows repeated under new ids): flat in file size;
- openai: the openai backend against a local OpenAI-compatible server that waits a fixed latency
  per call, at concurrency 1, 8 and 32, against the ideal concurrency / latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from extract.backend import assemble  # noqa: E402
from extract.importer import files_under, import_files  # noqa: E402
from extract.pipeline import run_extraction  # noqa: E402
from extract.rules import RulesBackend  # noqa: E402
from extract.sources import RawRecord, parse_document  # noqa: E402
from extract.store import Workspace  # noqa: E402
from extract.text import segment  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SHARED_FOLDERS = [SHARED / "ctgov-v2", SHARED / "ctgov-classic-xml", SHARED / "ctgov-2026"]


def shared_trials():
    trials = {}
    for path in files_under(SHARED_FOLDERS):
        for parsed in parse_document(path.read_bytes(), path.name):
            if isinstance(parsed, RawRecord):
                trials[parsed.trial.nct_id] = parsed.trial
    return list(trials.values())


def repeated(trials, count):
    """`count` trials cycling through the real ones, each under a new id (NCT9xxxxxxx)."""
    return [trials[i % len(trials)].model_copy(update={"nct_id": f"NCT9{i:07d}"}) for i in range(count)]


def time_rules(trials, measure_memory: bool = True) -> dict:
    """Time one untraced pass; measure peak Python memory in a second, traced pass (tracing is slow)."""
    backend = RulesBackend()

    async def extract_all():
        for trial in trials:
            criteria = segment(trial.eligibility_text)
            assemble(trial, criteria, await backend.extract(trial, criteria), backend)

    started = time.perf_counter()
    asyncio.run(extract_all())
    seconds = time.perf_counter() - started
    result = {"trials": len(trials), "seconds": round(seconds, 3), "trials_per_s": round(len(trials) / seconds, 1)}
    if measure_memory:
        tracemalloc.start()
        asyncio.run(extract_all())
        result["peak_python_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return result


def bench_rules() -> dict:
    trials = shared_trials()
    result = {"all_shared": time_rules(trials)}
    for count in (100, 1000, 5000):
        result[f"n{count}"] = time_rules(repeated(trials, count), measure_memory=count <= 1000)
    return result


# One exclusion naming a therapy, a lab, a marker, a stage and a performance scale.
LONG_SENTENCE = (
    "No prior treatment with an EGFR inhibitor or pembrolizumab; ANC >= 1.5 x 10^9/L. "
    "Patients with KRAS mutation, stage IV disease and ECOG 0-1 are excluded; "
)


def bench_rules_length(sizes_kb: tuple[int, ...] = (10, 100, 1000, 5000)) -> dict:
    """One trial, one criterion of each size, the whole rules path (segment, extract, ground, validate)."""
    os.environ["ELIGEX_RULES_BUDGET"] = "3600"  # measured, not cut short
    template = shared_trials()[0]
    time_rules([template], measure_memory=False)  # vocabularies loaded before the first size is timed
    results = {}
    for size in sizes_kb:
        text = "Exclusion Criteria:\n* " + LONG_SENTENCE * (size * 1024 // len(LONG_SENTENCE) + 1)
        trial = template.model_copy(update={"nct_id": "NCT90000000", "eligibility_text": text})
        timed = time_rules([trial], measure_memory=False)
        results[f"criterion_{size}kb"] = timed | {"characters": len(text), "ms_per_kb": round(timed["seconds"] * 1000 / size, 2)}
    return results


def bench_import_and_pipeline(run_pipeline: bool) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        workspace = Workspace(folder)
        files = files_under(SHARED_FOLDERS)
        started = time.perf_counter()
        summary = import_files(workspace, files)
        seconds = time.perf_counter() - started
        stored = summary.new + summary.changed + summary.unchanged
        result = {"import": {"files": len(files), "records": stored, "seconds": round(seconds, 3),
                             "records_per_s": round(stored / seconds, 1)}}  # fmt: skip
        if run_pipeline:
            trials = list(workspace.trials())
            backend = RulesBackend()
            for label in ("extract_all", "rerun_unchanged"):
                started = time.perf_counter()
                run = asyncio.run(run_extraction(workspace, backend, trials))
                seconds = time.perf_counter() - started
                result[label] = {"trials": len(trials), "extracted": run.extracted, "skipped": run.skipped,
                                 "seconds": round(seconds, 3), "trials_per_s": round(len(trials) / seconds, 1)}  # fmt: skip
        workspace.close()
        return result


def bench_import_memory(tree: Path = ROOT, sizes_mb: tuple[int, ...] = (1, 50, 200)) -> dict:
    """Peak RSS of `eligex import` of one large JSONL, run from `tree` (another checkout, to compare)."""
    rows = [json.loads(line) for line in (SHARED / "ctgov-2026" / "trials.jsonl").read_text().splitlines()]
    results = {}
    for size in sizes_mb:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "trials.jsonl"
            written = count = 0
            with path.open("w") as out:
                while written < size * 2**20:
                    line = json.dumps(rows[count % len(rows)] | {"nct_id": f"NCT9{count:07d}"}) + "\n"
                    written += out.write(line)
                    count += 1
            command = [sys.executable, "-c", "from cli import main; main()", "--workspace", f"{folder}/ws", "import", str(path)]
            started = time.perf_counter()
            child = subprocess.Popen(command, cwd=tree, env=os.environ | {"PYTHONPATH": str(tree)}, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - started
            assert status == 0, child.stderr.read().decode()[-2000:]
            results[f"jsonl_{size}mb"] = {"records": count, "seconds": round(seconds, 1), "records_per_s": round(count / seconds, 1),
                                          "file_mib": round(written / 2**20, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}  # fmt: skip
    return results


def bench_openai() -> dict:
    from bench.openai_latency import run as run_openai  # needs the local OpenAI-compatible test server

    return run_openai(shared_trials())


def table(results: dict) -> str:
    lines = ["| benchmark | trials | seconds | per second | notes |", "|---|---|---|---|---|"]
    for section, entries in results.items():
        if not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            if isinstance(entry, dict) and "seconds" in entry:
                rate = entry.get("trials_per_s") or entry.get("records_per_s")
                notes = ", ".join(f"{k} {v}" for k, v in entry.items() if k not in ("seconds", "trials_per_s", "records_per_s", "trials", "records"))
                lines.append(f"| {section}.{name} | {entry.get('trials', entry.get('records'))} | {entry['seconds']} | {rate} | {notes} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="rules,rules_length,import,pipeline,openai,import_memory")
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout whose `eligex import` import_memory runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    only = set(args.only.split(","))
    results: dict = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(), "platform": platform.platform()},
    }
    if "rules" in only:
        results["rules"] = bench_rules()
    if "rules_length" in only:
        results["rules_length"] = bench_rules_length()
    if only & {"import", "pipeline"}:
        results["store"] = bench_import_and_pipeline("pipeline" in only)
    if "import_memory" in only:
        results["import_memory"] = bench_import_memory(args.tree)
    if "openai" in only:
        results["openai"] = bench_openai()
    results["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # whole process
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
