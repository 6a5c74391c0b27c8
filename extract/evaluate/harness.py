"""The I/O around scoring: gold files, the dev/test split, a stored run's records, report files."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from extract.errors import InputError
from extract.evaluate.report import render_html, render_markdown
from extract.evaluate.scoring import score_trial, summarise
from extract.store import Workspace, atomic_write

EVALS_DIR = Path(__file__).resolve().parents[2] / "evals"
GOLD_DIR = EVALS_DIR / "gold"
SPLITS_FILE = EVALS_DIR / "splits.json"
REPORTS_DIR = EVALS_DIR / "reports"
RESAMPLES, SEED = 1000, 0


def load_gold(gold_dir: Path = GOLD_DIR) -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(gold_dir.glob("NCT*.json"))}


def make_splits(gold: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Stratified by category: within each, in id order, alternate test/dev (odd groups start with test)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for nct_id, document in gold.items():
        groups[document["category"]].append(nct_id)
    splits: dict[str, list[str]] = {"dev": [], "test": []}
    for ids in groups.values():
        order = ("test", "dev") if len(ids) % 2 else ("dev", "test")
        for index, nct_id in enumerate(sorted(ids)):
            splits[order[index % 2]].append(nct_id)
    return {name: sorted(ids) for name, ids in splits.items()}


def write_splits(gold_dir: Path = GOLD_DIR, path: Path = SPLITS_FILE) -> None:
    """Regenerate evals/splits.json after gold files are added."""
    atomic_write(path, (json.dumps(make_splits(load_gold(gold_dir)), indent=2) + "\n").encode())


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

    A trial the run has no record for (its extraction failed) is scored as an empty extraction.
    """
    records = {nct_id: r.model_dump(mode="json") for nct_id, r in workspace.run_records(run_id).items()}
    # Not Workspace.runs(): its timestamps need pytz, which duckdb does not install.
    backend, model, version = workspace.db.execute(
        "SELECT backend, model, prompt_version FROM runs WHERE run_id = ?", [run_id]
    ).fetchone()
    trials = [score_trial(nct_id, gold[nct_id]["eligibility"], records.get(nct_id)) for nct_id in nct_ids]
    metrics = {
        "run": {"run_id": run_id, "backend": backend, "model": model, "prompt_version": version},
        "split": split, "resamples": RESAMPLES, "seed": SEED,
        **summarise(trials, RESAMPLES, SEED),
        "trials": trials,
    }  # fmt: skip
    texts = {nct_id: record["eligibility_text"] for nct_id, record in records.items()}
    missing = [nct_id for nct_id in nct_ids if nct_id not in texts]
    if missing:
        texts |= {trial.nct_id: trial.eligibility_text for trial in workspace.trials(missing)}
    return metrics, texts


def report_dir(run_id: str) -> Path:
    if not re.fullmatch(r"[\w-][\w.-]*", run_id):  # never build a path from an unchecked id
        raise InputError(f"run id {run_id!r} cannot name a folder: pass --out")
    return REPORTS_DIR / run_id


def write_reports(metrics: dict[str, Any], texts: dict[str, str], out_dir: Path) -> str:
    """metrics.json, report.md and report.html in `out_dir`; returns the Markdown."""
    markdown = render_markdown(metrics)
    atomic_write(out_dir / "metrics.json", (json.dumps(metrics, indent=2, default=str) + "\n").encode())
    atomic_write(out_dir / "report.md", markdown.encode())
    atomic_write(out_dir / "report.html", render_html(metrics, texts).encode())
    return markdown
