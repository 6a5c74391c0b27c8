"""`eligex fetch`: studies from the ClinicalTrials.gov API v2 into the workspace, politely.

Requests go one at a time through a rate limiter; 429, 5xx, timeouts, broken connections and
bodies cut short are tried again (honouring Retry-After, within a bound). Each attempt has a
deadline for the whole answer. A study that cannot be had, or that comes back under another id, is
a failure in the summary and the rest goes on; a search page that cannot be had ends the search
with an UpstreamError, keeping what was stored before it. A registry that cannot be reached at all
stops everything after a few connection failures in a row (UpstreamUnreachable).

Paging trusts nothing it is sent: it ends at --limit, at the registry's own totalCount, and at the
first page that brings no study it has not seen, whatever page tokens keep coming.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from importlib.metadata import version
from typing import Any, Callable

import asyncio
import json

import httpx
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from extract.errors import InputError, UpstreamError, UpstreamUnreachable, one_line, retry_after, retry_notice
from extract.importer import Summary, store
from extract.sources import Parsed, RecordError, checked, v2_study
from extract.store import Workspace
from extract.transport import Breaker, checked_url

DEFAULT_URL = "https://clinicaltrials.gov/api/v2"
MAX_PAGE_SIZE = 1000  # the API's own limit
PHASES = ("EARLY_PHASE1", "PHASE1", "PHASE2", "PHASE3", "PHASE4", "NA")
REMOVED_REASON = "the registry answered 404 (not found) for its id"

Progress = Callable[[int, int | None], None]  # (records done, records expected if known)


@dataclass(frozen=True)
class Settings:
    base_url: str = DEFAULT_URL
    rate: float = 50  # requests per minute; the registry asks for about 50
    timeout: float = 30  # seconds for a whole answer before the attempt is given up (and tried again)
    attempts: int = 5
    backoff: float = 1.0  # first wait between attempts, doubled each time
    max_wait: float = 60  # cap on any wait, a server's Retry-After included

    def __post_init__(self):
        checked_url(self.base_url, "the registry URL (ELIGEX_CTGOV_URL)")


@dataclass(frozen=True)
class Search:
    cond: str | None = None
    term: str | None = None
    intr: str | None = None
    statuses: tuple[str, ...] = ()
    phases: tuple[str, ...] = ()
    updated_since: date | None = None

    def __post_init__(self):
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown:
            raise InputError(f"unknown phase(s) {', '.join(unknown)}; expected some of {', '.join(PHASES)}")

    def params(self) -> dict[str, str]:
        """The API's query parameters. It has no phase or date filter: those are Essie expressions."""
        advanced = []
        if self.phases:
            advanced.append(f"AREA[Phase]({' OR '.join(self.phases)})")
        if self.updated_since:
            advanced.append(f"AREA[LastUpdatePostDate]RANGE[{self.updated_since.isoformat()},MAX]")
        params = {
            "query.cond": self.cond,
            "query.term": self.term,
            "query.intr": self.intr,
            "filter.overallStatus": ",".join(self.statuses),
            "filter.advanced": " AND ".join(advanced),
        }
        return {name: value for name, value in params.items() if value}

    def key(self) -> str:
        """The search's identity, whatever the spelling: words case- and space-folded (the registry's
        search ignores both), statuses and phases each once, sorted; the date left out. JSON."""
        words = {name: " ".join(value.split()).casefold() for name, value in
                 (("cond", self.cond), ("term", self.term), ("intr", self.intr)) if value and value.strip()}  # fmt: skip
        lists = {name: sorted(set(values)) for name, values in (("status", self.statuses), ("phase", self.phases)) if values}
        return json.dumps(words | lists, sort_keys=True, separators=(",", ":"))


def comma_list(values: tuple[str, ...] | list[str]) -> list[str]:
    """Repeated options and comma lists alike, upper-cased, each once, in order."""
    items = (item.strip().upper() for value in values for item in value.split(","))
    return list(dict.fromkeys(item for item in items if item))


