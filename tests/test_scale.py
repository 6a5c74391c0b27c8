"""At scale: the rules in a process pool, storage in batches, up-to-date trials skipped in the database."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_robustness import ELIGEX, environment, ok_counts, raw_disagreements, wait_for_records

from extract.importer import import_files
from extract.pipeline import plan, run_in_pool
from extract.rules import RulesBackend
from extract.store import Workspace

from conftest import SHARED_DATA

EXPORT_2026 = SHARED_DATA / "ctgov-2026" / "trials.jsonl"


def eligex(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The command line, with time for a thousand trials on a loaded machine."""
    return subprocess.run([ELIGEX, *args], env=env, capture_output=True, text=True, timeout=900)


def children(pid: int) -> list[int]:
    """The processes `pid` started (Linux /proc)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def records_without_time(folder: Path) -> dict[str, dict]:
    """Each record file of `folder`, without the one field that differs between runs (the time)."""
    found = {}
    for path in sorted(folder.glob("NCT*.json")):
        document = json.loads(path.read_bytes())
        del document["extraction"]["extracted_at"]
        found[path.stem] = document
    return found


@pytest.fixture(scope="module")
def some_trials(tmp_path_factory) -> Path:
    """The first 150 rows of the 2026 export, as a file."""
    path = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    with open(EXPORT_2026, encoding="utf-8") as rows:
        path.write_text("".join(next(rows) for _ in range(150)))
    return path


def test_two_workers_write_the_records_one_writes(tmp_path, some_trials):
    root = tmp_path / "ws"
    env = environment(root)
    assert eligex(env, "import", str(some_trials)).returncode == 0
    records = {}
    for workers in (1, 2):
        result = eligex(env, "extract", "--all", "--backend", "rules", "--force", "--workers", str(workers))
        assert result.returncode == 0, result.stderr
        assert "150 extracted, 0 up to date, 0 failed" in result.stderr
        records[workers] = records_without_time(root / "structured")
    assert len(records[1]) == 150 and records[1] == records[2]
    assert ok_counts(root) == dict.fromkeys(records[1], 2)  # one row per trial and run

    again = eligex(env, "extract", "--all", "--backend", "rules", "--workers", "2")
    assert "0 extracted, 150 up to date, 0 failed" in again.stderr


def test_up_to_date_trials_are_counted_in_the_database_and_never_read(tmp_path, some_trials):
    workspace = Workspace(tmp_path / "ws")
    backend = RulesBackend()
    with workspace.writing():
        import_files(workspace, [some_trials])
        first = plan(workspace, backend)
        assert (first.to_extract, first.skipped) == (150, 0)
        summary = run_in_pool(workspace, backend, first, workers=1, batch_size=40)
        assert (summary.extracted, summary.skipped) == (150, 0)
        named = sorted(path.stem for path in workspace.structured_dir.glob("NCT*.json"))[:3]
        # A trial whose stored document is broken would fail if it were read: up to date, it is not.
        workspace.db.execute("UPDATE trials SET trial = '{}' WHERE nct_id = ?", [named[0]])
        rerun = plan(workspace, backend)
        assert (rerun.to_extract, rerun.skipped) == (0, 150)
        assert run_in_pool(workspace, backend, rerun, workers=2).failures == {}
        forced = plan(workspace, backend, named, force=True)
        assert (forced.to_extract, forced.skipped) == (3, 0)
        summary = run_in_pool(workspace, backend, forced, workers=2)
        assert summary.extracted == 2 and list(summary.failures) == [named[0]]
        assert summary.failures[named[0]].startswith("not a stored trial")


def test_ctrl_c_stops_the_pool_keeps_what_was_stored_and_exits_130(tmp_path):
    root = tmp_path / "ws"
    env = environment(root, {"ELIGEX_PROGRESS_SECONDS": "0"})
    assert eligex(env, "import", str(EXPORT_2026)).returncode == 0
    extracting = subprocess.Popen([ELIGEX, "extract", "--all", "--backend", "rules", "--workers", "2"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for_records(root, 100, extracting, seconds=120)
    extracting.send_signal(signal.SIGINT)
    _, stderr = extracting.communicate(timeout=60)

    assert extracting.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("interrupted at")]
    runs = [json.loads(line) for line in eligex(env, "runs", "--json").stdout.splitlines()]
    assert [run["status"] for run in runs] == ["interrupted"]
    stored = ok_counts(root)
    assert runs[0]["summary"]["extracted"] == len(stored) < 1034
    assert sorted(p.stem for p in (root / "structured").glob("NCT*.json")) == sorted(stored)
    again = eligex(env, "extract", "--all", "--backend", "rules")
    assert f"{1034 - len(stored)} extracted, {len(stored)} up to date, 0 failed" in again.stderr


@pytest.mark.parametrize("count", [1, 2])
def test_an_extraction_killed_mid_batch_leaves_files_and_rows_agreeing(tmp_path, count):
    root = tmp_path / "ws"
    env = environment(root)
    assert eligex(env, "import", str(EXPORT_2026)).returncode == 0
    extracting = subprocess.Popen([ELIGEX, "extract", "--all", "--backend", "rules", "--workers", str(count)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for_records(root, 70, extracting, seconds=120)
    workers = children(extracting.pid)
    # --workers 1 too extracts in a worker of its own: this process writes meanwhile.
    assert len(workers) == count
    extracting.send_signal(signal.SIGKILL)
    assert extracting.wait(10) == -signal.SIGKILL
    # The workers end with it, rather than wait for work forever.
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text() for pid in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived their parent"
        time.sleep(0.05)

    # Opening the workspace writes the files still pending: every served row has its file, and back.
    with Workspace(root).writing() as workspace:
        served = {nct_id for (nct_id,) in workspace.db.execute("SELECT nct_id FROM current_records").fetchall()}
    assert sorted(p.stem for p in (root / "structured").glob("NCT*.json")) == sorted(served)
    assert not [p for p in (root / "structured").iterdir() if p.name.startswith(".")]
    assert raw_disagreements(root) == []
    again = eligex(env, "extract", "--all", "--backend", "rules")
    assert f"{1034 - len(served)} extracted, {len(served)} up to date, 0 failed" in again.stderr


def test_record_files_left_unwritten_are_written_from_their_rows_when_the_workspace_opens(tmp_path, some_trials):
    root = tmp_path / "ws"
    workspace = Workspace(root)
    with workspace.writing():
        import_files(workspace, [some_trials])
        chosen = plan(workspace, RulesBackend())
        workspace.structured_dir.write_text("in the way")  # a file where the folder goes: no record file can be written
        with pytest.raises(OSError):
            run_in_pool(workspace, RulesBackend(), chosen, workers=1, batch_size=40)
        # The first batch is committed; its files wait in pending_files, which names each one's row
        # rather than holding a second copy of the record.
        pending = workspace.db.execute("SELECT count(*), count(data), count(run_id) FROM pending_files").fetchone()
        assert pending == (40, 0, 40)
    workspace.structured_dir.unlink()

    with Workspace(root).writing() as reopened:
        rows = dict(reopened.db.execute("SELECT nct_id, record FROM extractions WHERE status = 'ok'").fetchall())
        assert reopened.db.execute("SELECT count(*) FROM pending_files").fetchone() == (0,)
    assert len(rows) == 40
    assert {path.stem: path.read_text() for path in (root / "structured").glob("NCT*.json")} == rows
