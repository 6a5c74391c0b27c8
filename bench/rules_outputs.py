"""The rules backend's records of every shared trial, as one digest per trial: to check that a change
meant to keep output (a faster path, the finder gate) keeps it byte for byte.

    .venv/bin/python bench/rules_outputs.py --out digests.json [--gate off] [--against other.json]

A digest covers the whole record but its extraction time (eligibility with every offset, criteria,
warnings). `--against` compares with digests written before (by another checkout: run this file with
that checkout on PYTHONPATH) and exits 1 naming the trials that differ.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))

from extract.backend import assemble  # noqa: E402
from extract.importer import files_under  # noqa: E402
from extract.rules import RulesBackend  # noqa: E402
from extract.sources import RawRecord, parse_document  # noqa: E402
from extract.text import segment  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RETRIEVED_AT = datetime(2026, 1, 1, tzinfo=timezone.utc)  # fixed, so that records compare
SHARED_FOLDERS = [SHARED / "ctgov-v2", SHARED / "ctgov-classic-xml", SHARED / "ctgov-2026"]


def shared_trials():
    trials = {}
    for path in files_under(SHARED_FOLDERS):
        for parsed in parse_document(path.read_bytes(), path.name, retrieved_at=RETRIEVED_AT):
            if isinstance(parsed, RawRecord):
                trials[parsed.trial.nct_id] = parsed.trial
    return list(trials.values())


def digest(record) -> str:
    data = record.model_dump(mode="json")
    data["extraction"].pop("extracted_at")
    data["extraction"].pop("prompt_version")  # the rules version: follows the code, not the output
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def digests(trials) -> dict[str, str]:
    backend = RulesBackend()

    async def run() -> dict[str, str]:
        found = {}
        for trial in trials:
            criteria = segment(trial.eligibility_text)
            found[trial.nct_id] = digest(assemble(trial, criteria, await backend.extract(trial, criteria), backend))
        return found

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--against", type=Path)
    args = parser.parse_args()
    found = digests(shared_trials())
    if args.out:
        args.out.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"{len(found)} trials", file=sys.stderr)
    if args.against:
        before = json.loads(args.against.read_text())
        differ = sorted(nct for nct in before.keys() | found.keys() if before.get(nct) != found.get(nct))
        if differ:
            print(f"{len(differ)} of {len(found)} trials differ: {' '.join(differ[:50])}")
            sys.exit(1)
        print(f"all {len(found)} records identical")


if __name__ == "__main__":
    main()