class Transient(Exception):
    """A failure worth another try: 429, 5xx, or a body cut short."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class Rejected(Exception):
    """A 4xx answer (not 429) or another unexpected status: asking again would get the same."""

    def __init__(self, status: int, text: str):
        super().__init__(f"rejected ({status}): {one_line(text)}" if status != 404 else "not found (404)")
        self.status = status


class Registry:
    """The API v2 client: one request at a time, rate-limited, retried."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # One request per 60/rate seconds: spaced out, not the burst a bucket of `rate` would allow.
        self._limiter = AsyncLimiter(1, 60 / settings.rate)
        self._breaker = Breaker(f"the registry at {settings.base_url}")
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            headers={"User-Agent": f"eligex/{version('eligex')} (+https://github.com/eligex)", "Accept": "application/json"},
            timeout=settings.timeout,
            follow_redirects=True,  # old (alias) ids redirect to the current record
        )

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._client.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON document at `path`; Rejected on a 4xx, UpstreamError when every attempt failed."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.attempts),
            wait=self._wait,
            retry=retry_if_exception_type((Transient, httpx.TransportError)),
            before_sleep=retry_notice(f"GET {path}"),
            reraise=True,
        )
        try:
            return await retrying(self._get_once, path, params)
        except (Transient, httpx.TransportError) as error:
            raise UpstreamError(f"{_reason(error)} after {self.settings.attempts} attempts") from None
        except httpx.HTTPError as error:  # too many redirects, an undecodable body: asking again would not help
            raise UpstreamError(_reason(error)) from None

    async def _get_once(self, path: str, params: dict[str, Any] | None) -> Any:
        self._breaker.check()
        await self._limiter.acquire()
        try:
            async with asyncio.timeout(self.settings.timeout):  # httpx's timeout restarts with every byte
                response = await self._client.get(path, params=params)
        except TimeoutError:
            raise Transient(f"no complete answer within {self.settings.timeout:g} s") from None
        except httpx.TransportError as error:
            self._breaker.failed(error, _reason(error))
            raise
        self._breaker.answered()
        if response.status_code == 429 or response.status_code >= 500:
            raise Transient(f"HTTP {response.status_code}", retry_after(response.headers.get("Retry-After")))
        if response.status_code != 200:
            raise Rejected(response.status_code, response.text)
        try:
            return response.json()
        except ValueError:  # a body cut short that still looked complete to HTTP
            raise Transient("truncated or malformed JSON body") from None
        except RecursionError:  # asking again would get the same document
            raise UpstreamError("JSON nested too deeply") from None

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception()
        wait = getattr(error, "retry_after", None)
        if wait is None:
            wait = self.settings.backoff * 2 ** (state.attempt_number - 1)
        return min(wait, self.settings.max_wait)


def _reason(error: Exception) -> str:
    """One line: a Transient's own words, or an httpx error's kind and message (some have none)."""
    if isinstance(error, Transient) or not str(error):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


async def fetch_ids(
    workspace: Workspace, nct_ids: list[str], settings: Settings, on_progress: Progress = lambda done, total: None
) -> Summary:
    """Each study by id; one that is unknown, cannot be had or comes back as another study is a
    failure and the rest goes on. A stored study the registry answers 404 for is marked removed."""
    summary = Summary()
    async with Registry(settings) as registry:
        for done, nct_id in enumerate(nct_ids, 1):
            try:
                study = await registry.get(f"/studies/{nct_id}")
            except UpstreamUnreachable as error:
                raise UpstreamUnreachable(f"{error} (stored before it: {summary.line()})") from None
            except Rejected as error:
                if error.status == 404 and workspace.mark_removed(nct_id, REMOVED_REASON):
                    summary.removed.append(nct_id)  # news about a stored study, not a failure
                else:
                    summary.failures.append(f"{nct_id}: {error}")
            except UpstreamError as error:
                summary.failures.append(f"{nct_id}: {error}")
            else:
                answered = study_id(study)
                if answered is None or answered == nct_id or nct_id in _aliases(study):
                    store(workspace, _parsed(study), nct_id, summary)
                else:  # never store what was not asked for
                    summary.failures.append(f"{nct_id}: the registry answered with another study ({answered[:20]})")
            on_progress(done, len(nct_ids))
    return summary


