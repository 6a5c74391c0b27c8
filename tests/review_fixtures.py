"""A small real workspace for the review tests: one trial written for them (its extraction has a
wrong lab threshold, a spurious item, a missed biomarker and markup in a criterion) and one gold
trial of the project, extracted by the rules backend; a copy of evals/ to write gold into."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from extract.evaluate import harness
from extract.importer import import_files
from extract.pipeline import run_extraction
from extract.review.server import bind, server, url_of
from extract.review.workbench import Workbench
from extract.rules import RulesBackend
from extract.store import Workspace
from tests.conftest import EcogBackend

NEW = "NCT09000001"  # no gold file: reviewing it makes one
GOLD = "NCT06450314"  # has a gold file, its record is in evals/records
PAYLOAD = '<script>document.title="pwned"</script>'
TEXT = (
    "Inclusion Criteria:\n\n"
    "* Histologically confirmed metastatic breast cancer\n"
    "* Germline BRCA carrier status documented\n"
    "* AST and ALT no more than 3 times the upper limit\n\n"
    "Exclusion Criteria:\n\n"
    "* Creatinine clearance below 50 mL/min is not a reason for exclusion\n"
    f"* Notes {PAYLOAD} shown as text"
)
ROW = {"nct_id": NEW, "title": "A study for the review tests", "conditions": "Breast Cancer", "sex": "FEMALE",
       "minimum_age": "18 Years", "maximum_age": "N/A", "eligibility_text": TEXT}  # fmt: skip


def make_workspace(root: Path) -> tuple[Workspace, str]:
    """The workspace, and the id of its rules run."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "new.jsonl").write_text(json.dumps(ROW) + "\n")
    workspace = Workspace(root / "ws")
    with workspace.writing():
        import_files(workspace, [root / "new.jsonl", harness.EVALS_DIR / "records" / f"{GOLD}.jsonl"])
        trials = list(workspace.trials())
        # a second backend, so that the queue sees two backends disagree
        asyncio.run(run_extraction(workspace, EcogBackend("ecog-only"), trials, force=True))
        run_id = asyncio.run(run_extraction(workspace, RulesBackend(), trials, force=True)).run_id
    return workspace, run_id


def make_evals(root: Path) -> Path:
    """A copy of the project's gold files and splits (tests never write the real ones)."""
    evals = root / "evals"
    shutil.copytree(harness.GOLD_DIR, evals / "gold")
    shutil.copy(harness.SPLITS_FILE, evals / "splits.json")
    return evals


@contextmanager
def serving(workbench: Workbench):
    """The workbench on a free loopback port, in a thread; yields its address."""
    sock = bind("127.0.0.1", 0)
    running = server(workbench, sock)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the review server did not start"
        time.sleep(0.05)
    try:
        yield url_of(sock)
    finally:
        running.should_exit = True
        thread.join(timeout=30)
        sock.close()


def hidden(html: str, name: str) -> str:
    """The value of the first hidden input `name` on a page."""
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert found, f"no input {name} on the page"
    return found.group(1)
