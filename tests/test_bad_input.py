"""Input that must not stop the rest: one bad record costs itself, in `import` and in `fetch` alike.

Each bad record is one line (file, record, reason) on stderr; every other record is stored.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading

import pytest
from ctgov_server import CtgovServer

from extract.fetch import Search, Settings, fetch_ids, fetch_search
from extract.sources import RawRecord, RecordError, parse_document
from extract.store import Workspace
from schemas import is_nct_id, normalise_nct_id

from conftest import SHARED_DATA, run

GOOD = json.loads((SHARED_DATA / "ctgov-v2" / "NCT05594173.json").read_text())
CLASSIC = SHARED_DATA / "ctgov-classic-xml"


def study(nct_id: str, **identification) -> dict:
    """A real study under another id, with its identification module changed as given."""
    document = json.loads(json.dumps(GOOD))
    document["protocolSection"]["identificationModule"] |= {"nctId": nct_id, **identification}
    return document


def deep(depth: int = 10_000) -> str:
    return '{"protocolSection": {"identificationModule": {"nctId": "NCT09000001", "briefTitle": ' + "[" * depth + "]" * depth + "}}}"


# Each a JSON text of one bad record, and the words its one line must hold.
BAD_RECORDS = {
    "deep": (deep(), "nested too deeply"),
    "surrogate": (json.dumps(study("NCT09000002", briefTitle="a \ud800 b")), "not valid Unicode"),
    "title_number": (json.dumps(study("NCT09000003", briefTitle=12345)), "title"),
    "conditions_string": (
        json.dumps(study("NCT09000004") | {"protocolSection": GOOD["protocolSection"] | {
            "identificationModule": {"nctId": "NCT09000004"}, "conditionsModule": {"conditions": "x"}}}),
        "conditions",
    ),
    "module_list": (json.dumps({"protocolSection": {"identificationModule": ["NCT09000005"]}}), "identificationModule"),
}  # fmt: skip


def failures(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("failed:")]


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_a_malformed_record_in_a_jsonl_is_one_line_and_the_others_are_stored(tmp_path, name):
    text, words = BAD_RECORDS[name]
    lines = [json.dumps(study("NCT09000010")), text, json.dumps(study("NCT09000011"))]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    result = run("--workspace", str(tmp_path / "ws"), "import", str(tmp_path / "in.jsonl"))
    assert result.exit_code == 1, result.stderr
    [line] = failures(result.stderr)
    assert line.startswith(f"failed: {tmp_path / 'in.jsonl'}: line 2") and words in line, line
    assert Workspace(tmp_path / "ws").trial_ids() == ["NCT09000010", "NCT09000011"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_a_malformed_study_file_is_one_line_and_the_other_files_are_stored(tmp_path, name):
    text, words = BAD_RECORDS[name]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(study("NCT09000010")))
    (folder / "b.json").write_text(text)
    (folder / "c.json").write_text(json.dumps(study("NCT09000011")))
    result = run("--workspace", str(tmp_path / "ws"), "import", str(folder))
    assert result.exit_code == 1
    [line] = failures(result.stderr)
    assert line.startswith(f"failed: {folder / 'b.json'}") and words in line, line
    assert Workspace(tmp_path / "ws").trial_ids() == ["NCT09000010", "NCT09000011"]


def test_fetch_reports_each_malformed_study_and_stores_the_rest(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    for name, (text, _) in BAD_RECORDS.items():
        if name != "module_list":  # the stand-in server needs the id where the API has it
            nct_id = json.loads(text)["protocolSection"]["identificationModule"]["nctId"] if name != "deep" else "NCT09000001"
            (studies / f"{nct_id}.json").write_text(text)
    for nct_id in ("NCT09000010", "NCT09000011"):
        (studies / f"{nct_id}.json").write_text(json.dumps(study(nct_id)))
    server = CtgovServer(studies)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        workspace = Workspace(tmp_path / "ws")
        settings = Settings(base_url=server.url, rate=60_000, timeout=2, backoff=0.01, attempts=2)
        ids = sorted(path.stem for path in studies.iterdir())
        summary = asyncio.run(fetch_ids(workspace, ids, settings))
        assert workspace.trial_ids() == ["NCT09000010", "NCT09000011"]
        assert len(summary.failures) == 4 and all("\n" not in f for f in summary.failures), summary.failures
        assert [f.split(":")[0] for f in summary.failures] == ["NCT09000001", "NCT09000002", "NCT09000003", "NCT09000004"]
        # A search page holding the bad studies that parse as JSON stores the others of the page.
        del server.studies["NCT09000001"]  # the stand-in itself cannot page a document nested so deep
        searched = asyncio.run(fetch_search(Workspace(tmp_path / "ws2"), Search(), settings))
        assert Workspace(tmp_path / "ws2").trial_ids() == ["NCT09000010", "NCT09000011"]
        assert len(searched.failures) == 3
    finally:
        server.shutdown()
        server.server_close()
        workspace.close()


# -- NCT ids: one normaliser --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [("NCT01234567", "NCT01234567"), ("nct01234567", "NCT01234567"), (" Nct01234567\n", "NCT01234567"),
     ("NCT１２３４５６７８", None), ("NCT٠١٢٣٤٥٦٧", None), ("ＮＣＴ01234567", None), ("NCT0123456", None),
     ("NCT012345678", None), ("../NCT01234567", None), (None, None), (12345678, None)],
)  # fmt: skip
def test_one_normaliser_for_every_nct_id(value, expected):
    assert normalise_nct_id(value) == expected
    assert is_nct_id("NCT１２３４５６７８") is False


def test_non_ascii_digits_are_refused_in_records_and_lower_case_is_normalised(tmp_path):
    rows = [{"nct_id": "NCT１２３４５６７８", "eligibility_text": "x"}, {"nct_id": "NCT٠١٢٣٤٥٦٧", "eligibility_text": "x"},
            {"nct_id": "nct09000020", "eligibility_text": "x"}]  # fmt: skip
    parsed = list(parse_document("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(), "a.jsonl"))
    assert [type(p) for p in parsed] == [RecordError, RecordError, RawRecord]
    assert parsed[2].trial.nct_id == "NCT09000020"


@pytest.mark.parametrize("command", [["show"], ["criteria"], ["extract", "--backend", "rules"], ["show", "--json"]])
def test_every_command_takes_a_lower_case_id_and_refuses_non_ascii_digits(tmp_path, command):
    root = str(tmp_path / "ws")
    run("--workspace", root, "import", str(SHARED_DATA / "ctgov-v2" / "NCT05594173.json"))
    run("--workspace", root, "extract", "--all", "--backend", "rules")
    result = run("--workspace", root, *command, "nct05594173")
    assert result.exit_code == 0, result.stderr
    refused = run("--workspace", root, *command, "NCT０５５９４１７３")
    assert refused.exit_code == 2 and "not an NCT id" in refused.stderr


# -- the newest record wins; mismatches and duplicates are named --------------------------------------


def test_import_keeps_the_newest_record_and_warns_on_duplicates_and_a_misnamed_file(tmp_path):
    result = run("--workspace", str(tmp_path / "ws"), "import", str(CLASSIC))
    [trial] = Workspace(tmp_path / "ws").trials(["NCT00513591"])
    assert str(trial.last_update) == "2017-06-16"
    raw = tmp_path / "ws" / "raw" / "clinicaltrials.gov" / "NCT00513591.xml"
    assert raw.read_bytes() == (CLASSIC / "NCT00513591.xml").read_bytes()
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert f"warning: {CLASSIC / 'NCT00980226-id-mismatch.xml'}: named for NCT00980226 but holds NCT00081588; stored as NCT00081588" in warnings
    [duplicate] = [w for w in warnings if "NCT00513591" in w]
    assert "3 records" in duplicate and "kept the one last updated 2017-06-16" in duplicate
    assert "NCT00513591.xml" in duplicate.rsplit("(", 1)[1]
    # Importing an older version later keeps the newer one stored.
    again = run("--workspace", str(tmp_path / "ws"), "import", str(CLASSIC / "NCT00513591_mod.xml"))
    assert "1 older than stored" in again.stderr and again.exit_code == 0
    [trial] = Workspace(tmp_path / "ws").trials(["NCT00513591"])
    assert str(trial.last_update) == "2017-06-16" and raw.read_bytes() == (CLASSIC / "NCT00513591.xml").read_bytes()


# -- text that is not quite what it claims ------------------------------------------------------------


def test_one_invalid_utf8_line_rejects_only_that_line(tmp_path):
    lines = [json.dumps(study("NCT09000010")).encode(), b'{"nct_id": "NCT09000012", "eligibility_text": "caf\xe9"}',
             json.dumps(study("NCT09000011")).encode()]  # fmt: skip
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = run("--workspace", str(tmp_path / "ws"), "import", str(tmp_path / "in.jsonl"))
    assert failures(result.stderr) == [f"failed: {tmp_path / 'in.jsonl'}: line 2: not UTF-8 text (invalid continuation byte at byte 50)"]
    assert Workspace(tmp_path / "ws").trial_ids() == ["NCT09000010", "NCT09000011"]


def test_a_csv_field_over_128_kb_keeps_the_rows_after_it(tmp_path):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["nct_id", "eligibility_text"])
    writer.writerow(["NCT09000030", "Inclusion Criteria:\n* " + "long criterion " * 20_000])
    writer.writerow(["NCT09000031", "Inclusion Criteria:\n* ECOG 0-1"])
    writer.writerow(["NCT09000032", b"caf\xe9".decode("latin-1")])
    writer.writerow(["NCT09000033", "Inclusion Criteria:\n* ECOG 0-2"])
    (tmp_path / "in.csv").write_bytes(out.getvalue().encode().replace("café".encode(), b"caf\xe9"))
    result = run("--workspace", str(tmp_path / "ws"), "import", str(tmp_path / "in.csv"))
    assert failures(result.stderr) == [f"failed: {tmp_path / 'in.csv'} (NCT09000032): row 4: not UTF-8 text"]
    assert Workspace(tmp_path / "ws").trial_ids() == ["NCT09000030", "NCT09000031", "NCT09000033"]
    [long] = Workspace(tmp_path / "ws").trials(["NCT09000030"])
    assert len(long.eligibility_text) > 300_000


def test_a_large_jsonl_is_read_record_by_record(tmp_path):
    """The parser takes a stream and yields as it reads: the first record comes before the file ends."""

    class Endless(io.RawIOBase):
        """The same line for ever; it fails once far more than a few records were asked for."""

        def __init__(self):
            self.line = (json.dumps(study("NCT09000040")) + "\n").encode()
            self.served = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            assert self.served < 100 * len(self.line), "read on past the first records"
            start = self.served % len(self.line)
            chunk = (self.line[start:] + self.line)[: len(buffer)]
            buffer[: len(chunk)] = chunk
            self.served += len(chunk)
            return len(chunk)

    from extract.sources import parse_stream

    first = next(parse_stream(io.BufferedReader(Endless()), "endless.jsonl"))
    assert first.trial.nct_id == "NCT09000040"


def test_a_record_stored_again_in_another_format_leaves_one_raw_file(tmp_path):
    root = tmp_path / "ws"
    run("--workspace", str(root), "import", str(CLASSIC / "NCT00001177.xml"))
    (tmp_path / "NCT00001177.json").write_text(json.dumps(study("NCT00001177")))  # updated in 2022: newer
    result = run("--workspace", str(root), "import", str(tmp_path / "NCT00001177.json"))
    assert "0 new, 1 changed" in result.stderr
    assert [p.name for p in (root / "raw" / "clinicaltrials.gov").iterdir()] == ["NCT00001177.json"]
