"""report.html and compare.html in a real browser (Debian's Chromium, Playwright): they render with no
console errors and no script, markup in criteria (untrusted registry text) shows as text, the index
links every trial to the registry and to `eligex review`, and its filters (plain CSS) work."""

from __future__ import annotations

from playwright.sync_api import expect

from extract.evaluate.report import render_comparison_html, render_html
from extract.evaluate.scoring import score_trial, summarise
from extract.review import REVIEW_URL
from tests.browser import chromium, watched

PAYLOAD = '<script>document.title = "pwned"; console.error("injected")</script><img src=x onerror="alert(1)">'
TEXT = f"Inclusion Criteria:\n\n* ECOG 0-1 {PAYLOAD}\n* Measurable disease per RECIST 1.1\n\nExclusion Criteria:\n\n* Prior chemotherapy"
PLAIN = "Inclusion Criteria:\n\n* ECOG 0-1"
BAD, GOOD = "NCT00000001", "NCT00000002"


def evidence(text: str, quote: str, criterion: str) -> dict:
    start = text.index(quote)
    return {"criterion_id": criterion, "quote": quote, "start": start, "end": start + len(quote)}


def record(text: str, **eligibility) -> dict:
    from extract.text import segment

    criteria = [c.model_dump() for c in segment(text)]
    return {"eligibility_text": text, "criteria": criteria, "eligibility": eligibility, "extraction": {"ungrounded_items": 0}}


ECOG = [{"scale": "ECOG", "min": 0, "max": 1, "evidence": evidence(TEXT, "ECOG 0-1", "inc-1")}]
MEASURABLE = {"required": True, "standard": "RECIST 1.1", "evidence": evidence(TEXT, "Measurable disease", "inc-2")}
GOLD = {
    BAD: {"performance_status": [{"scale": "ECOG", "min": 0, "max": 1, "evidence": {"quote": "ECOG 0-1"}}],
          "measurable_disease": {"required": True, "standard": "RECIST 1.1", "evidence": {"quote": "Measurable disease"}},
          "prior_therapies": [{"requirement": "excluded", "therapy": "chemotherapy", "evidence": {"quote": "Prior chemotherapy"}}]},
    GOOD: {"performance_status": [{"scale": "ECOG", "min": 0, "max": 1, "evidence": {"quote": "ECOG 0-1"}}]},
}  # fmt: skip
RUN_A = {  # finds ECOG, misses measurable disease, gets prior chemotherapy's polarity wrong, invents brain metastases
    BAD: record(TEXT, performance_status=ECOG, brain_metastases={"status": "excluded", "evidence": evidence(TEXT, PAYLOAD, "inc-1")},
                prior_therapies=[{"requirement": "required", "therapy": "chemotherapy",
                                  "evidence": evidence(TEXT, "Prior chemotherapy", "exc-1")}]),
    GOOD: record(PLAIN, performance_status=[{"scale": "ECOG", "min": 0, "max": 1, "evidence": evidence(PLAIN, "ECOG 0-1", "inc-1")}]),
}  # fmt: skip
RUN_B = {BAD: record(TEXT, measurable_disease=MEASURABLE), GOOD: RUN_A[GOOD]}  # finds measurable disease, loses ECOG


def metrics(run_id: str, records: dict) -> dict:
    trials = [score_trial(nct_id, GOLD[nct_id], records[nct_id]) for nct_id in (BAD, GOOD)]
    return {"run": {"run_id": run_id, "backend": "rules", "model": None, "prompt_version": PAYLOAD},
            "split": "dev", "resamples": 10, "seed": 0, **summarise(trials, 10), "trials": trials}  # fmt: skip


DOM_FACTS = """() => ({
    scripts: document.scripts.length, images: document.images.length, text: document.body.innerText,
    marks: [...document.querySelectorAll('mark')].map(m => m.className),
    ids: [...document.querySelectorAll('section.trial .cid')].map(c => c.textContent),
})"""


