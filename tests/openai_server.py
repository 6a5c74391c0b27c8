"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: scripted replies, every request recorded.

Only POST /v1/chat/completions. Each request takes the first scripted reply whose `when` text occurs
in its body (or that has no `when`), so concurrent trials get their own answers; with nothing left to
say the server answers 500, which shows up in a test as a failed trial.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to stall before answering
    when: str | None = None


def tool_call(arguments: dict | str, usage: tuple[int, int] = (1200, 300), when: str | None = None) -> Reply:
    """A completion calling the response-model tool (instructor's TOOLS mode); `arguments` may be broken JSON."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "ExtractedEligibility", "arguments": text}},
    ]}  # fmt: skip
    return Reply(body=_completion(message, "tool_calls", usage), when=when)


def json_content(content: dict, usage: tuple[int, int] = (1200, 300), when: str | None = None) -> Reply:
    """A completion whose message content is the JSON answer (instructor's JSON mode)."""
    message = {"role": "assistant", "content": json.dumps(content)}
    return Reply(body=_completion(message, "stop", usage), when=when)


def error(status: int, message: str = "scripted failure", retry_after: str | None = None, when: str | None = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(status=status, body={"error": {"message": message, "type": "server_error"}}, headers=headers, when=when)


def _completion(message: dict, finish_reason: str, usage: tuple[int, int]) -> dict:
    prompt_tokens, completion_tokens = usage
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }  # fmt: skip


class OpenAIServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []  # every request body, in arrival order
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()  # ends stalls at shutdown
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def _next(self, raw: str) -> Reply:
        with self._lock:
            self.requests.append(json.loads(raw))
            for index, reply in enumerate(self._script):
                if reply.when is None or reply.when in raw:
                    return self._script.pop(index)
        return error(500, "no scripted reply left")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                reply = server._next(raw)
                if reply.delay and server._closing.wait(reply.delay):
                    return
                payload = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            def log_message(self, *args) -> None:
                pass  # keep test output quiet

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._closing.set()
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer()
    server.start()
    yield server
    server.stop()
