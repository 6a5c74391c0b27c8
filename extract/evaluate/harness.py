"""The I/O around scoring: gold files, the dev/test split, a stored run's records, report files."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from extract.errors import InputError, one_line
from extract.evaluate.report import render_html, render_markdown
from extract.evaluate.scoring import score_trial, summarise
from extract.store import Workspace, atomic_write
from schemas.gold import GoldFile

EVALS_DIR = Path(__file__).resolve().parents[2] / "evals"
GOLD_DIR = EVALS_DIR / "gold"
SPLITS_FILE = EVALS_DIR / "splits.json"
RESAMPLES, SEED = 1000, 0


def load_gold(gold_dir: Path = GOLD_DIR) -> dict[str, dict[str, Any]]:
    """Every gold file, validated against the contract: a broken one is one line naming it and the field."""
    return {path.stem: read_gold(path) for path in sorted(gold_dir.glob("NCT*.json"))}


def read_gold(path: Path) -> dict[str, Any]:
    try:
        gold = GoldFile.model_validate_json(path.read_bytes())
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(map(str, problem["loc"])) or "the file"
        raise InputError(one_line(f"gold file {path}: {where}: {problem['msg']}", limit=400)) from None
    if gold.nct_id != path.stem:
        raise InputError(f"gold file {path}: nct_id is {gold.nct_id}, not the file's name")
    return gold.model_dump(mode="json")


# The share of each category's new gold that goes to `test`; the rest, most of it, goes to `dev` for tuning.
TEST_SHARE = 0.3


def make_splits(gold: dict[str, dict[str, Any]], existing: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Stratified by category, and stable: a trial once assigned keeps its split.

    New trials, in (category, id) order, go to `test` while their category's test share would stay at
    or under TEST_SHARE (rounded to whole trials), else to `dev`. Removed gold files drop out.
    """
    splits: dict[str, list[str]] = {name: [i for i in (existing or {}).get(name, []) if i in gold] for name in ("dev", "test")}
    assigned = set(splits["dev"]) | set(splits["test"])
    per_category: dict[tuple[str, str], int] = defaultdict(int)
    for name, ids in splits.items():
        for nct_id in ids:
            per_category[(name, gold[nct_id]["category"])] += 1
    for nct_id in sorted((i for i in gold if i not in assigned), key=lambda i: (gold[i]["category"], i)):
        category = gold[nct_id]["category"]
        total = per_category[("dev", category)] + per_category[("test", category)] + 1
        name = "test" if per_category[("test", category)] < round(TEST_SHARE * total) else "dev"
        splits[name].append(nct_id)
        per_category[(name, category)] += 1
    return {name: sorted(ids) for name, ids in splits.items()}


def write_splits(gold_dir: Path = GOLD_DIR, path: Path = SPLITS_FILE) -> None:
    """Assign gold files added since the last time to a split (`python -m extract.evaluate.harness`)."""
    existing = json.loads(path.read_text()) if path.exists() else None
    atomic_write(path, (json.dumps(make_splits(load_gold(gold_dir), existing), indent=2) + "\n").encode())


def split_ids(split: str, path: Path = SPLITS_FILE) -> list[str]:
    splits = json.loads(path.read_text())
    return sorted(splits["dev"] + splits["test"]) if split == "all" else splits[split]


def check_imported(workspace: Workspace, nct_ids: list[str]) -> None:
    missing = sorted(set(nct_ids) - set(workspace.trial_ids()))
    if missing:
        raise InputError(
            f"{len(missing)} gold trials are not in the workspace ({', '.join(missing)}): "
            f"import them first: eligex import ../shared/data evals/records"
        )


def evaluate_run(workspace: Workspace, run_id: str, nct_ids: list[str], split: str,
                 gold: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:  # fmt: skip
    """Metrics of one stored run on the given gold trials, and each trial's eligibility text.

    A trial the run has no record for (its extraction failed) is scored as an empty extraction; a run
    of another split, or one holding no trial of this split, is refused rather than scored 0.
    """
    records = {nct_id: r.model_dump(mode="json") for nct_id, r in workspace.run_records(run_id, nct_ids).items()}
    run = workspace.run(run_id)
    if run["split"] is not None and run["split"] != split:
        raise InputError(f"run {run_id} extracted the {run['split']} split, not {split}: pass --split {run['split']}")
    if not records and not workspace.db.execute(
        "SELECT 1 FROM extractions WHERE run_id = ? AND nct_id IN (SELECT unnest(?)) LIMIT 1", [run_id, nct_ids]
    ).fetchone():
        raise InputError(f"run {run_id} extracted none of the {len(nct_ids)} trials of the {split} split")
    trials = [score_trial(nct_id, gold[nct_id]["eligibility"], records.get(nct_id)) for nct_id in nct_ids]
    metrics = {
        "run": {key: run[key] for key in ("run_id", "backend", "model", "prompt_version")},
        "split": split, "resamples": RESAMPLES, "seed": SEED,
        **summarise(trials, RESAMPLES, SEED),
        "trials": trials,
    }  # fmt: skip
    texts = {nct_id: record["eligibility_text"] for nct_id, record in records.items()}
    missing = [nct_id for nct_id in nct_ids if nct_id not in texts]
    if missing:
        texts |= {trial.nct_id: trial.eligibility_text for trial in workspace.trials(missing)}
    return metrics, texts


def report_dir(workspace: Workspace, run_id: str) -> Path:
    """reports/<run_id> in the workspace: reports are data, never written into the checkout."""
    if not re.fullmatch(r"[\w-][\w.-]*", run_id):  # never build a path from an unchecked id
        raise InputError(f"run id {run_id!r} cannot name a folder: pass --out")
    return workspace.root / "reports" / run_id


def write_reports(metrics: dict[str, Any], texts: dict[str, str], out_dir: Path) -> str:
    """metrics.json, report.md and report.html in `out_dir`; returns the Markdown."""
    markdown = render_markdown(metrics)
    atomic_write(out_dir / "metrics.json", (json.dumps(metrics, indent=2, default=str) + "\n").encode())
    atomic_write(out_dir / "report.md", markdown.encode())
    atomic_write(out_dir / "report.html", render_html(metrics, texts).encode())
    return markdown


if __name__ == "__main__":
    write_splits()
