"""`eligex import` of the registry's full download: a ZIP of one study per file (API v2 JSON, or
classic XML), read from the archive, with its pace on stderr, resumed after a crash."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path

from test_robustness import ELIGEX, environment, raw_disagreements
from test_scale import eligex

from extract.store import Workspace

from conftest import SHARED_DATA

V2, XML = SHARED_DATA / "ctgov-v2", SHARED_DATA / "ctgov-classic-xml"


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def stored_hashes(root: Path) -> dict[str, str]:
    workspace = Workspace(root)
    try:
        return dict(workspace.db.execute("SELECT nct_id, content_sha256 FROM trials").fetchall())
    finally:
        workspace.close()


def test_a_zip_of_studies_imports_as_its_files_do(tmp_path):
    members = {f"ctgov/{p.name}": p.read_bytes() for folder in (V2, XML) for p in sorted(folder.iterdir())}
    archive = zip_of(tmp_path / "AllPublicXML.zip", members)
    from_zip = eligex(environment(tmp_path / "zip", {"ELIGEX_PROGRESS_SECONDS": "0"}), "import", str(archive))
    from_files = eligex(environment(tmp_path / "files"), "import", str(V2), str(XML))

    assert from_zip.returncode == from_files.returncode == 1  # the two search pages of the classic XML
    [zip_line] = [line for line in from_zip.stderr.splitlines() if line.startswith("imported ")]
    [files_line] = [line for line in from_files.stderr.splitlines() if line.startswith("imported ")]
    assert zip_line.split(": ", 1)[1] == files_line.split(": ", 1)[1]
    assert zip_line.split(": ", 1)[1].startswith("127 new, 4 changed, 0 unchanged, 2 failed")
    assert f"failed: {archive}:ctgov/covid_search.xml: a search results page" in from_zip.stderr
    assert stored_hashes(tmp_path / "zip") == stored_hashes(tmp_path / "files")
    # The pace: records per second and what is left, on stderr.
    assert re.search(r"importing: 136 of 136 after \d+ s, \d+/s", from_zip.stderr)
    # Imported again, the archive is read again (the studies given in both formats swap, as from files).
    again = eligex(environment(tmp_path / "zip"), "import", str(archive))
    assert "0 new, 6 changed, 125 unchanged, 2 failed" in again.stderr and stored_hashes(tmp_path / "zip") == stored_hashes(tmp_path / "files")


def test_a_file_that_is_no_zip_archive_is_one_failure(tmp_path):
    broken = tmp_path / "download.zip"
    broken.write_bytes(b"not a zip")
    result = eligex(environment(tmp_path / "ws"), "import", str(broken), str(V2 / "NCT00465816.json"))
    assert result.returncode == 1
    assert f"failed: {broken}: cannot read as a ZIP archive" in result.stderr
    assert "1 new, 0 changed, 0 unchanged, 1 failed" in result.stderr


def test_an_archive_import_killed_mid_way_resumes_after_what_was_committed(tmp_path):
    # 1,500 studies: the v2 records again and again, each under an id of its own.
    studies = [json.loads(p.read_bytes()) for p in sorted(V2.glob("NCT*.json"))]
    members = {}
    for number in range(1500):
        study = json.loads(json.dumps(studies[number % len(studies)]))
        nct_id = f"NCT9{number:07d}"
        study["protocolSection"]["identificationModule"]["nctId"] = nct_id
        members[f"{nct_id}.json"] = json.dumps(study).encode()
    archive = zip_of(tmp_path / "ctg-studies.json.zip", members)
    root = tmp_path / "ws"
    env = environment(root)
    importing = subprocess.Popen([ELIGEX, "import", str(archive)], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)  # fmt: skip
    raw = root / "raw" / "clinicaltrials.gov"
    deadline = time.monotonic() + 120
    while importing.poll() is None and len(list(raw.glob("NCT*.json")) if raw.is_dir() else []) < 520:
        assert time.monotonic() < deadline, "no group stored after 120 s"
        time.sleep(0.01)
    importing.send_signal(signal.SIGKILL)
    assert importing.wait(10) == -signal.SIGKILL, "the kill should land mid-import"

    resumed = eligex(env, "import", str(archive))
    assert resumed.returncode == 0, resumed.stderr
    [note] = [line for line in resumed.stderr.splitlines() if "resuming after" in line]
    skipped = int(re.search(r"the (\d+) members", note).group(1))
    assert 500 <= skipped < 1500 and skipped % 500 == 0  # whole groups, each committed with its mark
    # The members after the mark are read, and only they: none of them had been stored.
    assert f"{1500 - skipped} new, 0 changed, 0 unchanged, 0 failed" in resumed.stderr
    assert len(stored_hashes(root)) == 1500 and raw_disagreements(root) == []
    # Finished, the archive's mark is gone: the next import reads it whole.
    assert "0 new, 0 changed, 1500 unchanged, 0 failed" in eligex(env, "import", str(archive)).stderr
