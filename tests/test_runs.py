"""Runs that are interrupted or overlap: Ctrl-C, SIGKILL, a full disk, a read-only workspace, a busy
workspace, evaluation runs beside served records. `eligex` runs as a real subprocess where a signal
or a file system is the point."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_server import OpenAIServer, first_criterion_answer
from test_robustness import ELIGEX, MODEL, endpoint, environment, eligex, store_rows, wait_for_records

from extract.store import Workspace
from schemas import EligibilityRecord

from conftest import SHARED_DATA, run, use_llm_server

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "trials"  # with evals/records: every gold trial


def runs_of(env: dict[str, str]) -> list[dict]:
    listed = eligex(env, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with open(SHARED_DATA / "ctgov-2026" / "trials.jsonl", encoding="utf-8") as lines:
        found = [row for row in map(json.loads, lines) if row["eligibility"].get("raw_text")]
    return found[:30]


# -- Ctrl-C and SIGKILL --------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_a_stopped_run_is_marked_interrupted_and_ctrl_c_exits_130(tmp_path, rows, stop):
    root = tmp_path / "workspace"
    nct_ids = store_rows(root, rows)
    server = OpenAIServer(latency=0.2, respond=first_criterion_answer)
    server.start()
    env = environment(root, endpoint(server) | {"ELIGEX_PROGRESS_SECONDS": "0"})
    try:
        extracting = subprocess.Popen([ELIGEX, "extract", "--all", "--backend", "openai", "--concurrency", "2"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        wait_for_records(root, 4, extracting, seconds=30)
        extracting.send_signal(stop)
        _, stderr = extracting.communicate(timeout=30)
    finally:
        server.stop()

    [listed] = runs_of(env)
    assert listed["status"] == "interrupted"
    if stop == signal.SIGKILL:
        assert extracting.returncode == -signal.SIGKILL
        return
    assert extracting.returncode == 130, stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("interrupted at")]
    done = int(line.split()[2])
    assert 0 < done < len(nct_ids) and f"interrupted at {done} of {len(nct_ids)} (extracting (openai))" in line
    assert f"run {listed['run_id']} is marked interrupted" in line
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert listed["status"] == "interrupted" and listed["summary"]["extracted"] >= done
    # Progress was said, though stderr is no terminal.
    assert "extracting (openai): 1 of 30 after" in stderr
    # What was stored stays; running again does the rest.
    again = eligex(env | {"OPENAI_BASE_URL": "http://127.0.0.1:9"}, "extract", "--all", "--backend", "openai")
    assert f"{listed['summary']['extracted']} up to date" in again.stderr


# -- a full disk, a read-only workspace -----------------------------------------------------------------


def in_mount_namespace(script: str) -> subprocess.CompletedProcess:
    """`script` as root of a mount namespace of its own, where a small tmpfs can fill up."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("needs unshare -rm (user and mount namespaces)")
    return subprocess.run(["unshare", "-rm", "sh", "-euc", script], capture_output=True, text=True, timeout=300)


def test_a_full_disk_is_one_line_and_exit_2_and_a_rerun_leaves_no_file_without_its_row(tmp_path, rows):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    workspace, kept = tmp_path / "ws", tmp_path / "kept"
    workspace.mkdir()
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment(workspace).items() if k in ("PATH", "ELIGEX_WORKSPACE"))
    result = in_mount_namespace(f"""
        mount -t tmpfs -o size=24m tmpfs {workspace}
        {env} {ELIGEX} import {source} >/dev/null 2>&1
        free=$(df --output=avail -k {workspace} | tail -1)
        head -c $(( (free - 150) * 1024 )) /dev/zero > {workspace}/filler || true
        set +e
        {env} {ELIGEX} extract --all --backend rules 2> {tmp_path}/full.err; echo $? > {tmp_path}/full.code
        set -e
        rm {workspace}/filler
        {env} {ELIGEX} extract --all --backend rules 2> {tmp_path}/rerun.err; echo $? > {tmp_path}/rerun.code
        cp -a {workspace} {kept}
    """)
    assert result.returncode == 0, result.stderr
    full = (tmp_path / "full.err").read_text()
    assert (tmp_path / "full.code").read_text().strip() == "2", full
    assert full.splitlines()[-1].startswith("Error: cannot write to the workspace") and "Traceback" not in full, full
    assert (tmp_path / "rerun.code").read_text().strip() == "0", (tmp_path / "rerun.err").read_text()
    # Every record file is the one its row says is current, and every trial has one.
    db = Workspace(kept)
    served = dict(db.db.execute(
        "SELECT c.nct_id, e.record FROM current_records c JOIN extractions e USING (run_id, nct_id)").fetchall())  # fmt: skip
    files = {path.stem: path.read_text() for path in (kept / "structured").glob("NCT*.json")}
    assert sorted(files) == sorted(served) == sorted(row["nct_id"] for row in rows)
    assert all(EligibilityRecord.model_validate_json(files[n]) == EligibilityRecord.model_validate_json(served[n]) for n in files)
    db.close()


