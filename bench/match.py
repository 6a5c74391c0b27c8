"""Matching speed: one patient against every shared record, and against 10,000 records.

    .venv/bin/python bench/match.py [--records DIR] [--repeat 5] [--out bench/results/match.json]

The records are the rules backend's for every trial in ../shared/data (made first, not timed), or
the contract records of `--records DIR` (a `structured/` folder). 10,000 records are those repeated.
Each figure is the best of `--repeat` runs of `eligex.match_all` over all of them (matched and ranked
as `eligex match` does), for three patients: the README's (HER2-positive breast cancer, every field given), one
with a few facts, and an empty profile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from itertools import islice, cycle
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eligex  # noqa: E402
from extract.match_io import read_records  # noqa: E402
from run import shared_trials  # noqa: E402  (bench/run.py: every shared trial, newest per id)
from schemas.patient import Patient  # noqa: E402

PATIENTS = {
    "readme": json.loads((ROOT / "examples" / "patient.json").read_text()),
    "few_facts": {"age_years": 61, "cancer": {"name": "non-small cell lung cancer", "oncotree": "NSCLC"},
                  "biomarkers": [{"marker": "EGFR", "status": "positive", "alteration": "mutation", "variant": "L858R"}]},
    "empty": {},
}  # fmt: skip


def best_seconds(patient: Patient, records, repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds, each the best of `repeat` runs: on a shared machine CPU time is the steadier."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        eligex.match_all(patient, records)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, help="a folder of contract records (default: extract the shared trials)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "match.json")
    args = parser.parse_args()
    records = read_records(args.records)[0] if args.records else [eligex.extract(trial) for trial in shared_trials()]
    ten_thousand = list(islice(cycle(records), 10_000))
    results = {}
    for name, profile in PATIENTS.items():
        patient = Patient.model_validate(profile)
        (every, every_cpu), (many, many_cpu) = (best_seconds(patient, rs, args.repeat) for rs in (records, ten_thousand))
        results[name] = {"all_shared": {"records": len(records), "seconds": round(every, 4), "cpu_seconds": round(every_cpu, 4)},
                         "n10000": {"records": 10_000, "seconds": round(many, 4), "cpu_seconds": round(many_cpu, 4),
                                    "records_per_cpu_s": round(10_000 / many_cpu)}}  # fmt: skip
        print(f"{name:<10} all {len(records)} shared records: {every * 1000:6.1f} ms ({every_cpu * 1000:6.1f} ms CPU)   "
              f"10,000 records: {many * 1000:6.1f} ms ({many_cpu * 1000:6.1f} ms CPU)")  # fmt: skip
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)},
              "best_of": args.repeat, "patients": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
