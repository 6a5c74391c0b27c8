"""`eligex review` over HTTP: every route, the CSRF and host checks, bad ids, corrections with their
audit rows and undo, gold files and splits, the queue, and concurrent saves of one trial."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from starlette.testclient import TestClient

from extract.evaluate import harness
from extract.review.app import create_app
from extract.review.server import bind, is_loopback
from extract.review.workbench import Filters, Workbench
from schemas.gold import GoldFile
from tests.conftest import run
from tests.review_fixtures import GOLD, NEW, PAYLOAD, hidden, make_evals, make_workspace, serving


@pytest.fixture
def setup(tmp_path):
    workspace, run_id = make_workspace(tmp_path)
    evals = make_evals(tmp_path)
    workbench = Workbench(workspace, evals, reviewer="tester", wait_seconds=0.2)
    client = TestClient(create_app(workbench), base_url="http://127.0.0.1", follow_redirects=False)
    return workbench, client, evals, run_id


def page(client, nct_id=NEW, query="") -> str:
    response = client.get(f"/trial/{nct_id}{query}")
    assert response.status_code == 200, response.text
    return response.text


def post(client, nct_id, path, html, **data):
    fields = {"csrf": hidden(html, "csrf"), "version": hidden(html, "version"), **data}
    return client.post(f"/trial/{nct_id}/{path}", data=fields)


def entries(workbench, field, nct_id=NEW):
    return workbench.trial_page(nct_id)["draft"][field]


def find(workbench, field, predicate, nct_id=NEW) -> int:
    return next(i for i, e in enumerate(entries(workbench, field, nct_id)) if predicate(e["value"]))


def test_every_page_renders(setup):
    workbench, client, _, run_id = setup
    for url in ("/", "/queue", f"/trial/{NEW}", f"/trial/{GOLD}", f"/trial/{NEW}?edit=labs:0", f"/trial/{NEW}?add=biomarkers",
                f"/trial/{NEW}?run={run_id}", "/static/htmx.min.js", "/static/review.js", "/static/review.css"):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 200, url
        assert "default-src 'none'" in response.headers["content-security-policy"]
    assert client.get("/queue/next").headers["location"] == f"/trial/{NEW}"  # no gold yet: first
    assert client.get(f"/queue/next?skip={NEW}").headers["location"] == f"/trial/{GOLD}"
    trial = page(client)
    assert 'id="inc-3"' in trial and "AST and ALT no more than 3" in trial
    assert 'href="https://clinicaltrials.gov/study/NCT06450314"' in page(client, GOLD)
    assert "Against gold:" in page(client, GOLD) and "Against gold:" not in trial


def test_the_edit_form_comes_from_the_contract(setup):
    _, client, _, _ = setup
    html = page(client, query="?add=labs")
    assert '<select name="analyte">' in html and "<option>creatinine_clearance</option>" in html  # enum: choices
    assert 'type="number" name="value" step="any" min="0"' in html  # numbers: numbers, with their bound
    html = page(client, query="?add=biomarkers")
    assert 'name="any_of.0.marker"' in html and 'name="any_of.rows" value="2"' in html  # alternatives: rows
    assert 'name="evidence.quote"' in html and 'name="evidence.criterion_id"' in html
    assert 'type="checkbox" name="settings" value="metastatic"' in page(client, query="?add=stage")  # lists of choices


def test_criterion_markup_is_shown_as_text(setup):
    _, client, _, _ = setup
    html = page(client)
    assert PAYLOAD not in html
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in html


def test_writes_need_the_csrf_token(setup):
    workbench, client, _, _ = setup
    html = page(client)
    data = {"version": hidden(html, "version"), "field": "labs", "action": "delete", "index": "0"}
    assert client.post(f"/trial/{NEW}/correct", data=data).status_code == 403
    assert client.post(f"/trial/{NEW}/correct", data=data | {"csrf": "forged"}).status_code == 403
    assert client.post(f"/trial/{NEW}/undo", data={"version": data["version"]}).status_code == 403
    assert client.post(f"/trial/{NEW}/reviewed", data={"source": "x", "category": "y"}).status_code == 403
    assert client.get(f"/trial/{NEW}/correct").status_code == 405  # writes are POST only
    with workbench.workspace.writing():
        assert workbench.workspace.audit() == []


def test_other_hosts_are_refused(setup):
    _, client, _, _ = setup
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400  # DNS rebinding
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_bad_ids_and_fields_are_not_found(setup):
    workbench, client, _, _ = setup
    for url in ("/trial/NCT123", "/trial/nct09000001", "/trial/NCT99999999", "/trial/..%2F..%2Fetc%2Fpasswd",
                f"/trial/{NEW}?run=no-such-run"):  # fmt: skip
        assert client.get(url).status_code == 404, url
    html = page(client)
    assert post(client, "NCT123", "correct", html, field="labs", action="delete", index="0").status_code == 404
    assert post(client, "../gold", "reviewed", html, source="x", category="y").status_code == 404
    assert post(client, NEW, "correct", html, field="evidence", action="delete", index="0").status_code == 404
    assert post(client, NEW, "correct", html, field="labs", action="delete", index="99").status_code == 422
    with workbench.workspace.writing():
        assert workbench.workspace.audit() == []


def test_corrections_are_audited_and_undone_in_turn(setup):
    workbench, client, _, run_id = setup
    original = workbench.trial_page(NEW)["draft"]
    ast = find(workbench, "labs", lambda v: v["analyte"] == "ast")
    assert entries(workbench, "labs")[ast]["value"]["uln_multiple"] is None  # the extractor read "3" as a value

    edit = page(client, query=f"?edit=labs:{ast}")
    assert 'value="3"' in edit
    form = {"field": "labs", "action": "edit", "index": str(ast), "analyte": "ast", "comparator": "<=",
            "uln_multiple": "3", "evidence.quote": "AST and ALT no more than 3 times the upper limit"}  # fmt: skip
    bad = post(client, NEW, "correct", edit, **form, value="three")
    assert bad.status_code == 422 and "valid number" in bad.text and 'value="three"' in bad.text
    both = post(client, NEW, "correct", edit, **form, value="3")
    assert both.status_code == 422 and "not both" in both.text
    nowhere = post(client, NEW, "correct", edit, **form | {"evidence.quote": "words not in the text"})
    assert nowhere.status_code == 422 and "not in the eligibility text" in nowhere.text
    saved = post(client, NEW, "correct", edit, **form)
    assert saved.status_code == 303 and saved.headers["location"] == f"/trial/{NEW}#f-labs"
    corrected = entries(workbench, "labs")[ast]
    assert corrected["status"] == "edited"
    assert corrected["value"] | {"evidence": None} == {"analyte": "ast", "comparator": "<=", "value": None, "unit": None,
                                                       "uln_multiple": 3.0, "condition": None, "evidence": None}
    assert corrected["value"]["evidence"]["criterion_id"] == "inc-3"  # from the aligner

    html = page(client)
    spurious = find(workbench, "labs", lambda v: v["analyte"] == "creatinine_clearance")
    assert post(client, NEW, "correct", html, field="labs", action="delete", index=str(spurious)).status_code == 303
    html = page(client)
    assert post(client, NEW, "correct", html, field="cancer_types", action="accept", index="0").status_code == 303
    html = page(client)
    added = post(client, NEW, "correct", html, field="biomarkers", action="add", requirement="required",
                 **{"any_of.rows": "3", "any_of.0.marker": "BRCA1", "any_of.0.status": "positive",
                    "any_of.0.alteration": "mutation", "any_of.1.marker": "BRCA2", "any_of.1.status": "positive",
                    "any_of.1.alteration": "mutation", "evidence.quote": "germline brca carrier status",
                    "evidence.criterion_id": "inc-2"})  # fmt: skip
    assert added.status_code == 303, added.text
    rule = entries(workbench, "biomarkers")[-1]
    assert rule["status"] == "added" and [t["marker"] for t in rule["value"]["any_of"]] == ["BRCA1", "BRCA2"]
    assert rule["value"]["evidence"] == {"quote": "Germline BRCA carrier status", "criterion_id": "inc-2"}

    with workbench.workspace.writing():
        audit = workbench.workspace.audit(NEW)
    assert [(r["field"], r["action"]) for r in audit] == [("labs", "edit"), ("labs", "delete"),
                                                          ("cancer_types", "accept"), ("biomarkers", "add")]  # fmt: skip
    assert all(r["reviewer"] == "tester" and r["run_id"] is None for r in audit)
    assert audit[1]["before"][spurious]["value"]["analyte"] == "creatinine_clearance"
    assert len(audit[1]["after"]) == len(audit[1]["before"]) - 1

    for _ in audit:
        html = page(client)
        assert post(client, NEW, "undo", html).status_code == 303
    assert workbench.trial_page(NEW)["draft"] == original
    nothing = post(client, NEW, "undo", page(client))
    assert nothing.status_code == 422 and "nothing to undo" in nothing.text
    assert run_id  # the rules run the records came from


def test_a_stale_page_cannot_save(setup):
    workbench, client, _, _ = setup
    html = page(client)
    assert post(client, NEW, "correct", html, field="labs", action="delete", index="0").status_code == 303
    stale = post(client, NEW, "correct", html, field="labs", action="delete", index="0")
    assert stale.status_code == 409 and "reload" in stale.text
    with workbench.workspace.writing():
        assert len(workbench.workspace.audit(NEW)) == 1


def test_concurrent_saves_of_one_trial(setup):
    """Two saves from the same page at once: one is written, the other is told to reload; never both."""
    workbench, _, _, _ = setup
    with serving(workbench) as url:
        html = httpx.get(f"{url}/trial/{NEW}").text
        data = {"csrf": hidden(html, "csrf"), "version": hidden(html, "version"), "field": "labs", "action": "delete"}
        statuses, start = [], threading.Barrier(4)

        def save(index: int) -> None:
            start.wait()
            statuses.append(httpx.post(f"{url}/trial/{NEW}/correct", data=data | {"index": str(index % 2)}).status_code)

        threads = [threading.Thread(target=save, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(statuses) == [303, 409, 409, 409]
    with workbench.workspace.writing():
        assert len(workbench.workspace.audit(NEW)) == 1


def test_marking_reviewed_writes_valid_gold_with_a_split_and_undo_removes_it(setup):
    workbench, client, evals, run_id = setup
    splits_before = (evals / "splits.json").read_text()
    html = page(client)
    missing = post(client, NEW, "reviewed", html, source=" ", category="breast-her2")
    assert missing.status_code == 422 and "source" in missing.text
    assert not (evals / "gold" / f"{NEW}.json").exists()

    done = post(client, NEW, "reviewed", html, source="evals/records", category="breast-her2")
    assert done.status_code == 303
    path = evals / "gold" / f"{NEW}.json"
    gold = GoldFile.model_validate_json(path.read_bytes())
    assert gold.nct_id == NEW and gold.category == "breast-her2" and gold.eligibility.sex == "FEMALE"
    assert harness.read_gold(path)["eligibility"]["min_age_years"] == 18
    splits = json.loads((evals / "splits.json").read_text())
    assert NEW in splits["dev"] + splits["test"]
    assert json.loads(splits_before) == {k: [i for i in v if i != NEW] for k, v in splits.items()}  # none moved
    assert "reviewed" in page(client) and workbench.trial_rows(Filters(reviewed="yes"))["rows"][0]["nct_id"] == NEW
    assert NEW not in [e["nct_id"] for e in workbench.queue()]

    assert post(client, NEW, "undo", page(client)).status_code == 303
    assert not path.exists()
    assert (evals / "splits.json").read_text() == splits_before
    assert NEW in [e["nct_id"] for e in workbench.queue()]
    assert run_id


def test_re_reviewing_a_gold_trial_keeps_its_split_and_undo_restores_the_file(setup):
    workbench, client, evals, _ = setup
    path = evals / "gold" / f"{GOLD}.json"
    original, splits = path.read_bytes(), (evals / "splits.json").read_bytes()
    html = page(client, GOLD)
    assert 'name="source" list="sources" value="evals/records"' in html  # the gold file's own labels
    assert post(client, GOLD, "correct", html, field="labs", action="delete", index="0").status_code == 303
    assert post(client, GOLD, "reviewed", page(client, GOLD), source="evals/records", category="seed").status_code == 303
    assert path.read_bytes() != original and (evals / "splits.json").read_bytes() == splits
    path.write_text(path.read_text().replace('"seed"', '"edited-by-hand"'))
    refused = post(client, GOLD, "undo", page(client, GOLD))
    assert refused.status_code == 422 and "changed since" in refused.text
    path.write_text(path.read_text().replace('"edited-by-hand"', '"seed"'))
    assert post(client, GOLD, "undo", page(client, GOLD)).status_code == 303
    assert json.loads(path.read_bytes()) == json.loads(original)


def test_the_trial_list_filters_sorts_and_searches(setup):
    workbench, client, _, run_id = setup

    def ids(query: str) -> list[str]:
        html = client.get(f"/?{query}").text
        return [line.split('"')[1] for line in html.splitlines() if line.startswith("<tr data-nct=")]

    assert ids("") == [GOLD, NEW]
    assert ids("gold=yes") == [GOLD] and ids("gold=no") == [NEW]
    assert ids("q=review+tests") == [NEW] and ids("q=nct0645") == [GOLD] and ids("q=haematological") == [GOLD]
    # the rules left criteria of the new trial in `other`, and of the seed its second HER2 definition
    # (folded into the one HER2 rule, which quotes the first)
    assert ids("other=1") == [GOLD, NEW]
    assert ids("backend=ecog-only") == [GOLD, NEW] and ids("backend=ecog-only&field=performance_status") == []
    assert ids("backend=ecog-only&misses=1") == [GOLD] and ids("misses=1") == [] and ids("spurious=1") == []  # the rules now match the seed's gold
    assert ids(f"run={run_id}&sort=nct_id&desc=1") == sorted([NEW, GOLD], reverse=True)
    rows = {r["nct_id"]: r for r in workbench.trial_rows(Filters())["rows"]}
    assert (rows[GOLD]["missed"], rows[GOLD]["spurious"]) == (0, 0) and rows[NEW]["missed"] is None  # no gold: no count
    assert ids("field=labs") == sorted([NEW, GOLD]) and ids("field=measurable_disease&gold=no") == []


def test_a_study_removed_from_the_registry_is_said_in_the_list_and_on_its_page(setup):
    workbench, client, _, _ = setup
    with workbench.workspace.writing():
        assert workbench.workspace.mark_removed(GOLD, "the registry answered 404 (not found) for its id")

    rows = {chunk.split('"')[0]: chunk.split("</tr>")[0] for chunk in client.get("/").text.split('<tr data-nct="')[1:]}
    assert "removed from the registry" in rows[GOLD] and "removed from the registry" not in rows[NEW]
    assert "removed from the registry: the registry answered 404" in page(client, GOLD)
    assert "removed from the registry" not in page(client, NEW)


def test_the_queue_puts_trials_without_gold_and_disagreement_first(setup):
    workbench, _, _, _ = setup
    queue = workbench.queue()
    assert [e["nct_id"] for e in queue] == [NEW, GOLD]
    assert queue[0]["gold"] is False and queue[1]["gold"] is True
    assert queue[0]["disagreements"] > 0  # the rules and the ECOG-only backend disagree


def test_a_busy_workspace_is_one_clear_page(setup):
    workbench, client, _, _ = setup
    with workbench.workspace.writing():  # another eligex process would hold this lock
        response = client.get("/")
    assert response.status_code == 503 and "in use by another eligex process" in response.text


def test_the_command_checks_its_options(setup, tmp_path):
    workbench, _, evals, _ = setup
    workspace = str(workbench.workspace.root)
    result = run("--workspace", workspace, "review", "--run", "nope", "--no-browser")
    assert result.exit_code == 2 and "no run 'nope'" in result.stderr
    result = run("--workspace", str(tmp_path / "empty"), "review", "--no-browser")
    assert result.exit_code == 2 and "no trials" in result.stderr
    with bind("127.0.0.1", 0) as busy:
        port = str(busy.getsockname()[1])
        result = run("--workspace", workspace, "review", "--port", port, "--evals", str(evals), "--no-browser")
    assert result.exit_code == 2 and f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