async def fetch_search(
    workspace: Workspace,
    search: Search,
    settings: Settings,
    limit: int | None = None,
    page_size: int = 100,
    on_progress: Progress = lambda done, total: None,
    sort: str | None = None,
    on_page: Callable[[list[Any], int], None] | None = None,
) -> Summary:
    """Every study the search finds (up to `limit`), page by page; each page's studies are stored in
    one transaction, with what `on_page` (given them and how many of them failed) writes in it.
    `sort` is the API's order of the results (`LastUpdatePostDate:asc`), else its own."""
    summary = Summary()
    # The API refuses a pageToken unless every other parameter is the same as on the first page.
    params = search.params() | {"pageSize": min(page_size, limit or page_size, MAX_PAGE_SIZE), "countTotal": "true"}
    if sort:
        params["sort"] = sort
    done, reported, token, number = 0, None, None, 1
    seen_ids: set[str] = set()
    seen_tokens: set[str] = set()
    async with Registry(settings) as registry:
        while done < min(limit or float("inf"), reported if reported is not None else float("inf")):
            page = await _search_page(registry, params | ({"pageToken": token} if token else {}), number, summary)
            if isinstance(page.get("totalCount"), int):  # sent with the first page only
                reported = page["totalCount"]
            fresh = [study for study in page["studies"] if _first_sight(study, seen_ids)]
            if not fresh:
                if page["studies"] or (reported is not None and done < reported):
                    of = f" of {reported}" if reported is not None else ""
                    raise UpstreamError(f"search page {number} brought no new study after {done}{of} "
                                        f"(stored: {summary.line()})")  # fmt: skip
                break  # the empty page after the last study
            taken = fresh[: None if limit is None else limit - done]
            failed = len(summary.failures)
            with workspace.transaction():
                for study in taken:
                    store(workspace, _parsed(study), f"search page {number}", summary)
                    done += 1
                    on_progress(done, min(filter(None, (reported, limit)), default=None))
                if on_page is not None:
                    on_page(taken, len(summary.failures) - failed)
            token, number = page.get("nextPageToken"), number + 1
            if not token:
                break
            if token in seen_tokens:  # a server handing back a token it gave before would page forever
                raise UpstreamError(f"search page {number}: the registry repeated a page token (stored: {summary.line()})")
            seen_tokens.add(token)
    return summary


def study_id(study: Any) -> str | None:
    """The id a study says it has, read without trusting its shape."""
    try:
        nct_id = study["protocolSection"]["identificationModule"]["nctId"]
    except (KeyError, TypeError):
        return None
    return nct_id if isinstance(nct_id, str) else None


def _aliases(study: Any) -> list[str]:
    """The old ids the registry lists for a study (an old id redirects to its current record)."""
    aliases = (study["protocolSection"]["identificationModule"]).get("nctIdAliases")
    return aliases if isinstance(aliases, list) else []


def _first_sight(study: Any, seen: set[str]) -> bool:
    """Is this a study the search has not received yet? (One without an id counts as new: it is a
    failure of its own when stored.)"""
    nct_id = study_id(study)
    if nct_id is None:
        return True
    if nct_id in seen:
        return False
    seen.add(nct_id)
    return True


async def _search_page(registry: Registry, params: dict[str, Any], number: int, summary: Summary) -> dict:
    try:
        page = await registry.get("/studies", params)
    except UpstreamUnreachable as error:
        raise UpstreamUnreachable(f"{error} (stored before it: {summary.line()})") from None
    except Rejected as error:
        if error.status == 400:  # the search built from the options was refused: say why
            raise InputError(f"the registry refused the search: {error}") from None
        reason = str(error)
    except UpstreamError as error:
        reason = str(error)
    else:
        if isinstance(page, dict) and isinstance(page.get("studies"), list):
            return page
        reason = "not a page of studies"
    raise UpstreamError(f"search page {number}: {reason} (stored before it: {summary.line()})")


def _parsed(study: Any) -> Parsed:
    if not isinstance(study, dict) or "protocolSection" not in study:
        return RecordError("not an API v2 study (no protocolSection)")
    return checked(lambda: v2_study(study, datetime.now(timezone.utc)))
