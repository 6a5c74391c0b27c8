"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: scripted replies, every request recorded.

POST /v1/chat/completions, GET /v1/models (`models`: the ids it lists, ["test-model"] unless told),
and GET /v1/_stats (the request count; with `?requests=1` every request body too) for a client in
another process; `peak` is the most chat requests it held at once. Each request takes the first scripted reply whose `when` text occurs
in its body (or that has no `when`), so concurrent trials get their own answers; with nothing left to
say the server answers with `respond(request)` when given one, else 500, which shows up in a test as a
failed trial. `latency` makes every call wait that long first, as a model's thinking would. A reply
with `drip` sends its body one byte every `drip` seconds; `refuse_connections()` stops listening, so
that every new connection is refused, as at a base URL where nothing runs. With `alternating_roles`
set, a request whose turns after the system prompt are not user, assistant, user, ... (a `tool` turn,
say) is answered 500 as Gemma's chat template answers it in llama.cpp's server.

Run as a script (`python tests/openai_server.py --latency 0.3`) it serves in a process of its own,
answering every call with `first_criterion_answer`, and prints its base URL on the first line of
stdout; it stops when its stdin closes. The benchmark uses that so that the server's Python work does
not compete with the client for one interpreter lock, as a remote provider's would not.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to stall before answering
    drip: float = 0.0  # seconds between the bytes of the body (each read is quick, the whole never)
    when: str | None = None
    echo_authorization: bool = False  # a careless server: the error message ends with the Authorization header


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


def error(status: int, message: str = "scripted failure", retry_after: str | None = None, when: str | None = None,
          echo_authorization: bool = False, code: str | None = None) -> Reply:  # fmt: skip
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"message": message, "type": "server_error", "code": code}}
    return Reply(status=status, body=body, headers=headers, when=when, echo_authorization=echo_authorization)


ROLES_MUST_ALTERNATE = "Conversation roles must alternate user/assistant/user/assistant/..."


def alternates(messages: list[dict]) -> bool:
    """Turns after an optional system prompt go user, assistant, user, ...: what Gemma's template accepts."""
    turns = messages[1:] if messages and messages[0].get("role") == "system" else messages
    return all(m.get("role") == ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(turns))


def prompt_tokens(request: dict) -> int:
    """A meaningful usage figure: the characters of the messages and the tool schema, over 4."""
    text = "".join(m.get("content") or "" for m in request["messages"]) + json.dumps(request.get("tools", []))
    return len(text) // 4


