"""The built wheel works on its own: installed into a fresh environment, run from outside the checkout.

The wheel is built offline from the files of the checkout (`pip wheel --no-build-isolation`) and
installed with no dependencies into a new virtual environment, which borrows the installed
dependencies of this one through a .pth file (not its editable install: .pth files in a borrowed
folder are not read). CI (.ci/run) does the same with a truly fresh environment from PyPI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from openai_server import OpenAIServer, first_criterion_answer

CHECKOUT = Path(__file__).resolve().parents[1]
GOLD = ("NCT05879978", "NCT05818137")  # dev gold trials whose records are in ctgov-v2


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(a folder outside the checkout, the environment of a fresh venv holding only the wheel)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so that building leaves nothing in the checkout
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=CHECKOUT,
                           capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        if (CHECKOUT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(CHECKOUT / name, source / name)
    plain = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ELIGEX_", "PYTHON"))}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(root / "dist"), str(source)],
         root, plain)  # fmt: skip
    [wheel] = (root / "dist").glob("eligex-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, plain)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, plain).stdout.strip())
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)], root, plain)
    outside = root / "elsewhere"
    outside.mkdir()
    return outside, plain | {"PATH": f"{venv / 'bin'}{os.pathsep}{plain['PATH']}", "ELIGEX_WORKSPACE": str(outside / "ws")}


def test_the_wheel_imports_from_itself_not_from_the_checkout(installed):
    outside, env = installed
    where = _run(["python", "-c", "import cli, eligex, extract, prompts, evals; print(extract.__file__, eligex.__file__)"],
                 outside, env).stdout  # fmt: skip
    assert str(CHECKOUT) not in where and "site-packages" in where


def test_import_extract_and_eval_with_a_gold_folder_from_outside_the_checkout(installed, shared_data):
    outside, env = installed
    _run(["eligex", "import", *(str(shared_data / "ctgov-v2" / f"{nct_id}.json") for nct_id in GOLD)], outside, env)
    _run(["eligex", "extract", "--all", "--backend", "rules"], outside, env)
    gold = outside / "gold"
    gold.mkdir()
    for nct_id in GOLD:
        shutil.copy(CHECKOUT / "evals" / "gold" / f"{nct_id}.json", gold)

    result = _run(["eligex", "eval", "--backend", "rules", "--gold", str(gold), "--out", str(outside / "report")], outside, env)

    assert "micro F1" in result.stderr and "(2 trials)" in result.stderr
    metrics = json.loads((outside / "report" / "metrics.json").read_text())
    assert metrics["n_trials"] == 2 and metrics["micro"]["f1"] > 0.5
    # The shipped gold and splits are in the wheel too: the project's own split is found and scores
    # the `extract --all` run (the eval above made a run of its own, of the gold folder's trials).
    runs = [json.loads(line) for line in _run(["eligex", "runs", "--json"], outside, env).stdout.splitlines()]
    [extract_all] = [run for run in runs if run["run_id"] != metrics["run"]["run_id"]]
    shipped = _run(["eligex", "eval", "--run", extract_all["run_id"], "--split", "dev", "--out", str(outside / "dev")],
                   outside, env)  # fmt: skip
    n_dev = len(json.loads((CHECKOUT / "evals" / "splits.json").read_text())["dev"])
    assert f"on dev ({n_dev} trials)" in shipped.stderr


def test_the_openai_backend_finds_its_prompt_in_the_wheel(installed):
    outside, env = installed
    server = OpenAIServer(respond=first_criterion_answer)
    server.start()
    try:
        llm = env | {"OPENAI_BASE_URL": server.base_url, "ELIGEX_MODEL": "test-model"}
        _run(["eligex", "import", str(CHECKOUT / "evals" / "records" / "NCT06450314.jsonl")], outside, llm)
        _run(["eligex", "extract", "NCT06450314", "--backend", "openai"], outside, llm)
    finally:
        server.stop()
    assert server.count == 1
    record = json.loads(_run(["eligex", "show", "NCT06450314", "--part", "extraction"], outside, env).stdout)
    assert record["backend"] == "openai" and record["prompt_version"].startswith("extract-v1+")
