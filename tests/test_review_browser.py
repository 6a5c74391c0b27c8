"""A reviewer's session in a real browser (Debian's Chromium, Playwright): open a trial from the list,
correct a lab threshold, delete a spurious item, add a missed biomarker by selecting its words, mark
the trial reviewed; the gold file is valid and `eligex eval` scores against it; undo restores it all.

With ELIGEX_UPDATE_SCREENSHOT=1 the trial page's screenshot is written to docs/ for the README.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Page, expect

from extract.evaluate import harness
from extract.review.workbench import Workbench
from schemas.gold import GoldFile
from tests.browser import chromium, watched
from tests.review_fixtures import NEW, PAYLOAD, make_evals, make_workspace, serving

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "review-trial.png"


def entry(page: Page, field: str, words: str):
    return page.locator(f"#f-{field} li.entry", has_text=words)


def select_words(page: Page, criterion: str, words: str) -> None:
    """Drag the mouse over `words` in the criterion, as a reviewer selects them."""
    box = page.evaluate(
        """([criterion, words]) => {
            const text = document.querySelector(`#${criterion} .ctext`);
            text.scrollIntoView({block: "center"});
            const node = text.firstChild;
            const start = node.textContent.indexOf(words);
            const range = document.createRange();
            range.setStart(node, start);
            range.setEnd(node, start + words.length);
            const rects = range.getClientRects();
            const first = rects[0], last = rects[rects.length - 1];
            return {x0: first.left + 1, y0: (first.top + first.bottom) / 2, x1: last.right - 1, y1: (last.top + last.bottom) / 2};
        }""",
        [criterion, words],
    )
    page.mouse.move(box["x0"], box["y0"])
    page.mouse.down()
    page.mouse.move(box["x1"], box["y1"], steps=5)
    page.mouse.up()


def test_a_reviewer_corrects_a_trial_and_marks_it_reviewed(tmp_path):
    workspace, run_id = make_workspace(tmp_path)
    evals = make_evals(tmp_path)
    gold_path = evals / "gold" / f"{NEW}.json"
    workbench = Workbench(workspace, evals, reviewer="browser")
    with serving(workbench) as url, chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        problems = watched(page)
        page.goto(f"{url}/?gold=no")
        page.get_by_role("link", name=NEW).click()
        expect(page).to_have_title(f"eligex review: {NEW}")
        expect(page.locator("#exc-2 .ctext")).to_contain_text(PAYLOAD)  # markup shown as text, never run

        page.evaluate("window.kept = true")  # survives only if htmx swaps the page instead of reloading it

        # a lab threshold: "3 times the upper limit" is a multiple of ULN, not a value of 3
        ast = entry(page, "labs", "ast <= 3")
        ast.get_by_role("link", name="edit").click()
        form = page.locator("form.item-form")
        form.locator("input[name=uln_multiple]").fill("3")
        form.get_by_role("button", name="Save").click()  # the value is still there: the contract says no
        expect(page.locator("#problems")).to_contain_text("a lab threshold is a value or a multiple of ULN, not both")
        assert f"/trial/{NEW}?edit=labs:" in page.url  # the form's address, not the POST's
        form = page.locator("form.item-form")
        expect(form.locator("input[name=uln_multiple]")).to_have_value("3")  # what was typed stays
        form.locator("input[name=value]").fill("")
        form.get_by_role("button", name="Save").click()
        expect(entry(page, "labs", "ast <= uln multiple 3")).to_contain_text("edited")
        assert page.evaluate("window.kept") is True
        assert page.url.endswith(f"/trial/{NEW}")  # back on the trial (an XHR drops the #fragment)

        # a spurious item: "below 50 mL/min is not a reason for exclusion" is no threshold
        entry(page, "labs", "creatinine_clearance").get_by_role("button", name="delete").click()
        expect(entry(page, "labs", "creatinine_clearance")).to_have_count(0)

        # a missed biomarker, its evidence by selecting the words in the criterion
        page.locator('a[data-add="biomarkers"]').click()
        form = page.locator("form.item-form")
        form.locator("select[name=requirement]").select_option("required")
        for row, marker in enumerate(("BRCA1", "BRCA2")):
            form.locator(f'input[name="any_of.{row}.marker"]').fill(marker)
            form.locator(f'select[name="any_of.{row}.status"]').select_option("positive")
            form.locator(f'select[name="any_of.{row}.alteration"]').select_option("mutation")
        select_words(page, "inc-2", "Germline BRCA carrier status")
        expect(form.locator('textarea[name="evidence.quote"]')).to_have_value("Germline BRCA carrier status")
        expect(form.locator('select[name="evidence.criterion_id"]')).to_have_value("inc-2")
        form.get_by_role("button", name="Save").click()
        added = entry(page, "biomarkers", "BRCA1")
        expect(added).to_contain_text("required BRCA1 positive mutation OR BRCA2 positive mutation")
        expect(added).to_contain_text("added")
        expect(page.locator("#inc-2 mark.evidence")).to_have_text("Germline BRCA carrier status")
        expect(page.locator("#f-other")).not_to_contain_text("inc-2")  # no longer left over

        if os.environ.get("ELIGEX_UPDATE_SCREENSHOT"):
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=tmp_path / "trial.png")
            shutil.copy(tmp_path / "trial.png", SCREENSHOT)

        page.locator("input[name=source]").fill("evals/records")
        page.locator("input[name=category]").fill("breast-brca")
        page.get_by_role("button", name="Mark trial reviewed").click()
        expect(page.locator("#review-state")).to_have_text("reviewed")

        gold = GoldFile.model_validate_json(gold_path.read_bytes()).model_dump(mode="json")["eligibility"]
        labs = {(lab["analyte"], lab["value"], lab["uln_multiple"]) for lab in gold["labs"]}
        assert ("ast", None, 3.0) in labs and not any(lab[0] == "creatinine_clearance" for lab in labs)
        assert [t["marker"] for rule in gold["biomarkers"] for t in rule["any_of"]] == ["BRCA1", "BRCA2"]
        assert NEW in harness.split_ids("all", evals / "splits.json")

        with workspace.writing():  # what `eligex eval` does, on the gold just written
            metrics, _ = harness.evaluate_run(workspace, run_id, [NEW], "all", harness.load_gold(evals / "gold"))
        assert metrics["n_trials"] == 1
        assert metrics["fields"]["biomarkers"]["fn"] == 2  # the rules missed BRCA1 and BRCA2
        assert metrics["fields"]["labs"]["fp"] == 2  # AST read as a value, creatinine clearance
        assert metrics["fields"]["labs"]["tp"] == 1  # ALT

        # undo, newest first: the gold file and its split go, then each correction
        page.locator("#undo").click()
        expect(page.locator("#review-state")).to_have_text("not reviewed")
        assert not gold_path.exists() and NEW not in harness.split_ids("all", evals / "splits.json")
        for undone in ("add biomarkers", "delete labs", "edit labs"):
            expect(page.locator("#undo")).to_have_text(f"Undo {undone}")
            page.locator("#undo").click()
        expect(page.locator("#undo")).to_have_count(0)
        expect(entry(page, "labs", "creatinine_clearance")).to_contain_text("extracted")
        expect(entry(page, "labs", "ast <= 3")).to_contain_text("extracted")
        expect(page.locator("#f-biomarkers li.entry")).to_have_count(0)
        assert page.title() == f"eligex review: {NEW}"
        assert problems == ["console error: Failed to load resource: the server responded with a status of 422 "
                            "(Unprocessable Entity)"]  # the refused save, nothing else
