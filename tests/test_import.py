"""`eligex import` over every shared record and over broken input, and the workspace it fills."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extract.errors import InputError
from extract.sources import RecordError, age_in_years, parse_document
from extract.store import MIGRATIONS, Workspace, atomic_write

from conftest import SHARED_DATA, run



@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A workspace holding every shared record (imported once for the module)."""
    root = tmp_path_factory.mktemp("all")
    result = run("--workspace", str(root), "import", *(str(SHARED_DATA / d) for d in ("ctgov-v2", "ctgov-classic-xml", "ctgov-2026")))
    return root, result


def test_import_of_all_shared_records_fails_only_the_two_search_pages(imported):
    root, result = imported
    assert result.exit_code == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert failures == [
        f"failed: {SHARED_DATA}/ctgov-classic-xml/covid_search.xml: a search results page, not a study (expected <clinical_study>)",
        f"failed: {SHARED_DATA}/ctgov-classic-xml/empty_search.xml: a search results page, not a study (expected <clinical_study>)",
    ]
    assert "imported 137 files" in result.stderr and "2 failed" in result.stderr
    workspace = Workspace(root)
    ids = workspace.trial_ids()
    assert len(ids) == len(set(ids)) == 1160
    assert len(list((root / "raw" / "clinicaltrials.gov").iterdir())) == 1160


def test_reimport_rewrites_nothing(imported):
    root, _ = imported
    raw = root / "raw" / "clinicaltrials.gov"
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    result = run("--workspace", str(root), "import", str(SHARED_DATA / "ctgov-2026"))
    assert result.exit_code == 0
    assert "0 new, 0 changed, 1034 unchanged, 0 failed" in result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before


def test_xml_raw_is_stored_exactly_as_received(imported):
    root, _ = imported
    source = SHARED_DATA / "ctgov-classic-xml" / "NCT00001177.xml"
    assert (root / "raw" / "clinicaltrials.gov" / "NCT00001177.xml").read_bytes() == source.read_bytes()
    row = Workspace(root).db.execute("SELECT raw_format, content_sha256 FROM trials WHERE nct_id = 'NCT00001177'").fetchone()
    assert row[0] == "xml" and len(row[1]) == 64


def test_id_mismatch_file_is_stored_under_the_id_the_record_states(imported):
    root, _ = imported
    [parsed] = parse_document((SHARED_DATA / "ctgov-classic-xml" / "NCT00980226-id-mismatch.xml").read_bytes(), "x.xml")
    assert parsed.trial.nct_id == "NCT00081588"


def test_normalised_trial_facts(imported):
    root, _ = imported
    [trial] = Workspace(root).trials(["NCT05594173"])
    assert trial.trial.overall_status == "COMPLETED"
    assert trial.trial.study_type == "OBSERVATIONAL"
    assert trial.trial.sponsor == "University Health Network, Toronto"
    assert (trial.sex, trial.min_age_years, trial.max_age_years) == ("ALL", 18.0, 60.0)
    assert str(trial.last_update) == "2022-11-21"
    [flat] = Workspace(root).trials(["NCT00001465"])
    assert flat.trial.phases == [] and flat.healthy_volunteers is False
    assert (flat.min_age_years, flat.max_age_years) == (16.0, 100.0)
    phased = next(t for t in Workspace(root).trials() if t.trial.phases == ["PHASE1", "PHASE2"])
    assert phased.source.url.startswith("https://clinicaltrials.gov/")