def first_criterion_answer(request: dict) -> Reply:
    """A small valid extraction of any trial: one cancer type quoting the start of its first criterion
    (nothing, when the request's tool does not ask for cancer types: a request scoped to other fields);
    for a pack of trials (a tool asking `trials`), that for each trial of its message."""
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    asked = [tool["function"]["parameters"] for tool in request.get("tools", [])]
    if asked and "trials" in asked[0].get("properties", {}):
        trial_schema = asked[0]["$defs"]["TrialEligibility"]
        blocks = re.split(r"^Trial (NCT\d{8}):", user, flags=re.MULTILINE)[1:]
        answer = {"trials": [{"nct_id": nct_id, **_first_criterion(block, trial_schema)}
                             for nct_id, block in zip(blocks[::2], blocks[1::2])]}  # fmt: skip
    else:
        answer = _first_criterion(user, asked[0] if asked else None)
    return tool_call(answer, usage=(prompt_tokens(request), len(json.dumps(answer)) // 4))


def _first_criterion(text: str, schema: dict | None) -> dict:
    criterion_id, criterion = re.search(r"^\[((?:inc|exc)-\d+)\] (.+)$", text, re.MULTILINE).groups()
    if schema is not None and "cancer_types" not in schema.get("properties", {}):
        return {}
    quote = " ".join(criterion.split()[:6])
    return {"cancer_types": [{"name": "solid tumour", "requirement": "required",
                              "evidence": {"criterion_id": criterion_id, "quote": quote}}]}  # fmt: skip


def _completion(message: dict, finish_reason: str, usage: tuple[int, int]) -> dict:
    prompt_tokens, completion_tokens = usage
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }  # fmt: skip


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops connections at high concurrency: 1 s SYN retries


class OpenAIServer:
    def __init__(self, latency: float = 0.0, respond: Callable[[dict], Reply] | None = None) -> None:
        self.latency = latency  # seconds every call waits before its answer
        self.respond = respond  # answers a request that no scripted reply matches
        self.requests: list[dict] = []  # every request body, in arrival order
        self.authorizations: list[str] = []  # every request's Authorization header, in arrival order
        self.models = ["test-model"]  # what GET /v1/models lists
        self.peak = 0  # the most chat requests held at once
        self.alternating_roles = False  # refuse turns that do not alternate user/assistant (a strict chat template)
        self._held = 0
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()  # ends stalls at shutdown
        self._http = _HTTPServer(("127.0.0.1", 0), self._handler())
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

    def _next(self, raw: str, authorization: str = "") -> Reply:
        request = json.loads(raw)
        with self._lock:
            self.requests.append(request)
            self.authorizations.append(authorization)
            if self.alternating_roles and not alternates(request.get("messages", [])):
                return error(500, ROLES_MUST_ALTERNATE)
            for index, reply in enumerate(self._script):
                if reply.when is None or reply.when in raw:
                    return self._script.pop(index)
        return self.respond(request) if self.respond else error(500, "no scripted reply left")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Headers and body go out in two writes: with Nagle's algorithm on, the body waits for the
            # client's delayed ACK of the headers, some 40 ms per call.
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"  # keep-alive, as providers do: no new connection per call

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                authorization = self.headers.get("Authorization", "")
                reply = server._next(raw, authorization)
                with server._lock:
                    server._held += 1
                    server.peak = max(server.peak, server._held)
                try:
                    wait = reply.delay + server.latency
                    if wait and server._closing.wait(wait):
                        return
                finally:
                    with server._lock:
                        server._held -= 1
                body = reply.body
                if reply.echo_authorization:  # a copy: one Reply may be scripted many times
                    message = f"{body['error']['message']} (Authorization: {authorization})"
                    body = body | {"error": body["error"] | {"message": message}}
                payload = json.dumps(body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (a timeout test): nothing to answer
                self._write_body(payload, reply.drip)

            def _write_body(self, payload: bytes, drip: float) -> None:
                """The body at once, or one byte every `drip` seconds; until the client hangs up."""
                pieces = [payload[i : i + 1] for i in range(len(payload))] if drip else [payload]
                try:
                    for piece in pieces:
                        if drip and server._closing.wait(drip):
                            return
                        self.wfile.write(piece)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (at its deadline): nothing to answer

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path not in ("/v1/_stats", "/v1/models"):
                    self.send_error(404)
                    return
                with server._lock:
                    stats: dict[str, Any] = {"count": len(server.requests)}
                    if "requests=1" in query.split("&"):
                        stats["requests"] = list(server.requests)
                if path == "/v1/models":
                    stats = {"object": "list", "data": [{"id": model, "object": "model", "created": 0,
                                                         "owned_by": "test"} for model in server.models]}  # fmt: skip
                payload = json.dumps(stats).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass  # keep test output quiet

        return Handler

    def start(self) -> None:
        self._thread.start()

    def refuse_connections(self) -> None:
        """Stop listening: every new connection to `base_url` is refused from now on."""
        self._http.shutdown()
        self._http.socket.close()

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


# -- the Batch API --------------------------------------------------------------------------------------


def expired_line(when: str | None = None) -> Reply:
    """A batch line left undone when the completion window closed: the batch ends `expired`."""
    return Reply(status=0, when=when)


class BatchServer(OpenAIServer):
    """The Batch API on top: POST /v1/files (multipart), GET /v1/files/{id}/content, POST /v1/batches,
    GET /v1/batches[/{id}].

    Each GET of a batch moves it one state on: validating, in_progress, then completed (or expired).
    On finishing, every input line takes a scripted reply as a chat completion would (and is recorded
    in `requests`): a 200 goes to the output file, any other status to the error file, and an
    `expired_line` to the error file as `batch_expired`. `cut_output_lines` maps a line number of
    the output file (0 first) to the bytes it keeps: a file cut short, or a line written half.
    """

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}  # every batch created, by id
        self.cut_output_lines: dict[int, int] = {}
        self.drip = 0.0  # seconds between the bytes of every Batch API answer (0: all at once)

    def _add_file(self, data: bytes, purpose: str, filename: str) -> dict:
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = data
        return {"id": file_id, "object": "file", "bytes": len(data), "created_at": 0, "filename": filename,
                "purpose": purpose, "status": "processed"}  # fmt: skip

    def _upload(self, content_type: str, raw: bytes) -> dict:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        purpose = parts["purpose"].get_payload(decode=True).decode()
        with self._lock:
            return self._add_file(parts["file"].get_payload(decode=True), purpose, parts["file"].get_filename())

    def _create_batch(self, request: dict) -> dict:
        with self._lock:
            total = len(self.files[request["input_file_id"]].splitlines())
            batch = {"id": f"batch_{len(self.batches) + 1}", "object": "batch", "endpoint": request["endpoint"],
                     "completion_window": request["completion_window"], "created_at": 0,
                     "input_file_id": request["input_file_id"], "status": "validating",
                     "metadata": request.get("metadata"), "output_file_id": None, "error_file_id": None,
                     "request_counts": {"total": total, "completed": 0, "failed": 0}}  # fmt: skip
            self.batches[batch["id"]] = batch
            return dict(batch)

    def _advance(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch["status"] == "in_progress":
            self._finish(batch)
        return dict(batch)

    def _finish(self, batch: dict) -> None:
        output, errors = [], []
        for raw in self.files[batch["input_file_id"]].decode().splitlines():
            reply = self._next(raw)
            line = {"id": f"batch_req_{len(output) + len(errors) + 1}", "custom_id": json.loads(raw)["custom_id"]}
            if reply.status == 0:
                message = "This request could not be executed before the completion window expired."
                errors.append(line | {"response": None, "error": {"code": "batch_expired", "message": message}})
            else:
                line |= {"response": {"status_code": reply.status, "request_id": "req-test", "body": reply.body},
                         "error": None}  # fmt: skip
                (output if reply.status == 200 else errors).append(line)
        with self._lock:
            files = ((output, "output_file_id", "output.jsonl"), (errors, "error_file_id", "errors.jsonl"))
            for lines, key, name in files:
                if lines:
                    texts = [json.dumps(line) for line in lines]
                    if key == "output_file_id":
                        texts = [text[: self.cut_output_lines.get(i, len(text))] for i, text in enumerate(texts)]
                    data = "".join(text + "\n" for text in texts).encode()
                    batch[key] = self._add_file(data, "batch_output", name)["id"]
        expired = any(line.get("error") for line in errors)
        batch["status"] = "expired" if expired else "completed"
        batch["request_counts"] |= {"completed": len(output), "failed": len(errors)}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        Chat = super()._handler()

        class Handler(Chat):
            def do_GET(self) -> None:
                content = re.fullmatch(r"/v1/files/([\w-]+)/content", self.path)
                batch = re.fullmatch(r"/v1/batches/([\w-]+)", self.path)
                if content and content[1] in server.files:
                    self._send(server.files[content[1]], "application/octet-stream")
                elif batch and batch[1] in server.batches:
                    self._send(server._advance(batch[1]))
                elif self.path.split("?")[0] == "/v1/batches":
                    data = [dict(b) for b in reversed(server.batches.values())]
                    self._send({"object": "list", "data": data, "has_more": False})
                else:
                    super().do_GET()  # /v1/_stats, else 404

            def do_POST(self) -> None:
                if self.path not in ("/v1/files", "/v1/batches"):
                    super().do_POST()
                    return
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/files":
                    self._send(server._upload(self.headers["Content-Type"], raw))
                else:
                    self._send(server._create_batch(json.loads(raw)))

            def _send(self, body: dict | bytes, content_type: str = "application/json") -> None:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self._write_body(payload, server.drip)

        return Handler


@pytest.fixture
def batch_server() -> Iterator[BatchServer]:
    server = BatchServer()
    server.start()
    yield server
    server.stop()


def main() -> None:
    """Serve in this process until stdin closes: first line of stdout, the base URL."""
    import argparse

    parser = argparse.ArgumentParser(description="a local OpenAI-compatible server answering every call")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every call waits")
    args = parser.parse_args()
    server = OpenAIServer(latency=args.latency, respond=first_criterion_answer)
    server.start()
    print(server.base_url, flush=True)
    try:
        sys.stdin.read()  # the parent closes our stdin (or dies) to stop us
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