@pytest.mark.parametrize("command", [["import", "{source}"], ["extract", "--all", "--backend", "rules"]], ids=["import", "extract"])
def test_a_read_only_workspace_is_one_line_and_exit_2(tmp_path, rows, command):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows[:3]))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment(workspace).items() if k in ("PATH", "ELIGEX_WORKSPACE"))
    args = " ".join(arg.format(source=source) for arg in command)
    result = in_mount_namespace(f"""
        mount -t tmpfs tmpfs {workspace}
        {env} {ELIGEX} import {source} >/dev/null 2>&1
        mount -o remount,ro {workspace}
        set +e
        {env} {ELIGEX} {args}; echo "exit $?"
    """)
    code = result.stdout.splitlines()[-1]
    stderr = result.stderr.splitlines()
    assert code == "exit 2" and len(stderr) == 1, result
    assert stderr[0].startswith("Error: cannot write to the workspace (Read-only file system"), stderr


# -- a busy workspace ------------------------------------------------------------------------------------


@pytest.mark.parametrize("holder", ["eligex", "duckdb"])
def test_while_a_workspace_is_in_use_every_command_says_so_in_one_line(tmp_path, holder):
    root = tmp_path / "ws"
    assert run("--workspace", str(root), "import", str(SHARED_DATA / "ctgov-v2" / "NCT05594173.json")).exit_code == 0
    assert run("--workspace", str(root), "extract", "--all", "--backend", "rules").exit_code == 0
    env = environment(root)
    workspace = Workspace(root)
    if holder == "eligex":
        held = workspace.writing()
        held.__enter__()
    workspace.db  # an open database: DuckDB lets no other process open it
    try:
        results = {name: eligex(env, *args) for name, args in {
            "runs": ["runs"], "criteria": ["criteria", "NCT05594173"], "extract": ["extract", "--all"],
            "eval": ["eval", "--split", "dev"], "import": ["import", str(SHARED_DATA / "ctgov-v2" / "NCT05594173.json")],
        }.items()}  # fmt: skip
        shown = eligex(env, "show", "NCT05594173", "--json")
    finally:
        if holder == "eligex":
            held.__exit__(None, None, None)
        workspace.close()
    for name, result in results.items():
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.splitlines() == [f"Error: workspace {root} is in use by another eligex process; try again when it ends"], name
    # `show` reads the record file, written whole: it works meanwhile.
    assert shown.returncode == 0 and json.loads(shown.stdout)["nct_id"] == "NCT05594173"


# -- evaluation runs beside served records ---------------------------------------------------------------


@pytest.fixture
def gold_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    root = tmp_path / "ws"
    monkeypatch.setenv("ELIGEX_WORKSPACE", str(root))
    imported = run("import", str(SAMPLE), str(ROOT / "evals" / "records"))
    assert imported.exit_code == 0, imported.stderr
    return root


def served(root: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (root / "structured").glob("NCT*.json")}


def test_eval_never_changes_what_is_served_and_up_to_date_is_per_backend(gold_workspace, monkeypatch, tmp_path):
    first = run("extract", "--all", "--backend", "rules")
    assert first.exit_code == 0
    before = served(gold_workspace)
    count = len(before)
    server = OpenAIServer(respond=first_criterion_answer)
    server.start()
    try:
        use_llm_server(monkeypatch, tmp_path, server.base_url, "sk-test-not-secret", ELIGEX_MODEL="test-model",
                       ELIGEX_RPM="100000", ELIGEX_TPM="100000000")  # fmt: skip
        evaluated = run("eval", "--backend", "openai", "--split", "dev")
        assert evaluated.exit_code == 0, evaluated.stderr
        assert served(gold_workspace) == before  # the evaluation's records stay in its run
        assert f"0 extracted, {count} up to date" in run("extract", "--all", "--backend", "rules").stderr
        # A record served from another backend is not up to date for this one.
        assert run("extract", "NCT06450314", "--backend", "openai").exit_code == 0
        assert json.loads(run("show", "NCT06450314", "--json").stdout)["extraction"]["backend"] == "openai"
    finally:
        server.stop()
    again = run("extract", "--all", "--backend", "rules")
    assert f"1 extracted, {count - 1} up to date" in again.stderr
    assert json.loads(run("show", "NCT06450314", "--json").stdout)["extraction"]["backend"] == "rules"


def test_a_run_knows_its_split_and_reports_go_under_the_workspace(gold_workspace):
    dev = run("eval", "--backend", "rules", "--split", "dev")
    assert dev.exit_code == 0, dev.stderr
    run_id = dev.stderr.rsplit("run ", 1)[1].split(":")[0]
    assert (gold_workspace / "reports" / run_id / "report.md").exists()
    assert not (ROOT / "evals" / "reports" / run_id).exists()
    [listed] = [r for r in (json.loads(line) for line in run("runs", "--json").stdout.splitlines()) if r["run_id"] == run_id]
    assert listed["split"] == "dev" and listed["status"] == "finished"

    other = run("eval", "--run", run_id, "--split", "test")
    assert other.exit_code == 2
    assert other.stderr == f"Error: run {run_id} extracted the dev split, not test: pass --split dev\n"
    assert run("eval", "--run", run_id, "--split", "dev").exit_code == 0
    # A run of none of the split's trials has nothing to score: said, not scored 0.000.
    [test_trial] = json.loads((ROOT / "evals" / "splits.json").read_text())["test"][:1]
    plain = run("extract", test_trial, "--backend", "rules", "--force").stderr.split(" run ", 1)[1].split(":")[0]
    refused = run("eval", "--run", plain, "--split", "dev")
    dev_trials = len(json.loads((ROOT / "evals" / "splits.json").read_text())["dev"])
    assert refused.exit_code == 2 and f"extracted none of the {dev_trials} trials of the dev split" in refused.stderr