def test_report_index_filters_and_text(tmp_path):
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(metrics("run-1", RUN_A), {BAD: TEXT, GOOD: PLAIN}))
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        problems = watched(page)
        page.goto(page_file.as_uri())
        page.wait_for_timeout(300)  # late errors (a failing image, an onerror handler) would arrive now
        seen = page.evaluate(DOM_FACTS)
        assert page.title() == "eligex eval: run-1"
        assert seen["scripts"] == 0 and seen["images"] == 0
        assert PAYLOAD in seen["text"]  # the criterion's markup is shown, as text
        assert {"found", "spurious", "missed"} <= set(seen["marks"])
        assert seen["ids"][:4] == ["inc-1", "inc-2", "exc-1", "inc-1"]  # criterion ids in the text

        polarity = page.locator("#polarity tbody tr")
        expect(polarity).to_have_count(1)
        expect(polarity).to_contain_text("required chemotherapy")
        rows = {nct_id: page.locator(f'#index tr[data-nct="{nct_id}"]') for nct_id in (BAD, GOOD)}
        expect(rows[GOOD]).to_contain_text("1.000")  # per-trial F1
        expect(rows[BAD].locator("td").nth(1)).to_have_text("0.333")  # 2 found, 2 spurious, 2 missed
        review = rows[BAD].get_by_role("link", name="review")
        assert review.get_attribute("href") == f"{REVIEW_URL}/trial/{BAD}?run=run-1"
        assert rows[BAD].get_by_role("link", name="registry").get_attribute("href") == f"https://clinicaltrials.gov/study/{BAD}"

        page.locator("#misses-only").check()
        expect(rows[GOOD]).to_be_hidden()
        expect(page.locator(f"section#{GOOD}")).to_be_hidden()
        expect(rows[BAD]).to_be_visible()
        page.locator("#field-labs").check()  # no lab misses anywhere
        expect(rows[BAD]).to_be_hidden()
        page.locator("#field-measurable_disease").check()
        expect(rows[BAD]).to_be_visible()
        page.locator("#misses-only").uncheck()
        page.locator("#field-brain_metastases").check()  # spurious there, not missed
        expect(rows[BAD]).to_be_visible()
        expect(rows[GOOD]).to_be_hidden()
        page.locator("#misses-only").check()
        expect(rows[BAD]).to_be_hidden()
        page.locator("#field-all").check()
        page.locator("#misses-only").uncheck()
        expect(rows[GOOD]).to_be_visible()
        assert problems == []


def test_compare_page_shows_what_each_trial_gained_and_lost(tmp_path):
    page_file = tmp_path / "compare.html"
    page_file.write_text(render_comparison_html(metrics("run-a", RUN_A), metrics("run-b", RUN_B), "run-a", "run-b"))
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        problems = watched(page)
        page.goto(page_file.as_uri())
        assert page.title() == "eligex compare: run-a → run-b"
        assert page.evaluate(DOM_FACTS)["scripts"] == 0
        expect(page.locator("#deltas tr.micro")).to_contain_text("micro")
        changed = page.locator("section.trial")
        expect(changed).to_have_count(1)  # the other trial is the same in both runs
        trial = page.locator(f"section#{BAD}")
        expect(trial.locator("li.broke")).to_have_text(["now missed: performance_status ECOG 0-1 ECOG 0-1"])  # fact, then quote
        fixed = trial.locator("li.fixed")
        expect(fixed.filter(has_text="now found: measurable_disease required")).to_contain_text("Measurable disease")
        expect(fixed.filter(has_text="no longer extracted: brain_metastases excluded")).to_contain_text(PAYLOAD)
        expect(fixed.filter(has_text="no longer extracted: prior_therapies required chemotherapy")).to_have_count(1)
        assert trial.get_by_role("link", name="review").get_attribute("href") == f"{REVIEW_URL}/trial/{BAD}?run=run-b"
        assert problems == []
