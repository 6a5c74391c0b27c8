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
import asyncio
import json
import platform
import sys
import time
from datetime import datetime, timezone
from itertools import islice, cycle
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eligex  # noqa: E402
from extract.backend import assemble  # noqa: E402
from extract.importer import files_under  # noqa: E402
from extract.match_io import read_records  # noqa: E402
from extract.rules import RulesBackend  # noqa: E402
from extract.sources import RawRecord, parse_document  # noqa: E402
from extract.text import segment  # noqa: E402
from schemas.patient import Patient  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
PATIENTS = {
    "readme": json.loads((ROOT / "examples" / "patient.json").read_text()),
    "few_facts": {"age_years": 61, "cancer": {"name": "non-small cell lung cancer", "oncotree": "NSCLC"},
                  "biomarkers": [{"marker": "EGFR", "status": "positive", "alteration": "mutation", "variant": "L858R"}]},
    "empty": {},
}  # fmt: skip


def shared_records():
    rules, records = RulesBackend(), {}
    for path in files_under([SHARED / "ctgov-v2", SHARED / "ctgov-classic-xml", SHARED / "ctgov-2026"]):
        for parsed in parse_document(path.read_bytes(), path.name):
            if isinstance(parsed, RawRecord):
                trial = parsed.trial
                criteria = segment(trial.eligibility_text)
                records[trial.nct_id] = assemble(trial, criteria, asyncio.run(rules.extract(trial, criteria)), rules)
    return list(records.values())


def best_seconds(patient: Patient, records, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        eligex.match_all(patient, records)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, help="a folder of contract records (default: extract the shared trials)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "match.json")
    args = parser.parse_args()
    records = read_records(args.records)[0] if args.records else shared_records()
    ten_thousand = list(islice(cycle(records), 10_000))
    results = {}
    for name, profile in PATIENTS.items():
        patient = Patient.model_validate(profile)
        every = best_seconds(patient, records, args.repeat)
        many = best_seconds(patient, ten_thousand, args.repeat)
        results[name] = {"all_shared": {"records": len(records), "seconds": round(every, 4)},
                         "n10000": {"records": 10_000, "seconds": round(many, 4),
                                    "records_per_s": round(10_000 / many)}}  # fmt: skip
        print(f"{name:<10} all {len(records)} shared records: {every * 1000:7.1f} ms   10,000 records: "
              f"{many * 1000:7.1f} ms ({10_000 / many:,.0f} records/s)")  # fmt: skip
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "platform": platform.platform()},
              "best_of": args.repeat, "patients": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
