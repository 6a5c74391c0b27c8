"""Shared test helpers. No test reaches the network: pytest-socket allows loopback only (pyproject)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from extract.backend import Draft
from extract.sources import RawRecord, parse_document
from schemas import Criterion

# A shell without job control starts `&` commands (make test &, nohup, some CI runners) with SIGINT
# ignored; Python keeps it so and the commands the tests start inherit it: a test's Ctrl-C would then
# be lost and the run finish. Restored here once for every test and every command it starts.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED_RECORDS = Path(__file__).resolve().parents[1] / "evals" / "records" / "NCT06450314.jsonl"


class GoldBackend:
    name, model, prompt_version = "gold", None, "gold"


def gold_record(nct_id: str, source: Path):
    """The trial's record with the gold file's eligibility: a record known to be right (matching, exports)."""
    from extract.backend import assemble
    from extract.evaluate.harness import GOLD_DIR, read_gold
    from extract.sources import RawRecord, parse_document
    from extract.text import segment

    [raw] = [r for r in parse_document(source.read_bytes(), source.name) if isinstance(r, RawRecord) and r.trial.nct_id == nct_id]
    gold = read_gold(GOLD_DIR / f"{nct_id}.json")["eligibility"]
    criteria = segment(raw.trial.eligibility_text)
    return assemble(raw.trial, criteria, Draft(eligibility=gold), GoldBackend())


def make_criterion(text: str, kind: str = "inclusion", number: int = 1) -> Criterion:
    """A criterion standing alone, as segmentation would cut it from a record."""
    prefix = "inc" if kind == "inclusion" else "exc"
    return Criterion(id=f"{prefix}-{number}", kind=kind, text=text, start=0, end=len(text))


def found(finder, text: str, kind: str = "inclusion", field: str | None = None) -> list[dict]:
    """The items a rules finder yields for `text` as one criterion, each checked to quote that criterion
    (and, given `field`, to be yielded under that field name)."""
    criterion = make_criterion(text, kind)
    items = []
    for name, item in finder(criterion):
        if field is not None:
            assert name == field
        assert item["evidence"]["quote"] in text and item["evidence"]["criterion_id"] == criterion.id
        items.append(item)
    return items


class EcogBackend:
    """A backend for tests of what comes after extraction: it finds "ECOG" criteria only."""

    model, prompt_version = None, "test-1"

    def __init__(self, name: str = "ecog"):
        self.name = name

    async def extract(self, trial, criteria):
        found = [c for c in criteria if "ECOG" in c.text]
        return Draft(eligibility={"performance_status": [
            {"scale": "ECOG", "min": 0, "max": 1, "evidence": {"criterion_id": c.id, "quote": "ECOG"}} for c in found
        ]})  # fmt: skip


def run(*args: str):
    """The eligex command line, in process; stdout and stderr apart."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def use_llm_server(monkeypatch, tmp_path: Path, base_url: str, api_key: str, **settings: str) -> None:
    """Point the openai backend at a local server, with a price table for the model `test-model`."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"usd_per_million_tokens": {"test-model": {"input": 1.0, "output": 2.0}}}))
    environment = {"OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": base_url, "ELIGEX_PRICES": str(prices)}
    for name, value in (environment | settings).items():
        monkeypatch.setenv(name, value)


def shared_trials():
    """Every trial of the shared registry records (API v2, classic XML, the 2026 export), file by file."""
    for path in sorted(SHARED_DATA.glob("ctgov-*/*")):
        if path.suffix in (".json", ".jsonl", ".xml"):
            for parsed in parse_document(path.read_bytes(), path.name):
                if isinstance(parsed, RawRecord):
                    yield parsed.trial


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED_DATA}")
    return SHARED_DATA
