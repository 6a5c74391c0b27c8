"""`eligex sync`: a search's studies kept current, fetching only those changed since its last sync.

A search's high-water mark is the latest LastUpdatePostDate among the studies it has stored, in
the `marks` table under `sync <the search's key>` (`Search.key`: the same search however spelt).
A sync sends it as the API's last-update filter (`AREA[LastUpdatePostDate]RANGE[mark,MAX]`, the
one `fetch --updated-since` sends), inclusive: the studies of the mark's own day come again, found
unchanged, so a change posted later on that day is not missed. No mark (the first sync): the
whole search.

The results are asked for in last-update order, and the mark advances in the transaction that
stores each page, to the latest date on it. A sync that stops (a dead registry, Ctrl-C, a kill)
therefore starts again from the last page it stored, losing nothing: every study after it is
updated on or after that day. Two cases hold the mark back instead: a page whose studies are
not in last-update order (a registry that did not sort) puts it back where this sync started
until the search is done, and a study that could not be stored stops it before its page (at the
latest day of the pages stored before it), so that the next sync asks for that study again.

The trials stored since an unfinished sync began are extracted by the next one (`pending_since`):
an extraction cut short is not lost either.

What is marked: a study whose record says `overallStatus` WITHDRAWN is stored as the registry
gives it and counted as withdrawn; a stored study the registry answers 404 for by id is marked
removed (extract/store.py). A search cannot tell a removed study from one that no longer matches
it, so the studies each search found are kept (`sync_members`), and a whole search (the first
sync, or `full`) that ends without finding some of them asks for each by id: 404, and it is
marked removed; else it is stored as it is now, outside the search. An incremental sync sees
only changed studies, so it cannot notice a removal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any

from extract.fetch import Progress, Search, Settings, study_id, fetch_ids, fetch_search
from extract.importer import Summary
from extract.store import Workspace

SORT = "LastUpdatePostDate:asc"  # the API's order of results: oldest change first


def mark_name(search: Search) -> str:
    return f"sync {search.key()}"


@dataclass
class SyncResult:
    name: str  # the mark's name
    since: date | None  # the mark the fetch started from (None: the whole search)
    mark: date | None  # the mark now
    summary: Summary
    pending_since: datetime  # when the sync whose trials are still to be extracted began
    held_back: str | None = None  # why the mark did not advance as far as the studies fetched
    left: list[str] = field(default_factory=list)  # found before, not by this whole search: asked for by id


class _Mark:
    """The mark as pages are stored: advanced with each, or held back (see the module's docstring)."""

    def __init__(self, workspace: Workspace, name: str, since: date | None, pending_since: datetime):
        self.workspace, self.name, self.since, self.pending_since = workspace, name, since, pending_since
        self.value = since  # what is written
        self.latest = since  # the latest date seen, in order or not
        self.out_of_order = False
        self.failures = 0
        self.seen: set[str] = set()

    def page(self, studies: list[Any], failures: int) -> None:
        found = [nct_id for nct_id in map(study_id, studies) if nct_id is not None]
        self.seen.update(found)
        self.workspace.add_members(self.name, found)
        dates = [day for day in map(_last_update, studies) if day is not None]
        if dates != sorted(dates) or (dates and self.latest and dates[0] < self.latest):
            self.out_of_order = True
        self.latest = max(filter(None, (self.latest, *dates)), default=None)
        self.failures += failures
        if self.out_of_order:
            self.value = self.since  # a later page may hold a change older than the ones seen
        elif not self.failures:
            self.value = self.latest
        # else it stays before the page of the first failure: that study comes again next time
        self.write()

    def finish(self) -> None:
        """The whole search is stored: in order or not, every change since the start was seen."""
        if not self.failures:
            self.value = self.latest
        self.write()

    @property
    def held_back(self) -> str | None:
        if self.failures:
            return f"{self.failures} {'study' if self.failures == 1 else 'studies'} could not be stored"
        return None

    def write(self) -> None:
        self.workspace.set_mark(self.name, {
            "last_update": self.value.isoformat() if self.value else None,
            "pending_since": self.pending_since.isoformat(),
        })  # fmt: skip


async def sync_search(
    workspace: Workspace,
    search: Search,
    settings: Settings,
    page_size: int = 100,
    on_progress: Progress = lambda done, total: None,
    full: bool = False,
) -> SyncResult:
    """Fetch the search's studies changed since its mark (every one, the first time or when `full`),
    advancing the mark with each page stored. UpstreamError when the registry fails: what was
    stored stays, and the mark says where the next sync starts. After a whole search, the studies
    it found before and not now are asked for by id (those answering 404 marked removed); the
    summary counts them too."""
    name = mark_name(search)
    stored = workspace.mark(name) or {}
    since = date.fromisoformat(stored["last_update"]) if stored.get("last_update") and not full else None
    pending = stored.get("pending_since")
    pending_since = datetime.fromisoformat(pending) if pending else datetime.now(timezone.utc)
    mark = _Mark(workspace, name, since, pending_since)
    summary = await fetch_search(workspace, replace(search, updated_since=since), settings, None, page_size,
                                 on_progress, sort=SORT, on_page=mark.page)  # fmt: skip
    mark.finish()
    result = SyncResult(name, since, mark.value, summary, pending_since, mark.held_back)
    if since is None:  # a whole search: what it no longer finds has left it, or the registry
        result.left = sorted(workspace.members(name) - mark.seen)
        if result.left:
            asked = await fetch_ids(workspace, result.left, settings)
            summary.add(asked)
            failed = {line.split(":", 1)[0] for line in asked.failures}  # asked again by the next whole search
            workspace.drop_members(name, [nct_id for nct_id in result.left if nct_id not in failed])
    return result


def changed(workspace: Workspace, result: SyncResult) -> list[str]:
    """The trials this sync (and any unfinished one before it) stored new or changed: what to extract."""
    return workspace.stored_since(result.pending_since)


def finished(workspace: Workspace, result: SyncResult) -> None:
    """The changed trials are extracted: the next sync has nothing pending."""
    workspace.set_mark(result.name, {"last_update": result.mark.isoformat() if result.mark else None, "pending_since": None})


def _last_update(study: Any) -> date | None:
    """A study's LastUpdatePostDate, read without trusting its shape; None when it has none."""
    try:
        return date.fromisoformat(study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"])
    except (KeyError, TypeError, ValueError):
        return None
