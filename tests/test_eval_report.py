"""The harness end to end on a tiny real workspace: split file, extraction run, metrics.json, report.md,
and the `eligex eval` command."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from cli import main
from extract.evaluate import harness
from extract.evaluate.scoring import HEADLINE_FIELDS, facts
from extract.importer import import_files
from extract.pipeline import run_extraction
from extract.store import Workspace
from tests.conftest import EcogBackend

GOLD_IDS = ["NCT05818137", "NCT05879978"]  # gold trials whose records are in ../shared/data/ctgov-v2


def backend():
    try:
        from extract.rules import RulesBackend
    except ImportError:  # stands in while the rules backend cannot be imported
        return EcogBackend()
    return RulesBackend()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, shared_data):
    workspace = Workspace(tmp_path_factory.mktemp("workspace"))
    import_files(workspace, [shared_data / "ctgov-v2" / f"{nct_id}.json" for nct_id in GOLD_IDS])
    return workspace


@pytest.fixture(scope="module")
def run_id(workspace):
    summary = asyncio.run(run_extraction(workspace, backend(), list(workspace.trials()), force=True))
    assert summary.failures == {}
    return summary.run_id


def test_every_gold_file_is_in_exactly_one_split():
    gold = harness.load_gold()
    splits = json.loads(harness.SPLITS_FILE.read_text())
    assert sorted(splits["dev"] + splits["test"]) == sorted(gold), "every gold trial in exactly one split"
    assert splits == harness.make_splits(gold, splits), (
        "evals/splits.json lacks new gold files: run `.venv/bin/python -m extract.evaluate.harness`"
    )
    # the first 82 were split half and half; new gold goes mostly to dev
    assert len(splits["test"]) <= len(splits["dev"]) + 2


def test_new_gold_goes_mostly_to_dev_with_a_fixed_test_share_per_category():
    gold = {f"NCT000000{i:02}": {"category": "a" if i <= 10 else "b"} for i in range(1, 14)}
    splits = harness.make_splits(gold)
    in_test = {category: sum(gold[i]["category"] == category for i in splits["test"]) for category in "ab"}
    assert in_test == {"a": round(harness.TEST_SHARE * 10), "b": round(harness.TEST_SHARE * 3)}
    assert len(splits["dev"]) + len(splits["test"]) == 13


def test_a_category_already_split_half_and_half_sends_its_new_gold_to_dev():
    existing = {"dev": ["NCT00000001"], "test": ["NCT00000002"]}
    gold = {f"NCT0000000{i}": {"category": "a"} for i in range(1, 5)}
    assert harness.make_splits(gold, existing) == {"dev": ["NCT00000001", "NCT00000003", "NCT00000004"],
                                                   "test": ["NCT00000002"]}  # fmt: skip


def test_splits_are_stable_when_gold_files_are_added():
    gold = {f"NCT0000000{i}": {"category": "a"} for i in range(1, 5)}
    first = harness.make_splits(gold)
    gold["NCT00000000"] = {"category": "a"}  # sorts first: must not move the others
    second = harness.make_splits(gold, first)
    assert set(first["dev"]) <= set(second["dev"]) and set(first["test"]) <= set(second["test"])


def test_metrics_and_reports_of_a_run(workspace, run_id, tmp_path):
    gold = harness.load_gold()
    metrics, texts = harness.evaluate_run(workspace, run_id, GOLD_IDS, "all", gold)
    markdown = harness.write_reports(metrics, texts, tmp_path)

    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["run"]["run_id"] == run_id and written["split"] == "all" and written["n_trials"] == 2
    gold_facts = sum(len(facts(f, gold[n]["eligibility"])) for f in HEADLINE_FIELDS for n in GOLD_IDS)
    assert written["micro"]["tp"] + written["micro"]["fn"] == gold_facts
    assert written["micro"]["f1"] is not None and len(written["micro"]["ci"]["f1"]) == 2
    assert set(written["fields"]) >= {*HEADLINE_FIELDS, "cancer_types", "biomarkers_strict"}
    assert [t["nct_id"] for t in written["trials"]] == GOLD_IDS
    assert all(t["extracted"] for t in written["trials"])
    registry = ("sex", "min_age_years", "max_age_years")
    from_text = [m for t in written["trials"] for m in t["missed"] if m["field"] not in registry]
    assert all(m["quote"] for m in from_text)  # misses come with the gold quote

    assert markdown == (tmp_path / "report.md").read_text()
    assert "| field | gold | extracted | found | P | R | F1 | F1 95% CI |" in markdown
    for field in HEADLINE_FIELDS:
        assert f"\n| {field} | " in markdown
    assert "| **micro** |" in markdown and "## Per trial" in markdown
    assert "<mark class=" in (tmp_path / "report.html").read_text()


def test_eval_command_scores_a_stored_run(workspace, run_id, tmp_path):
    runner = CliRunner()
    args = ["--workspace", str(workspace.root), "eval", "--run", run_id, "--split", "all", "--out", str(tmp_path)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == (tmp_path / "report.md").read_text()
    assert "not extracted, scored as empty" in result.stderr  # the gold trials this run lacks
    assert {p.name for p in tmp_path.iterdir()} == {"metrics.json", "report.md", "report.html"}

    failing = runner.invoke(main, [*args, "--fail-under", "1"])
    assert failing.exit_code == 1 and "below --fail-under" in failing.stderr

    compared = runner.invoke(main, ["--workspace", str(workspace.root), "eval", "--compare", run_id, run_id,
                                    "--split", "all", "--out", str(tmp_path / "compare")])  # fmt: skip
    assert compared.exit_code == 0, compared.output
    assert "| **micro** |" in compared.stdout and "+0.000" in compared.stdout
    page = (tmp_path / "compare" / "compare.html").read_text()
    assert f"{run_id} → {run_id}" in page and "No trial changed." in page  # a run against itself


def test_eval_command_names_what_to_import(workspace):
    result = CliRunner().invoke(main, ["--workspace", str(workspace.root), "eval", "--backend", "rules"])
    assert result.exit_code == 2
    assert "eligex import ../shared/data evals/records" in result.stderr


def test_the_demo_sample_holds_every_gold_trial():
    """`make demo` evaluates on the sample: every gold trial's record must be bundled."""
    from extract.importer import files_under
    from extract.sources import RawRecord, parse_document

    root = harness.GOLD_DIR.parents[1]
    bundled = {
        parsed.trial.nct_id
        for path in files_under([root / "examples" / "trials", root / "evals" / "records"])
        for parsed in parse_document(path.read_bytes(), path.name)
        if isinstance(parsed, RawRecord)
    }
    missing = sorted(set(harness.load_gold()) - bundled)
    assert not missing, f"run `.venv/bin/python examples/make_sample.py`: the sample lacks {missing}"
