"""Rebuild examples/trials from ../shared/data: every gold trial's record plus a varied handful.

Run from the repository root: `.venv/bin/python examples/make_sample.py`.
"""

import json
import shutil
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "trials"
GOLD = Path(__file__).resolve().parents[1] / "evals" / "gold"
EXTRA_2026 = 20  # the first oncology trials of the export, beyond the gold ones
CLASSIC = ["NCT00001177.xml", "NCT00482794.xml", "NCT02260193.xml", "NCT02591810.xml", "NCT03840122.xml"]


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "ctgov-v2").mkdir(parents=True)
    (OUT / "ctgov-classic-xml").mkdir()
    gold = {p.stem for p in GOLD.glob("NCT*.json")}  # gold files are named by their trial
    rows = [json.loads(line) for line in (SHARED / "ctgov-2026" / "trials.jsonl").open()]
    extra = set([r["nct_id"] for r in rows if r["_oncology"] and r["nct_id"] not in gold][:EXTRA_2026])
    chosen = [r for r in rows if r["nct_id"] in gold or r["nct_id"] in extra]
    with (OUT / "ctgov-2026-sample.jsonl").open("w") as out:
        for row in chosen:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    for path in sorted((SHARED / "ctgov-v2").glob("NCT*.json")):
        if path.stem in gold:
            shutil.copy(path, OUT / "ctgov-v2" / path.name)
    classic = set(CLASSIC) | {path.name for path in (SHARED / "ctgov-classic-xml").glob("NCT*.xml") if path.stem in gold}
    for name in sorted(classic):
        shutil.copy(SHARED / "ctgov-classic-xml" / name, OUT / "ctgov-classic-xml" / name)
    print(f"{len(chosen)} rows of the 2026 export, {len(list((OUT / 'ctgov-v2').iterdir()))} v2 studies, {len(classic)} classic XML")


if __name__ == "__main__":
    main()
