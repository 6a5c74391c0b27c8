"""`eligex sync` against the local stand-in registry (tests/ctgov_server.py) replaying real API v2 records:
the mark, what a second sync asks for and stores, withdrawn and removed studies, a sync cut short and resumed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from ctgov_server import CtgovServer, ctgov  # noqa: F401 (ctgov is a fixture)
from test_fetch import ALL_IDS, PHASE1, PHASE1_IDS, protocol, settings

from cli import main
from extract.errors import UpstreamError
from extract.fetch import Search
from extract.store import MIGRATIONS, Workspace
from extract.sync import mark_name, sync_search

PHASE2_IDS = [i for i in ALL_IDS if "PHASE2" in (protocol(i).get("designModule") or {}).get("phases", [])]


def last_update(nct_id: str) -> str | None:
    return ((protocol(nct_id).get("statusModule") or {}).get("lastUpdatePostDateStruct") or {}).get("date")


def sync_cli(ctgov, workspace_dir, *args, url=None):
    env = {"ELIGEX_CTGOV_URL": url or ctgov.url}
    command = ["--workspace", str(workspace_dir), "sync", "--rate", "60000", "--workers", "1", *args]
    return CliRunner().invoke(main, command, env=env)


def cli(workspace_dir, *args):
    return CliRunner().invoke(main, ["--workspace", str(workspace_dir), *args])


def search_filters(server) -> list[str | None]:
    """The last-update filter each search request sent (None: none), first pages only."""
    found = []
    for request in server.requests_to("/studies"):
        if "pageToken" not in request.params:
            advanced = request.params.get("filter.advanced", "")
            found.append(next((part for part in advanced.split(" AND ") if "LastUpdatePostDate" in part), None))
    return found


def in_db(workspace_dir, sql: str, parameters=()):
    workspace = Workspace(workspace_dir)
    try:
        return workspace.db.execute(sql, list(parameters)).fetchall()
    finally:
        workspace.close()


def mark_of(workspace_dir, search: Search):
    workspace = Workspace(workspace_dir)
    try:
        return workspace.mark(mark_name(search))
    finally:
        workspace.close()


def structured(workspace_dir) -> list[str]:
    return sorted(path.stem for path in (workspace_dir / "structured").glob("NCT*.json"))


@pytest.fixture
def ws(tmp_path):
    return tmp_path / "ws"


# -- the first sync and the next ----------------------------------------------------------------


def test_the_first_sync_fetches_the_whole_search_in_last_update_order_and_extracts_it(ctgov, ws):
    result = sync_cli(ctgov, ws, "--phase", "PHASE2", "--page-size", "5")

    assert result.exit_code == 0, result.output
    assert search_filters(ctgov) == [None]  # no mark: the whole search
    assert all(r.params["sort"] == "LastUpdatePostDate:asc" for r in ctgov.requests_to("/studies"))
    assert [row[0] for row in in_db(ws, "SELECT nct_id FROM trials ORDER BY nct_id")] == PHASE2_IDS
    assert structured(ws) == PHASE2_IDS  # extracted: structured/ and DuckDB are current
    assert in_db(ws, "SELECT count(*) FROM current_records")[0][0] == len(PHASE2_IDS)
    latest = max(filter(None, map(last_update, PHASE2_IDS)))
    assert mark_of(ws, Search(phases=("PHASE2",))) == {"last_update": latest, "pending_since": None}
    [line] = result.stdout.splitlines()  # the summary is the data; progress went to stderr
    assert f"{len(PHASE2_IDS)} new, 0 changed" in line and f"{len(PHASE2_IDS)} extracted" in line and latest in line
    assert "fetched the studies of the whole search" in result.stderr


def test_a_second_sync_sends_the_mark_and_stores_and_extracts_only_what_changed(ctgov, ws):
    assert sync_cli(ctgov, ws, "--phase", "PHASE2").exit_code == 0
    mark = mark_of(ws, Search(phases=("PHASE2",)))["last_update"]
    on_mark_day = [i for i in PHASE2_IDS if last_update(i) == mark]
    before = dict(in_db(ws, "SELECT nct_id, stored_at FROM trials"))
    changed = next(i for i in PHASE2_IDS if last_update(i) < mark)
    ctgov.update(changed, "2026-11-30", "COMPLETED")
    ctgov.requests.clear()

    result = sync_cli(ctgov, ws, "--phase", "PHASE2", "--json")

    assert result.exit_code == 0, result.output
    assert search_filters(ctgov) == [f"AREA[LastUpdatePostDate]RANGE[{mark},MAX]"]  # the mark, inclusive
    report = json.loads(result.stdout)
    assert (report["since"], report["mark"]) == (mark, "2026-11-30")
    # the changed study, and those of the mark's own day again (found unchanged, not rewritten)
    assert (report["new"], report["changed"], report["unchanged"]) == (0, 1, len(on_mark_day))
    assert report["extracted"] == 1 and report["withdrawn"] == []
    after = dict(in_db(ws, "SELECT nct_id, stored_at FROM trials"))
    assert [i for i in PHASE2_IDS if after[i] != before[i]] == [changed]
    [(run_id, record)] = in_db(ws, "SELECT run_id, record FROM extractions WHERE run_id = ?", [report["run_id"]])
    assert json.loads(record)["trial"]["overall_status"] == "COMPLETED"
    assert json.loads((ws / "structured" / f"{changed}.json").read_text())["trial"]["overall_status"] == "COMPLETED"


def test_a_sync_with_nothing_changed_extracts_nothing_and_keeps_the_mark(ctgov, ws):
    assert sync_cli(ctgov, ws, *["--phase", "PHASE1"]).exit_code == 0
    runs = in_db(ws, "SELECT count(*) FROM runs")[0][0]

    result = sync_cli(ctgov, ws, "--phase", "PHASE1", "--json")

    report = json.loads(result.stdout)
    assert result.exit_code == 0 and (report["new"], report["changed"], report["extracted"]) == (0, 0, 0)
    assert report["mark"] == report["since"] and in_db(ws, "SELECT count(*) FROM runs")[0][0] == runs


def test_the_mark_is_per_search_and_the_same_search_however_spelt(ctgov, ws):
    assert sync_cli(ctgov, ws, "--phase", "PHASE1", "--cond", "Cancer").exit_code == 0
    assert sync_cli(ctgov, ws, "--phase", "PHASE2", "--cond", "Cancer").exit_code == 0  # another search: its own start
    assert sync_cli(ctgov, ws, "--phase", "phase1", "--cond", "  cancer ").exit_code == 0  # the first one again

    first, other, again = search_filters(ctgov)
    assert first is None and other is None
    mark = mark_of(ws, Search(cond="cancer", phases=("PHASE1",)))["last_update"]
    assert again == f"AREA[LastUpdatePostDate]RANGE[{mark},MAX]"
    assert len(in_db(ws, "SELECT name FROM marks WHERE name LIKE 'sync %'")) == 2


def test_a_search_key_folds_case_spaces_order_and_repeats_and_leaves_out_the_date():
    a = Search(cond=" Breast   Cancer", statuses=("RECRUITING", "COMPLETED"), phases=("PHASE3", "PHASE2"))
    b = Search(cond="breast cancer", statuses=("COMPLETED", "RECRUITING", "COMPLETED"), phases=("PHASE2", "PHASE3"))
    assert a.key() == replace(b, updated_since=date(2024, 1, 1)).key()
    assert a.key() != Search(cond="breast cancer").key() != Search(term="breast cancer").key()
    assert json.loads(a.key()) == {"cond": "breast cancer", "phase": ["PHASE2", "PHASE3"], "status": ["COMPLETED", "RECRUITING"]}


# -- withdrawn and removed studies --------------------------------------------------------------


def test_a_withdrawn_study_is_counted_shown_and_exported_as_withdrawn(ctgov, ws):
    assert sync_cli(ctgov, ws, "--phase", "PHASE2").exit_code == 0
    withdrawn = next(i for i in PHASE2_IDS if (protocol(i).get("statusModule") or {}).get("overallStatus") != "WITHDRAWN")
    ctgov.update(withdrawn, "2026-12-01", "WITHDRAWN")

    result = sync_cli(ctgov, ws, "--phase", "PHASE2", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["withdrawn"] == [withdrawn]
    assert in_db(ws, "SELECT json_extract_string(trial, '$.trial.overall_status') FROM trials WHERE nct_id = ?",
                 [withdrawn]) == [("WITHDRAWN",)]  # fmt: skip
    shown = cli(ws, "show", withdrawn)
    assert shown.exit_code == 0 and f"warning: {withdrawn} is withdrawn" in shown.stderr
    assert "withdrawn: the registry's overall status is WITHDRAWN" in shown.stdout
    exported = cli(ws, "export", "--out", "-")
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert {r["nct_id"]: r["trial"]["overall_status"] for r in lines}[withdrawn] == "WITHDRAWN"
    assert f"withdrawn, kept with overall_status WITHDRAWN ({withdrawn})" in exported.stderr


def test_a_stored_study_the_registry_no_longer_has_is_marked_removed_never_served_as_current(ctgov, ws):
    assert sync_cli(ctgov, ws, "--phase", "PHASE1").exit_code == 0
    gone, kept = PHASE1_IDS[0], PHASE1_IDS[1]
    document = ctgov.studies.pop(gone)
    env = {"ELIGEX_CTGOV_URL": ctgov.url}

    fetched = CliRunner().invoke(main, ["--workspace", str(ws), "fetch", "--rate", "60000", "--nct", f"{gone},{kept}"], env=env)

    assert fetched.exit_code == 0, fetched.output  # news about a stored study, not a failure
    assert "0 new, 0 changed, 1 unchanged, 0 failed, 1 removed from the registry (marked so)" in fetched.stderr
    [(removed_at, reason)] = in_db(ws, "SELECT removed_at, removed_reason FROM trials WHERE nct_id = ?", [gone])
    assert removed_at is not None and "404" in reason
    shown = cli(ws, "show", gone, "--json")
    assert shown.exit_code == 0 and f"warning: {gone} is removed from the registry" in shown.stderr
    exported = cli(ws, "export", "--out", "-")
    assert gone not in exported.stdout and kept in exported.stdout
    assert f"left out 1 removed from the registry ({gone})" in exported.stderr
    matched = cli(ws, "match", "--patient", "examples/patient.json", "--all", "--format", "json")
    assert gone not in matched.stdout and f"left out 1 removed from the registry ({gone})" in matched.stderr
    folder = cli(ws, "match", "--patient", "examples/patient.json", "--records", str(ws / "structured"), "--format", "json")
    assert gone not in folder.stdout and kept in folder.stdout and f"left out 1 removed from the registry ({gone})" in folder.stderr
    unknown = CliRunner().invoke(main, ["--workspace", str(ws), "fetch", "--rate", "60000", "--nct", "NCT00000000"], env=env)
    assert unknown.exit_code == 1 and "failed: NCT00000000: not found (404)" in unknown.stderr  # never stored: a failure

    ctgov.studies[gone] = document  # back in the registry, unchanged: current again
    again = CliRunner().invoke(main, ["--workspace", str(ws), "fetch", "--rate", "60000", "--nct", gone], env=env)
    assert again.exit_code == 0 and "1 unchanged" in again.stderr
    assert in_db(ws, "SELECT removed_at FROM trials WHERE nct_id = ?", [gone]) == [(None,)]
    assert "removed" not in cli(ws, "show", gone).stderr and gone in cli(ws, "export", "--out", "-").stdout


def test_a_whole_search_asks_by_id_for_the_studies_it_no_longer_finds_and_marks_those_gone_removed(ctgov, ws):
    assert sync_cli(ctgov, ws, "--phase", "PHASE1").exit_code == 0
    gone, moved = PHASE1_IDS[0], PHASE1_IDS[1]
    ctgov.studies.pop(gone)  # removed from the registry
    study = json.loads(ctgov.studies[moved])  # edited so that it no longer matches the search
    study["protocolSection"]["designModule"]["phases"] = ["PHASE4"]
    ctgov.studies[moved] = json.dumps(study).encode()
    ctgov.requests.clear()

    incremental = sync_cli(ctgov, ws, "--phase", "PHASE1", "--json")  # sees only changes: it cannot notice
    assert json.loads(incremental.stdout)["removed"] == [] and ctgov.requests_to(f"/studies/{gone}") == []

    result = sync_cli(ctgov, ws, "--phase", "PHASE1", "--full", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert search_filters(ctgov)[-1] is None  # the whole search again
    assert report["left_search"] == sorted([gone, moved]) and report["removed"] == [gone]
    assert len(ctgov.requests_to(f"/studies/{gone}")) == 1 and len(ctgov.requests_to(f"/studies/{moved}")) == 1
    assert report["changed"] == 1  # the one that left the search, stored as it is now
    assert in_db(ws, "SELECT nct_id FROM trials WHERE removed_at IS NOT NULL") == [(gone,)]
    assert f"warning: {gone} is removed from the registry" in cli(ws, "show", gone).stderr
    assert gone not in cli(ws, "export", "--out", "-").stdout
    workspace = Workspace(ws)
    try:  # neither is the search's any more: the next whole search does not ask for them again
        assert workspace.members(mark_name(PHASE1)) == set(PHASE1_IDS) - {gone, moved}
    finally:
        workspace.close()


# -- a sync cut short, and resumed --------------------------------------------------------------


def started(server: CtgovServer) -> CtgovServer:
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.mark.parametrize("how", ["errors", "dies"])
def test_a_sync_cut_short_after_page_one_resumes_from_its_mark_with_no_loss_and_no_duplicate(ctgov, ws, how):
    query = Search(phases=("PHASE2",))
    order = sorted(PHASE2_IDS, key=lambda i: (last_update(i) or "", i))  # the order the registry sends them in
    page_one = order[:4]
    workspace = Workspace(ws)
    if how == "errors":
        ctgov.fail_next(None, "500", "500", "500")  # page 1, then page 2 fails every attempt
    else:
        ctgov.fail_next(None, "die")  # page 1, then the registry goes away
    with pytest.raises(UpstreamError, match="search page 2|cannot be reached"):  # exit code 3
        asyncio.run(sync_search(workspace, query, settings(ctgov), page_size=4))
    workspace.close()

    assert [row[0] for row in in_db(ws, "SELECT nct_id FROM trials ORDER BY nct_id")] == sorted(page_one)
    mark = mark_of(ws, query)
    assert mark["last_update"] == max(last_update(i) for i in page_one) and mark["pending_since"]
    # meanwhile the registry changes a study already stored and one not fetched yet
    server = ctgov if how == "errors" else started(CtgovServer())
    server.update(page_one[0], "2026-11-29")
    server.update(order[-1], "2026-11-30", "WITHDRAWN")
    server.requests.clear()

    result = sync_cli(ctgov, ws, "--phase", "PHASE2", "--page-size", "4", "--json", url=server.url)

    assert result.exit_code == 0, result.output
    assert search_filters(server) == [f"AREA[LastUpdatePostDate]RANGE[{mark['last_update']},MAX]"]
    report = json.loads(result.stdout)
    assert report["new"] == len(PHASE2_IDS) - len(page_one)  # every study not stored before, each once
    assert report["changed"] == 1 and report["withdrawn"] == [order[-1]]
    rows = in_db(ws, "SELECT nct_id, last_update::VARCHAR FROM trials ORDER BY nct_id")
    assert [nct_id for nct_id, _ in rows] == PHASE2_IDS  # all of them, one row each
    assert dict(rows)[page_one[0]] == "2026-11-29" and dict(rows)[order[-1]] == "2026-11-30"
    # the trials the cut-short sync stored are extracted by the one that resumed it
    assert structured(ws) == PHASE2_IDS and report["extracted"] == len(PHASE2_IDS)
    assert in_db(ws, "SELECT count(*), count(DISTINCT nct_id) FROM extractions") == [(len(PHASE2_IDS), len(PHASE2_IDS))]
    assert mark_of(ws, query) == {"last_update": "2026-11-30", "pending_since": None}
    if server is not ctgov:
        server.shutdown()
        server.server_close()


def test_a_registry_that_does_not_sort_holds_the_mark_at_the_start_until_the_search_is_done(ctgov, ws):
    ctgov.ignore_sort = True  # id order, whatever sort asks
    ctgov.fail_next(None, None, "500", "500", "500")
    workspace = Workspace(ws)
    with pytest.raises(UpstreamError):
        asyncio.run(sync_search(workspace, Search(), settings(ctgov), page_size=10))
    workspace.close()
    assert len(in_db(ws, "SELECT nct_id FROM trials")) == 20
    assert mark_of(ws, Search())["last_update"] is None  # a later page may hold an older change: start again

    done = Workspace(ws)
    try:
        summary = asyncio.run(sync_search(done, Search(), settings(ctgov), page_size=10)).summary
        assert (summary.new, summary.unchanged) == (len(ALL_IDS) - 20, 20)  # the whole search again, nothing lost
        assert done.mark(mark_name(Search()))["last_update"] == max(filter(None, map(last_update, ALL_IDS)))
    finally:
        done.close()


def test_a_study_that_cannot_be_stored_holds_the_mark_before_its_page(ctgov, ws):
    order = sorted(PHASE1_IDS, key=lambda i: (last_update(i) or "", i))
    bad = order[4]  # on page 2 of 3
    study = json.loads(ctgov.studies[bad])
    study["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] = 12345  # a field of the wrong type
    ctgov.studies[bad] = json.dumps(study).encode()

    result = sync_cli(ctgov, ws, "--phase", "PHASE1", "--page-size", "3", "--json")

    assert result.exit_code == 1 and f"failed: search page 2 ({bad})" in result.stderr
    report = json.loads(result.stdout)
    assert report["failed"] == 1 and "could not be stored" in report["mark_held_back"]
    assert report["mark"] == max(last_update(i) for i in order[:3])  # the next sync asks for page 2's studies again
    ctgov.requests.clear()
    assert sync_cli(ctgov, ws, "--phase", "PHASE1").exit_code == 1
    assert search_filters(ctgov) == [f"AREA[LastUpdatePostDate]RANGE[{report['mark']},MAX]"]


# -- the command's errors ----------------------------------------------------------------------


def test_sync_exits_3_in_one_line_when_the_registry_cannot_be_reached_and_keeps_the_mark(ctgov, ws):
    assert sync_cli(ctgov, ws, "--phase", "PHASE1").exit_code == 0
    mark = mark_of(ws, PHASE1)
    ctgov.refuse_connections()

    result = sync_cli(ctgov, ws, "--phase", "PHASE1")

    assert result.exit_code == 3 and result.stdout == ""
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "cannot be reached" in line and "Traceback" not in result.stderr
    assert mark_of(ws, PHASE1) == mark


@pytest.mark.parametrize("args, message", [([], "name the search"), (["--phase", "PHASE9"], "unknown phase"),
                                           (["--status", "OPEN"], "refused the search")])  # fmt: skip
def test_sync_exits_2_on_bad_input(ctgov, ws, args, message):
    result = sync_cli(ctgov, ws, *args)
    assert result.exit_code == 2 and message in result.stderr


def test_a_sync_killed_mid_way_resumes_with_no_loss_and_no_duplicate(ctgov, ws):
    """A real `eligex sync` process, killed (SIGKILL) while page 2 hangs; the next sync does the rest."""
    ctgov.stall_seconds = 20
    ctgov.fail_next(None, "stall")  # page 1, then page 2 never comes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ELIGEX_"))}
    env |= {"ELIGEX_CTGOV_URL": ctgov.url, "ELIGEX_WORKSPACE": str(ws)}
    command = [str(Path(sys.executable).with_name("eligex")), "sync", "--phase", "PHASE2", "--page-size", "4",
               "--rate", "60000", "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while len(list((ws / "raw").rglob("NCT*.json"))) < 4:  # page 1's files: written once its rows are committed
        assert time.monotonic() < deadline and process.poll() is None, "page 1 was never stored"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL
    mark = mark_of(ws, Search(phases=("PHASE2",)))
    assert mark["last_update"] and mark["pending_since"] and structured(ws) == []

    result = sync_cli(ctgov, ws, "--phase", "PHASE2", "--page-size", "4", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["since"] == mark["last_update"] and report["new"] == len(PHASE2_IDS) - 4
    assert [row[0] for row in in_db(ws, "SELECT nct_id FROM trials ORDER BY nct_id")] == PHASE2_IDS
    assert structured(ws) == PHASE2_IDS
    assert in_db(ws, "SELECT count(*), count(DISTINCT nct_id) FROM extractions") == [(len(PHASE2_IDS), len(PHASE2_IDS))]


def test_a_workspace_made_before_the_removed_columns_migrates_keeping_its_trials(ctgov, ws):
    """A database at the schema before migration 8 (trials without removed_at), with a trial stored in it."""
    assert sync_cli(ctgov, ws, "--phase", "PHASE1").exit_code == 0
    row = in_db(ws, "SELECT * EXCLUDE (removed_at, removed_reason) FROM trials WHERE nct_id = ?", [PHASE1_IDS[0]])[0]
    old = ws.parent / "old"
    old.mkdir()
    db = duckdb.connect(str(old / "eligex.duckdb"))
    db.execute("CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
    for version, sql in enumerate(MIGRATIONS[:7], 1):
        db.execute(sql)
        db.execute("INSERT INTO migrations VALUES (?, now())", [version])
    db.execute(f"INSERT INTO trials VALUES ({', '.join('?' * len(row))})", list(row))
    db.close()

    assert in_db(old, "SELECT nct_id, removed_at FROM trials") == [(PHASE1_IDS[0], None)]
    assert in_db(old, "SELECT max(version) FROM migrations") == [(len(MIGRATIONS),)]
    result = sync_cli(ctgov, old, "--phase", "PHASE1", "--json")  # stores into the migrated table
    assert result.exit_code == 0 and json.loads(result.stdout)["new"] == len(PHASE1_IDS) - 1
