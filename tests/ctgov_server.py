"""A local stand-in for the ClinicalTrials.gov API v2 that replays the real records in ../shared/data/ctgov-v2.

A real HTTP server on 127.0.0.1 (random port, its own thread) answering as the v2 API does:
GET /api/v2/studies/{nctId} (404 `Study not found` as text, 301 from an old alias id), and
GET /api/v2/studies with pageSize/pageToken paging (a 400 text on an unknown parameter, or on a
pageToken sent with other parameters than the page that issued it). It records every request,
and a test can queue faults that the next requests meet, in order (None: answer normally):

  "429"        429 with Retry-After (`retry_after`, default 1 second)
  "500"        500 with a text body
  "stall"      nothing sent for `stall_seconds`, then the connection closes
  "truncated"  the real response, but the body stops halfway short of its Content-Length
  "half-json"  the real response with a consistent Content-Length, but half a JSON document
  "same-token" the real page, but naming the token it was asked with as the next one (a loop)
  "drip"       the real response, its body one byte every `drip_seconds` (each read is quick, the whole never)
  "other-study" another study's record in answer to GET /studies/{nctId}
  "stale-page" the page before the one asked for again, under a fresh next token (nothing new)
  "die"        no answer, and the server stops listening: from then on every connection is refused

`update(nct_id, last_update, status)` changes a study as the registry does when its record is
edited (a new LastUpdatePostDate, a new overallStatus: WITHDRAWN); deleting it from `studies`
removes it (404 by id, gone from searches). `ignore_sort = True` answers in id order whatever
`sort` asks.

Three ways to lie for good: `endless` names a next page after every page, the empty ones past the
end included, each with a fresh token (as the live registry has been seen to); `claimed_total`
replaces the true totalCount, `send_total = False` leaves it out; `refuse_connections()` stops listening, so
every connection is refused, as at an address where nothing runs.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import SHARED_DATA

STUDIES_DIR = SHARED_DATA / "ctgov-v2"
SEARCH_PARAMETERS = {
    "query.cond", "query.term", "query.intr", "filter.overallStatus", "filter.advanced",
    "pageSize", "pageToken", "countTotal", "format", "sort",
}  # fmt: skip
SORTS = {"LastUpdatePostDate:asc"}  # the one order this stand-in knows (oldest change first); by default, id order
STATUSES = {
    "ACTIVE_NOT_RECRUITING", "COMPLETED", "ENROLLING_BY_INVITATION", "NOT_YET_RECRUITING", "RECRUITING", "SUSPENDED",
    "TERMINATED", "WITHDRAWN", "AVAILABLE", "NO_LONGER_AVAILABLE", "TEMPORARILY_NOT_AVAILABLE",
    "APPROVED_FOR_MARKETING", "WITHHELD", "UNKNOWN",
}  # fmt: skip
PHASE_EXPRESSION = re.compile(r"AREA\[Phase\]\(([A-Z0-9_ ]+)\)")
UPDATED_EXPRESSION = re.compile(r"AREA\[LastUpdatePostDate\]RANGE\[(\d{4}-\d{2}-\d{2}),MAX\]")


@dataclass(frozen=True)
class Request:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    location: str | None = None


class CtgovServer(ThreadingHTTPServer):
    daemon_threads = True  # a stalled answer must not hold up the end of a test

    def __init__(self, studies_dir: Path = STUDIES_DIR):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.studies = {path.stem: path.read_bytes() for path in sorted(studies_dir.glob("NCT*.json"))}
        self.aliases: dict[str, str] = {}  # old id -> current id
        self.requests: list[Request] = []
        self.faults: deque[str | None] = deque()
        self.retry_after = "1"
        self.stall_seconds = 1.5
        self.drip_seconds = 0.1
        self.endless = False
        self.send_total = True
        self.claimed_total: int | None = None  # a totalCount to send instead of the true one
        self.ignore_sort = False
        self._closing = threading.Event()
        self._tokens: dict[str, tuple[tuple, int]] = {}  # pageToken -> (the query it belongs to, offset)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v2"

    def fail_next(self, *faults: str | None) -> None:
        self.faults.extend(faults)

    def refuse_connections(self) -> None:
        """Stop listening: from now on every connection to `url` is refused."""
        self._closing.set()
        self.shutdown()
        self.socket.close()

    def update(self, nct_id: str, last_update: str, status: str | None = None) -> None:
        """Edit a study as the registry does: a new last-update date, and a new overall status if given."""
        study = json.loads(self.studies[nct_id])
        module = study["protocolSection"].setdefault("statusModule", {})
        module["lastUpdatePostDateStruct"] = {"date": last_update, "type": "ACTUAL"}
        if status is not None:
            module["overallStatus"] = status
        self.studies[nct_id] = json.dumps(study).encode()

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == f"/api/v2{path}"]

    def take(self, path: str, params: dict[str, str], headers: dict[str, str]) -> str | None:
        """Record a request and hand it the next fault, if any."""
        with self._lock:
            self.requests.append(Request(path, params, headers, time.monotonic()))
            return self.faults.popleft() if self.faults else None

    # -- the API -----------------------------------------------------------------------------------

    def answer(self, path: str, params: dict[str, str]) -> Response:
        if path == "/api/v2/studies":
            return self.search(params)
        match = re.fullmatch(r"/api/v2/studies/([^/]+)", path)
        if not match:
            return _text(404, "Not Found")
        nct_id = match.group(1)
        if not re.fullmatch(r"NCT\d{8}", nct_id):
            return _text(400, f"Invalid NCT number: {nct_id}")
        if nct_id in self.aliases:
            return Response(301, b"", location=f"/api/v2/studies/{self.aliases[nct_id]}")
        if nct_id not in self.studies:
            return _text(404, "Study not found")
        aliases = [old for old, new in self.aliases.items() if new == nct_id]
        if aliases:  # the live API lists the old ids a study was known by
            study = json.loads(self.studies[nct_id])
            study["protocolSection"]["identificationModule"]["nctIdAliases"] = aliases
            return Response(200, json.dumps(study).encode())
        return Response(200, self.studies[nct_id])

    def search(self, params: dict[str, str]) -> Response:
        stale = params.pop("_stale", None)  # the "stale-page" fault, not a parameter of the API
        unknown = sorted(set(params) - SEARCH_PARAMETERS)
        if unknown:
            return _text(400, f"Unknown parameter(s): {', '.join(unknown)}")
        token = params.pop("pageToken", None)
        query = tuple(sorted(params.items()))
        offset = 0
        if token is not None:
            if self._tokens.get(token, (None,))[0] != query:
                return _text(400, "pageToken does not match the query parameters it was issued for")
            offset = self._tokens[token][1]
        size = int(params.get("pageSize", "10"))
        if not 0 < size <= 1000:
            return _text(400, f"pageSize must be between 1 and 1000, not {size}")
        statuses = set(re.split(r"[,|]", params.get("filter.overallStatus", ""))) - {""}
        if statuses - STATUSES:
            return _text(400, f"filter.overallStatus: unknown value(s) {', '.join(sorted(statuses - STATUSES))}")
        found = self.matching(params, statuses)
        if found is None:
            return _text(400, f"unsupported filter.advanced: {params['filter.advanced']}")
        if params.get("sort") and params["sort"] not in SORTS:
            return _text(400, f"sort: unsupported value {params['sort']}")
        if params.get("sort") and not self.ignore_sort:  # a stable order: by date, then id (a study without one first)
            found.sort(key=lambda nct_id: (_last_update(self.studies[nct_id]), nct_id))
        shown = max(offset - size, 0) if stale else offset
        page: dict = {"studies": [json.loads(self.studies[i]) for i in found[shown : shown + size]]}
        if params.get("countTotal") == "true" and token is None and self.send_total:
            page["totalCount"] = len(found) if self.claimed_total is None else self.claimed_total
        # Like the live API, a page that ends exactly at the last study still names a next (empty) page.
        if offset + size <= len(found) or self.endless:
            page["nextPageToken"] = next_token = secrets.token_urlsafe(8)
            with self._lock:
                self._tokens[next_token] = (query, offset + size)
        return Response(200, json.dumps(page).encode())

    def matching(self, params: dict[str, str], statuses: set[str]) -> list[str] | None:
        """Ids of the studies the query finds, in id order; None for an expression this stand-in cannot read."""
        advanced = params.get("filter.advanced", "")
        phases = PHASE_EXPRESSION.search(advanced)
        updated = UPDATED_EXPRESSION.search(advanced)
        rest = UPDATED_EXPRESSION.sub("", PHASE_EXPRESSION.sub("", advanced)).replace(" AND ", "").strip()
        if rest:
            return None
        found = []
        for nct_id, raw in self.studies.items():
            protocol = json.loads(raw)["protocolSection"]
            status = protocol.get("statusModule") or {}
            interventions = (protocol.get("armsInterventionsModule") or {}).get("interventions") or []
            checks = [
                _contains(params.get("query.cond"), (protocol.get("conditionsModule") or {}).get("conditions")),
                _contains(params.get("query.term"), [raw.decode()]),
                _contains(params.get("query.intr"), [i.get("name", "") for i in interventions]),
                not statuses or status.get("overallStatus") in statuses,
                not phases or bool(set(phases.group(1).split(" OR ")) & set((protocol.get("designModule") or {}).get("phases") or [])),
                not updated or (status.get("lastUpdatePostDateStruct") or {}).get("date", "") >= updated.group(1),
            ]  # fmt: skip
            if all(checks):
                found.append(nct_id)
        return found


def _last_update(raw: bytes) -> str:
    status = json.loads(raw)["protocolSection"].get("statusModule") or {}
    return (status.get("lastUpdatePostDateStruct") or {}).get("date", "")


def _contains(wanted: str | None, texts: list[str] | None) -> bool:
    return not wanted or any(wanted.lower() in text.lower() for text in texts or [])


def _text(status: int, message: str) -> Response:
    return Response(status, message.encode(), "text/plain")


class _Handler(BaseHTTPRequestHandler):
    server: CtgovServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        fault = self.server.take(url.path, dict(params), dict(self.headers))
        if fault == "die":
            threading.Thread(target=self.server.refuse_connections, daemon=True).start()
            self.close_connection = True
            return
        if fault == "stall":
            time.sleep(self.server.stall_seconds)
            self.close_connection = True
            return
        if fault in ("429", "500"):
            headers = {"Retry-After": self.server.retry_after} if fault == "429" else {}
            return self._send(_text(int(fault), "Too Many Requests" if fault == "429" else "Internal Server Error"), headers)
        asked_with = params.get("pageToken")
        if fault == "stale-page":
            params["_stale"] = "1"
        if fault == "other-study":
            asked = url.path.rsplit("/", 1)[-1]
            other = next(nct_id for nct_id in self.server.studies if nct_id != asked)
            url = urlsplit(f"/api/v2/studies/{other}")
        response = self.server.answer(url.path, params)
        if fault == "half-json":
            response = Response(response.status, response.body[: len(response.body) // 2], response.content_type)
        if fault == "same-token":
            page = json.loads(response.body) | {"nextPageToken": asked_with}
            response = Response(response.status, json.dumps(page).encode(), response.content_type)
        self._send(response, {}, cut_short=fault == "truncated", drip=fault == "drip")

    def _send(self, response: Response, headers: dict[str, str], cut_short: bool = False, drip: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if response.location:
            self.send_header("Location", response.location)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        if drip:
            return self._drip(response.body)
        try:
            self.wfile.write(response.body[: len(response.body) // 2] if cut_short else response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a test's bound on a fetch that would never end)

    def _drip(self, body: bytes) -> None:
        """One byte at a time until the body is sent, the client hangs up or the server closes."""
        for index in range(len(body)):
            if self.server._closing.wait(self.server.drip_seconds):
                return
            try:
                self.wfile.write(body[index : index + 1])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def ctgov():
    """The stand-in API, serving until the test ends."""
    server = CtgovServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server._closing.set()
    server.shutdown()
    server.server_close()
