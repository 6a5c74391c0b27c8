"""The two families of failure, as in pydantic-ai: the user's mistake, or something upstream.

The CLI turns each into a one-line message and its own exit code; nothing else is caught there,
so a bug still shows its traceback.
"""

import os


class EligexError(Exception):
    exit_code = 1


class InputError(EligexError):
    """Bad input or usage: a file that is not a study, an invalid id, a busy workspace."""

    exit_code = 2


class UpstreamError(EligexError):
    """A service we depend on failed: the registry API or the LLM endpoint, after retries."""

    exit_code = 3


def redact(message: str) -> str:
    """Remove the configured API key from a message before it is shown, logged or stored."""
    key = os.environ.get("OPENAI_API_KEY", "")
    return message.replace(key, "[redacted]") if len(key) >= 8 else message
