"""The two families of failure, as in pydantic-ai: the user's mistake, or something upstream.

The CLI turns each into a one-line message and its own exit code; nothing else is caught there,
so a bug still shows its traceback.
"""

import email.utils
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone

# Notices a run gives while it goes on (retries); the command line shows them on stderr.
log = logging.getLogger("eligex")


class EligexError(Exception):
    exit_code = 1


class InputError(EligexError):
    """Bad input or usage: a file that is not a study, an invalid id, a busy workspace."""

    exit_code = 2


class UpstreamError(EligexError):
    """A service we depend on failed: the registry API or the LLM endpoint, after retries."""

    exit_code = 3


class UpstreamUnreachable(UpstreamError):
    """Nothing answers at the upstream's address: the whole command stops, not just one record."""


def positive_env(name: str, default: float) -> float:
    """A positive number from the environment variable `name` (of the type of `default`), else `default`."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = type(default)(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise InputError(f"{name} must be a positive number, not {value!r}")
    return number


@dataclass(frozen=True)
class Billed:
    """What a provider charged for work that then failed (the tokens it reported): stored with the failure."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


def billed(error: BaseException) -> Billed:
    """The spend a backend attached to a failure (`error.billed`), else none."""
    return getattr(error, "billed", None) or Billed()


def one_line(text: str, limit: int = 200) -> str:
    """The first line of a message, at most `limit` characters: errors are reported on one line."""
    return (text.strip().splitlines() or [""])[0][:limit]


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds an upstream asks us to wait (a Retry-After header): a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def redact(message: str) -> str:
    """Remove the configured API key from a message before it is shown, logged or stored."""
    key = os.environ.get("OPENAI_API_KEY", "")
    return message.replace(key, "[redacted]") if len(key) >= 8 else message


def retry_notice(what: str):
    """A tenacity `before_sleep` hook: a retry is said (logger "eligex"), with its reason and wait."""

    def notice(state) -> None:
        error = state.outcome.exception() if state.outcome else None
        reason = redact(one_line(str(error))) or type(error).__name__
        wait = state.next_action.sleep if state.next_action else 0
        log.warning(f"retrying {what} in {wait:.1f} s (attempt {state.attempt_number + 1}): {reason}")

    return notice
