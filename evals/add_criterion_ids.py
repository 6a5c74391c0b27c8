"""Give each gold quote the id of the criterion it comes from (`inc-3`, `exc-1`), as gold made in the
review workbench already has: the few-shot examples show an exclusion as an exclusion (extract/prompting.py).

Mechanical, not labelling: the trial's criteria are segmented as the pipeline segments them and a quote
gets the id of the one criterion that holds it. A quote found in none, or in several, is left without
one (the example then cannot tell its section). Ids already there are kept. Needs a workspace holding the
gold trials (see the README's eval section):

    .venv/bin/python evals/add_criterion_ids.py --workspace /tmp/ws-eval
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extract.grounding import evidences, locate  # noqa: E402
from extract.store import Workspace  # noqa: E402
from extract.text import segment  # noqa: E402
from schemas import Criterion  # noqa: E402


def add_ids(eligibility: dict[str, Any], criteria: list[Criterion]) -> int:
    """Set `criterion_id` where a quote has none and exactly one criterion holds it; the number set."""
    added = 0
    for evidence in evidences(eligibility):
        if evidence.get("criterion_id") or not evidence.get("quote"):
            continue
        homes = [c.id for c in criteria if locate(c.text, evidence["quote"], []) is not None]
        if len(homes) == 1:
            evidence_ordered = {"criterion_id": homes[0], **evidence}
            evidence.clear()
            evidence.update(evidence_ordered)
            added += 1
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True, help="a workspace that holds the gold trials' records")
    parser.add_argument("--gold", default=str(ROOT / "evals" / "gold"), help="the gold folder (default: evals/gold)")
    args = parser.parse_args(argv)
    paths = sorted(Path(args.gold).glob("NCT*.json"))
    trials = {trial.nct_id: trial for trial in Workspace(args.workspace).trials([p.stem for p in paths])}
    missing = [p.stem for p in paths if p.stem not in trials]
    if missing:
        print(f"error: the workspace has no record of {len(missing)} gold trials ({', '.join(missing[:3])}...): import them first", file=sys.stderr)
        return 2
    total = 0
    for path in paths:
        document = json.loads(path.read_text(encoding="utf-8"))
        added = add_ids(document["eligibility"], segment(trials[path.stem].eligibility_text))
        if added:
            path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        total += added
    print(f"{total} quotes given a criterion id in {len(paths)} gold files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
