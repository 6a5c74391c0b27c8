"""What the registry client and the LLM backend share about the network: a URL checked before it is
used, and the point at which an upstream that cannot be reached at all stops the work.

A request's own deadline is `asyncio.timeout` around it, in each client: httpx's timeouts bound
each read, so a server sending one byte a second would hold a request for ever without it.
"""

from __future__ import annotations

import re

import httpx

from extract.errors import InputError, UpstreamUnreachable

# Connection failures in a row (no answer of any kind in between) that mean "nobody is there".
# A few, not one: a single refused connection can be a restart; more would cost minutes per trial.
CONNECTION_FAILURES = 3


def checked_url(url: str, what: str) -> str:
    """`url` when it is an http(s) URL with a host; else InputError naming `what` (e.g. the variable)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise InputError(f"{what} is not a URL ({error}): {url!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or re.search(r"[\s%]", parsed.host):
        raise InputError(f"{what} must be an http:// or https:// URL with a host, not {url!r}")
    return url


# httpx's, and by name those of the httpx fork the openai client uses (httpx2, httpcore2): same names.
_CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)
_CONNECT_FAILURE_NAMES = {cls.__name__ for cls in _CONNECT_FAILURES}


def cannot_connect(error: BaseException | None) -> bool:
    """Did the request fail before any server answered: refused, no route, unknown host, connect timeout?

    Clients wrap these (openai.APIConnectionError also means a connection broken mid-answer), so the
    causes are followed."""
    while error is not None:
        if isinstance(error, _CONNECT_FAILURES) or type(error).__name__ in _CONNECT_FAILURE_NAMES:
            return True
        error = error.__cause__ or error.__context__
    return False


class Breaker:
    """Counts connection failures in a row across every request to one upstream; an answer resets it.

    At CONNECTION_FAILURES `failed` raises UpstreamUnreachable, and `check` does before every later
    attempt, so that concurrent requests stop too instead of retrying for minutes.
    """

    def __init__(self, upstream: str, limit: int = CONNECTION_FAILURES):
        self.upstream = upstream
        self.limit = limit
        self.in_a_row = 0
        self.last_reason = ""

    def check(self) -> None:
        """Before an attempt: refuse it once the upstream is known to be unreachable."""
        if self.in_a_row >= self.limit:
            raise UpstreamUnreachable(
                f"{self.upstream} cannot be reached ({self.last_reason}; {self.in_a_row} connection failures in a row)"
            )

    def failed(self, error: BaseException, reason: str) -> None:
        """After an attempt that raised `error`: count it if nothing answered, then `check`."""
        if cannot_connect(error):
            self.in_a_row += 1
            self.last_reason = reason
            self.check()

    def answered(self) -> None:
        self.in_a_row = 0