BROKEN = {
    "malformed.json": (b'{"protocolSection": {', "malformed JSON: Expecting"),
    "malformed.xml": (b"<clinical_study><id_info><nct_id>NCT0000", "malformed XML:"),
    "noid.xml": (b"<clinical_study><brief_title>x</brief_title></clinical_study>", "no NCT id"),
    "no_id.json": (b'{"protocolSection": {"identificationModule": {}}}', "no NCT id"),
    "short_id.json": (b'{"protocolSection": {"identificationModule": {"nctId": "NCT1"}}}', "'NCT1' is not an NCT id"),
    "traversal.json": (b'{"protocolSection": {"identificationModule": {"nctId": "../../etc/passwd"}}}', "is not an NCT id"),
    "page.json": (b'{"totalCount": 3}', "not a study"),
    "empty.json": (b"", "empty file"),
    "latin1.csv": ("nct_id,eligibility_text\nNCT01234567,caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
    "noeligibility.csv": (b"nct_id,title\nNCT01234567,x\n", "CSV lacks the column(s) eligibility_text"),
}


def test_broken_files_each_get_one_line_and_the_rest_is_imported(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, (data, _) in BROKEN.items():
        (folder / name).write_bytes(data)
    (folder / "good.json").write_bytes((SHARED_DATA / "ctgov-v2" / "NCT05594173.json").read_bytes())
    result = run("--workspace", str(tmp_path / "ws"), "import", str(folder))
    assert result.exit_code == 1
    failures = {line.split(": ", 2)[1].rsplit("/", 1)[-1].split(" (")[0]: line for line in result.stderr.splitlines() if line.startswith("failed:")}
    assert set(failures) == set(BROKEN)
    for name, (_, reason) in BROKEN.items():
        assert reason in failures[name], failures[name]
    assert Workspace(tmp_path / "ws").trial_ids() == ["NCT05594173"]
    assert not list((tmp_path / "ws").rglob("passwd*"))


def test_plain_jsonl_and_csv_from_other_registries(tmp_path):
    row = {"nct_id": "NCT09999999", "title": "T", "conditions": ["Breast Cancer"], "sex": "FEMALE",
           "eligibility_text": "Inclusion Criteria:\n* ECOG 0-1", "minimum_age": "18 Years", "maximum_age": "6 Months"}  # fmt: skip
    (tmp_path / "a.jsonl").write_text(json.dumps(row) + "\n\n" + json.dumps(row | {"nct_id": "NCT09999998"}) + "\n")
    (tmp_path / "b.csv").write_text(
        "nct_id,title,conditions,eligibility_text,sex,minimum_age,maximum_age\n"
        'NCT09999997,C,Lung Cancer;NSCLC,"Exclusion Criteria:\n* Pregnancy",ALL,12 Years,\n'
    )
    result = run("--workspace", str(tmp_path / "ws"), "import", str(tmp_path / "a.jsonl"), str(tmp_path / "b.csv"))
    assert result.exit_code == 0, result.stderr
    trials = {t.nct_id: t for t in Workspace(tmp_path / "ws").trials()}
    assert trials["NCT09999999"].max_age_years == 0.5 and trials["NCT09999999"].sex == "FEMALE"
    assert trials["NCT09999997"].trial.conditions == ["Lung Cancer", "NSCLC"]
    assert trials["NCT09999997"].source.registry == "local"
    assert (tmp_path / "ws" / "raw" / "local" / "NCT09999997.json").exists()


def test_missing_path_is_a_usage_error(tmp_path):
    result = run("--workspace", str(tmp_path), "import", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {tmp_path / 'nope'}: no such file or folder"


def test_a_second_writer_gets_a_clear_error(tmp_path):
    first = Workspace(tmp_path)
    with first.writing():
        with pytest.raises(InputError, match="in use by another eligex process"):
            with Workspace(tmp_path).writing():
                pass


def test_migrations_run_once_in_order(tmp_path):
    workspace = Workspace(tmp_path)
    versions = workspace.db.execute("SELECT version FROM migrations ORDER BY version").fetchall()
    assert [v for (v,) in versions] == list(range(1, len(MIGRATIONS) + 1))
    workspace.close()
    again = Workspace(tmp_path)
    assert again.db.execute("SELECT count(*) FROM migrations").fetchone()[0] == len(MIGRATIONS)


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "file.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_raw_paths_are_built_from_checked_ids_only(tmp_path):
    workspace = Workspace(tmp_path)
    assert workspace.raw_path("clinicaltrials.gov", "NCT01234567", "json") == tmp_path / "raw" / "clinicaltrials.gov" / "NCT01234567.json"
    assert workspace.raw_path("../../x", "NCT01234567", "json").parent == tmp_path / "raw" / "....x"
    with pytest.raises(InputError):
        workspace.raw_path("clinicaltrials.gov", "../NCT01234567", "json")


@pytest.mark.parametrize(
    "text, years",
    [("18 Years", 18.0), ("6 Months", 0.5), ("2 Weeks", 0.0383), ("30 Days", 0.0821), ("N/A", None), (None, None)],
)
def test_registry_ages_in_years(text, years):
    assert age_in_years(text) == years


def test_v2_page_of_studies_yields_each_study():
    studies = [json.loads((SHARED_DATA / "ctgov-v2" / name).read_text()) for name in ("NCT05594173.json", "NCT03418623.json")]
    parsed = list(parse_document(json.dumps({"studies": studies, "nextPageToken": "x"}).encode(), "page.json"))
    assert [p.trial.nct_id for p in parsed] == ["NCT05594173", "NCT03418623"]
    assert not any(isinstance(p, RecordError) for p in parsed)
