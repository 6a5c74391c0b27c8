"""`eligex fetch` against a real local HTTP server replaying real API v2 records (tests/ctgov_server.py)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date, datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from click.testing import CliRunner
from ctgov_server import STUDIES_DIR, ctgov  # noqa: F401 (ctgov is a fixture)

from cli import main
from extract.errors import InputError, UpstreamError, UpstreamUnreachable, retry_after
from extract.fetch import Search, Settings, fetch_ids, fetch_search
from extract.store import Workspace

ALL_IDS = sorted(path.stem for path in STUDIES_DIR.glob("NCT*.json"))
SOME_IDS = ["NCT02210780", "NCT05816382", "NCT06388018"]
# High rate and short backoff so that faults cost milliseconds, not seconds. The timeout is long enough
# for a loaded machine (a timeout that fires by accident adds a request); timeout tests set their own.
FAST = {"rate": 60_000, "timeout": 3, "backoff": 0.01, "attempts": 3}


def protocol(nct_id: str) -> dict:
    return json.loads((STUDIES_DIR / f"{nct_id}.json").read_text())["protocolSection"]


# A search finding few studies (9), for tests where storing all 64 is not the point.
PHASE1 = Search(phases=("PHASE1",))
PHASE1_IDS = [i for i in ALL_IDS if "PHASE1" in (protocol(i).get("designModule") or {}).get("phases", [])]


def settings(server, **overrides) -> Settings:
    return Settings(base_url=server.url, **(FAST | overrides))


# A bound on every call, so that a fetch that would never end fails its test instead of hanging it.
BOUND_SECONDS = 20


def bounded(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, BOUND_SECONDS))


def search(workspace, server, query=Search(), overrides=None, **options):
    return bounded(fetch_search(workspace, query, settings(server, **(overrides or {})), **options))


def by_id(workspace, server, ids, on_progress=lambda done, total: None, **overrides):
    return bounded(fetch_ids(workspace, ids, settings(server, **overrides), on_progress))


def raw_files(workspace: Workspace) -> dict[str, int]:
    """Raw file name -> modification time (ns)."""
    return {path.name: path.stat().st_mtime_ns for path in workspace.raw_dir.rglob("*") if path.is_file()}


def stored(workspace: Workspace) -> list[str]:
    """Ids in the database (one row each: nct_id is the key)."""
    return workspace.trial_ids()


def search_params_without_token(server) -> list[dict]:
    return [{k: v for k, v in r.params.items() if k != "pageToken"} for r in server.requests_to("/studies")]


@pytest.fixture
def workspace(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    yield workspace
    workspace.close()


# -- search and paging ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, page_size, pages, expected",
    # 9 PHASE1 studies on 3 pages: the registry names a fourth (empty) page, but totalCount says all came
    [(Search(), 10, 7, ALL_IDS), (PHASE1, 3, 3, PHASE1_IDS)],
)
def test_paging_stores_every_record_once_with_identical_parameters(workspace, ctgov, query, page_size, pages, expected):
    summary = search(workspace, ctgov, query, page_size=page_size)

    assert (summary.new, summary.changed, summary.unchanged, summary.failures) == (len(expected), 0, 0, [])
    assert stored(workspace) == expected
    assert sorted(raw_files(workspace)) == [f"{i}.json" for i in expected]
    requests = ctgov.requests_to("/studies")
    assert len(requests) == pages
    assert "pageToken" not in requests[0].params and all("pageToken" in r.params for r in requests[1:])
    first, *rest = search_params_without_token(ctgov)
    assert first["pageSize"] == str(page_size) and all(params == first for params in rest)


def test_phase_status_and_date_go_to_the_api_filters(workspace, ctgov):
    query = Search(statuses=("RECRUITING",), phases=("PHASE2", "PHASE3"), updated_since=date(2023, 6, 1))
    summary = search(workspace, ctgov, query, page_size=3)

    params = search_params_without_token(ctgov)[0]
    assert params["filter.advanced"] == "AREA[Phase](PHASE2 OR PHASE3) AND AREA[LastUpdatePostDate]RANGE[2023-06-01,MAX]"
    assert params["filter.overallStatus"] == "RECRUITING"
    assert "filter.phase" not in params
    expected = []
    for nct_id in ALL_IDS:
        status = protocol(nct_id).get("statusModule") or {}
        if (
            status.get("overallStatus") == "RECRUITING"
            and {"PHASE2", "PHASE3"} & set((protocol(nct_id).get("designModule") or {}).get("phases") or [])
            and status["lastUpdatePostDateStruct"]["date"] >= "2023-06-01"
        ):
            expected.append(nct_id)
    assert len(expected) > 3  # more than one page
    assert stored(workspace) == expected and summary.new == len(expected)


def test_limit_stops_the_search(workspace, ctgov):
    summary = search(workspace, ctgov, limit=7, page_size=5)

    assert summary.new == 7 and len(stored(workspace)) == 7
    assert [r.params["pageSize"] for r in ctgov.requests_to("/studies")] == ["5", "5"]


def test_a_refused_search_is_an_input_error(workspace, ctgov):
    with pytest.raises(InputError, match="unknown value"):
        search(workspace, ctgov, Search(statuses=("OPEN",)))


def test_a_search_page_failing_after_retries_is_an_upstream_error_after_storing_what_came_before(workspace, ctgov):
    ctgov.fail_next(None, "500", "500", "500")
    with pytest.raises(UpstreamError, match=r"search page 2: HTTP 500 after 3 attempts \(stored before it: 4 new"):
        search(workspace, ctgov, PHASE1, page_size=4)
    assert stored(workspace) == PHASE1_IDS[:4]


def test_a_registry_repeating_a_page_token_stops_the_search_instead_of_looping(workspace, ctgov):
    ctgov.fail_next(None, "same-token")
    with pytest.raises(UpstreamError, match="repeated a page token"):
        search(workspace, ctgov, PHASE1, page_size=4)
    assert stored(workspace) == PHASE1_IDS[:8]


def test_endless_empty_pages_end_at_the_total_count_even_with_a_limit_above_it(workspace, ctgov):
    ctgov.endless = True  # every page names a next one, each with a fresh token
    summary = search(workspace, ctgov, PHASE1, limit=50, page_size=4)

    assert (summary.new, summary.failures) == (len(PHASE1_IDS), [])
    assert len(ctgov.requests_to("/studies")) == 3  # 4 + 4 + 1 studies, and not one request more


def test_without_a_total_count_the_first_page_bringing_nothing_new_ends_the_search(workspace, ctgov):
    ctgov.endless, ctgov.send_total = True, False
    summary = search(workspace, ctgov, PHASE1, page_size=4)

    assert (summary.new, summary.failures) == (len(PHASE1_IDS), [])
    assert len(ctgov.requests_to("/studies")) == 4  # the fourth page was empty: the end


def test_a_total_count_never_reached_is_an_upstream_error_keeping_what_came(workspace, ctgov):
    ctgov.endless, ctgov.claimed_total = True, 1000
    with pytest.raises(UpstreamError, match=r"search page 4 brought no new study after 9 of 1000 \(stored: 9 new"):
        search(workspace, ctgov, PHASE1, page_size=4)
    assert stored(workspace) == PHASE1_IDS and len(ctgov.requests_to("/studies")) == 4


def test_a_page_repeating_studies_already_stored_ends_the_search(workspace, ctgov):
    ctgov.endless = True
    ctgov.fail_next(None, "stale-page", "stale-page", "stale-page")
    with pytest.raises(UpstreamError, match="search page 2 brought no new study after 4 of 9"):
        search(workspace, ctgov, PHASE1, page_size=4)
    assert stored(workspace) == PHASE1_IDS[:4] and len(ctgov.requests_to("/studies")) == 2


def test_the_limit_bounds_requests_whatever_the_registry_sends(workspace, ctgov):
    ctgov.endless, ctgov.send_total = True, False
    ctgov.fail_next(None, *["stale-page"] * 100)
    with pytest.raises(UpstreamError, match="no new study"):
        search(workspace, ctgov, PHASE1, limit=50, page_size=4)
    assert len(ctgov.requests_to("/studies")) == 2


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["429", "500", "stall", "truncated", "half-json"])
def test_each_fault_ends_in_success_when_searching(workspace, ctgov, fault):
    ctgov.fail_next(None, fault)  # the second page meets the fault, then succeeds
    summary = search(workspace, ctgov, PHASE1, page_size=4)

    assert (summary.new, summary.failures) == (len(PHASE1_IDS), [])
    assert stored(workspace) == PHASE1_IDS and len(raw_files(workspace)) == len(PHASE1_IDS)
    requests = ctgov.requests_to("/studies")
    assert len(requests) == 3 + 1
    assert requests[1].params == requests[2].params  # the same page asked for again


@pytest.mark.parametrize("fault", ["429", "500", "stall", "truncated", "half-json"])
def test_each_fault_ends_in_success_when_fetching_ids(workspace, ctgov, fault):
    ctgov.fail_next(fault)
    summary = by_id(workspace, ctgov, SOME_IDS)

    assert (summary.new, summary.failures) == (3, [])
    assert stored(workspace) == SOME_IDS and len(raw_files(workspace)) == 3
    assert [r.path.rsplit("/", 1)[1] for r in ctgov.requests] == SOME_IDS[:1] + SOME_IDS
    if fault == "429":  # Retry-After: 1 was honoured
        assert ctgov.requests[1].at - ctgov.requests[0].at >= 0.9


@pytest.mark.parametrize("how", ["by id", "search"])
def test_a_server_dripping_bytes_meets_the_deadline_of_each_request(workspace, ctgov, how):
    # One byte every 0.1 s keeps every read under the 0.5 s timeout; the whole answer would take minutes.
    ctgov.fail_next(*["drip"] * 3)
    started = time.monotonic()
    if how == "by id":
        summary = by_id(workspace, ctgov, SOME_IDS[:2], timeout=0.5)
        assert summary.failures == [f"{SOME_IDS[0]}: no complete answer within 0.5 s after 3 attempts"]
        assert stored(workspace) == SOME_IDS[1:2]
    else:
        with pytest.raises(UpstreamError, match="search page 1: no complete answer within 0.5 s after 3 attempts"):
            search(workspace, ctgov, PHASE1, overrides={"timeout": 0.5}, page_size=4)
    assert time.monotonic() - started < 5  # three attempts of 0.5 s, and short waits


def test_retry_after_is_capped(workspace, ctgov):
    ctgov.retry_after = "3600"
    ctgov.fail_next("429")
    by_id(workspace, ctgov, SOME_IDS[1:2], max_wait=0.2)
    first, second = ctgov.requests
    assert 0.15 <= second.at - first.at < 5


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert retry_after("7") == 7
    assert retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert retry_after("soon") is None and retry_after(None) is None


def test_a_study_failing_after_retries_is_a_failure_and_the_rest_goes_on(workspace, ctgov):
    ctgov.fail_next("500", "500", "500")
    summary = by_id(workspace, ctgov, SOME_IDS)

    assert summary.failures == [f"{SOME_IDS[0]}: HTTP 500 after 3 attempts"]
    assert stored(workspace) == SOME_IDS[1:]


def test_rate_limiter_spaces_requests(workspace, ctgov):
    by_id(workspace, ctgov, SOME_IDS + ["NCT05813925"], rate=300)  # one request every 0.2 s

    # Arrival times at the server: generous bounds, as network delay shifts each a little.
    times = [r.at for r in ctgov.requests]
    assert all(later - earlier >= 0.1 for earlier, later in zip(times, times[1:]))
    assert times[-1] - times[0] >= 0.45


# -- ids -----------------------------------------------------------------------------------------


def test_unknown_id_is_reported_and_the_rest_goes_on(workspace, ctgov):
    summary = by_id(workspace, ctgov, [SOME_IDS[0], "NCT00000000", SOME_IDS[1]])

    assert summary.failures == ["NCT00000000: not found (404)"]
    assert summary.new == 2 and stored(workspace) == SOME_IDS[:2]


def test_a_study_other_than_the_one_asked_for_is_that_ids_failure_and_is_not_stored(workspace, ctgov):
    ctgov.fail_next("other-study")
    summary = by_id(workspace, ctgov, SOME_IDS[:2])

    [failure] = summary.failures
    assert failure.startswith(f"{SOME_IDS[0]}: the registry answered with another study (NCT")
    assert stored(workspace) == SOME_IDS[1:2] and sorted(raw_files(workspace)) == [f"{SOME_IDS[1]}.json"]


def test_an_old_id_redirects_to_the_current_record(workspace, ctgov):
    ctgov.aliases["NCT00000001"] = "NCT05816382"
    summary = by_id(workspace, ctgov, ["NCT00000001"])

    assert (summary.new, summary.failures) == (1, [])
    assert stored(workspace) == ["NCT05816382"]


def test_requests_carry_the_eligex_user_agent(workspace, ctgov):
    by_id(workspace, ctgov, SOME_IDS[:1])
    assert ctgov.requests[0].headers["User-Agent"] == "eligex/0.1.0 (+https://github.com/eligex)"


def test_a_second_fetch_finds_everything_unchanged_and_rewrites_nothing(workspace, ctgov):
    search(workspace, ctgov, PHASE1, page_size=4)
    files = raw_files(workspace)
    rows = workspace.db.execute("SELECT nct_id, stored_at::VARCHAR FROM trials ORDER BY nct_id").fetchall()

    again = search(workspace, ctgov, PHASE1, page_size=4)
    by_ids = by_id(workspace, ctgov, PHASE1_IDS[:3])

    assert (again.new, again.changed, again.unchanged, again.failures) == (0, 0, len(PHASE1_IDS), [])
    assert (by_ids.new, by_ids.unchanged) == (0, 3)
    assert raw_files(workspace) == files
    assert workspace.db.execute("SELECT nct_id, stored_at::VARCHAR FROM trials ORDER BY nct_id").fetchall() == rows


# -- an upstream that is not there --------------------------------------------------------------


def test_a_registry_refusing_connections_stops_the_fetch_after_a_few_failures(workspace, ctgov):
    ids = ALL_IDS[:40]

    def refuse_after_the_first(done, total):
        if done == 1:
            ctgov.refuse_connections()

    started = time.monotonic()
    with pytest.raises(UpstreamUnreachable, match=r"cannot be reached .*3 connection failures in a row.*\(stored before it: 1 new"):
        by_id(workspace, ctgov, ids, on_progress=refuse_after_the_first, attempts=5)
    assert time.monotonic() - started < 3  # not 39 ids times 5 attempts
    assert stored(workspace) == ids[:1]


def test_a_search_at_an_address_where_nothing_listens_stops_at_once(workspace, ctgov):
    ctgov.refuse_connections()
    with pytest.raises(UpstreamUnreachable, match="cannot be reached"):
        search(workspace, ctgov, PHASE1, overrides={"attempts": 10})


@pytest.mark.parametrize("url", ["localhost:8000/api/v2", "ftp://example.org/api", "http://", "not a url"])
def test_a_malformed_registry_url_is_bad_input_before_any_request(url):
    with pytest.raises(InputError, match="ELIGEX_CTGOV_URL"):
        Settings(base_url=url)


# -- the stand-in refuses what the real API refuses ------------------------------------------------


def test_the_stand_in_refuses_unknown_parameters_and_a_token_with_changed_parameters(ctgov):
    with httpx.Client(base_url=ctgov.url) as client:
        assert client.get("/studies", params={"filter.phase": "PHASE2"}).status_code == 400
        token = client.get("/studies", params={"pageSize": 5}).json()["nextPageToken"]
        refused = client.get("/studies", params={"pageSize": 6, "pageToken": token})
        assert refused.status_code == 400 and refused.headers["content-type"] == "text/plain"
        assert client.get("/studies", params={"pageSize": 5, "pageToken": token}).status_code == 200
        missing = client.get("/studies/NCT00000000")
        assert (missing.status_code, missing.text) == (404, "Study not found")


# -- the command ---------------------------------------------------------------------------------


def run_cli(ctgov, tmp_path, *args):
    env = {"ELIGEX_CTGOV_URL": ctgov.url}
    return CliRunner().invoke(main, ["--workspace", str(tmp_path / "ws"), "fetch", "--rate", "60000", *args], env=env)


def test_cli_fetch_by_id_prints_the_summary(ctgov, tmp_path):
    result = run_cli(ctgov, tmp_path, "--nct", f"{SOME_IDS[0]},{SOME_IDS[1]}", "--nct", SOME_IDS[2])
    assert result.exit_code == 0, result.output
    assert "3 new, 0 changed, 0 unchanged, 0 failed" in result.stderr

    again = run_cli(ctgov, tmp_path, "--nct", ",".join(SOME_IDS))
    assert again.exit_code == 0 and "0 new, 0 changed, 3 unchanged, 0 failed" in again.stderr


def test_cli_fetch_exits_1_naming_an_unknown_id(ctgov, tmp_path):
    result = run_cli(ctgov, tmp_path, "--nct", f"{SOME_IDS[0]},NCT00000000")
    assert result.exit_code == 1
    assert "1 new, 0 changed, 0 unchanged, 1 failed" in result.stderr
    assert "failed: NCT00000000: not found (404)" in result.stderr


def test_cli_fetch_searches_with_phases_and_limit(ctgov, tmp_path):
    result = run_cli(ctgov, tmp_path, "--phase", "phase2,phase3", "--status", "recruiting", "--limit", "4", "--page-size", "3")
    assert result.exit_code == 0, result.output
    assert "4 new, 0 changed, 0 unchanged, 0 failed" in result.stderr
    assert ctgov.requests[0].params["filter.advanced"] == "AREA[Phase](PHASE2 OR PHASE3)"


def test_cli_fetch_exits_3_in_one_line_when_the_registry_cannot_be_reached(ctgov, tmp_path):
    ctgov.refuse_connections()
    result = run_cli(ctgov, tmp_path, "--nct", ",".join(ALL_IDS[:20]))
    assert result.exit_code == 3
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "cannot be reached" in line and "Traceback" not in result.stderr


def test_cli_fetch_exits_2_on_a_malformed_registry_url(tmp_path):
    result = CliRunner().invoke(main, ["--workspace", str(tmp_path / "ws"), "fetch", "--nct", SOME_IDS[0]],
                                env={"ELIGEX_CTGOV_URL": "clinicaltrials.gov/api/v2"})  # fmt: skip
    assert result.exit_code == 2 and "ELIGEX_CTGOV_URL" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nct", "NCT123"], "not an NCT id"),
        ([], "name studies"),
        (["--nct", SOME_IDS[0], "--cond", "cancer"], "not both"),
        (["--phase", "PHASE9"], "unknown phase"),
        (["--status", "OPEN"], "refused the search"),
    ],
)
def test_cli_fetch_exits_2_on_bad_input(ctgov, tmp_path, args, message):
    result = run_cli(ctgov, tmp_path, *args)
    assert result.exit_code == 2 and message in result.stderr
