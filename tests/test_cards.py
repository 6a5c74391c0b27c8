"""The trial card and its FAQ (`eligex show --format card|html`, `eligex export --format cards`)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from markdown_it import MarkdownIt

from extract.cards import card, render
from extract.pipeline import extract_one
from extract.rules import RulesBackend
from extract.sources import RawRecord, parse_document
from schemas import EligibilityRecord

from conftest import run
from test_match import RECORDS, gold_record

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "trials"


def rules_record(path: Path, nct_id: str | None = None, data: bytes | None = None) -> EligibilityRecord:
    """The record the rules backend makes of a trial, as `eligex extract` would."""
    parsed = [p for p in parse_document(data or path.read_bytes(), path.name) if isinstance(p, RawRecord)]
    [raw] = [p for p in parsed if nct_id is None or p.trial.nct_id == nct_id]
    record = asyncio.run(extract_one(RulesBackend(), raw.trial))
    assert isinstance(record, EligibilityRecord), record
    return record


@pytest.fixture(scope="module")
def seed() -> EligibilityRecord:
    return gold_record("NCT06450314", RECORDS)


def section(markdown: str, title: str) -> str:
    """The lines of one `### title` section of a Markdown card."""
    return markdown.split(f"### {title}\n", 1)[1].split("\n#", 1)[0]


def bullets(text: str) -> list[str]:
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


def questions(markdown: str) -> list[str]:
    faq = markdown.split("## Frequently asked questions", 1)[1]
    return re.findall(r"^\*\*(.+\?)\*\*$", faq, flags=re.MULTILINE)


# -- the seed trial, as its gold file structures it --------------------------------------------------


def test_the_seed_her2_rule_is_one_requirement_with_both_alternatives(seed):
    markdown = render(seed, "card")
    [her2] = bullets(section(markdown, "Biomarker criteria"))
    assert her2.startswith("**Required**: HER2-positive (ERBB2): IHC 3+ overexpression **or** amplification — inc-2: ")
    assert "“HER2-positive is defined as HER2 3+ immunohistochemical overexpression”" in her2
    assert markdown.count("HER2-positive (ERBB2)") == 2  # the section, and the FAQ's answer: no second "Required"
    html = BeautifulSoup(render(seed, "html"), "html.parser")
    [item] = [li for li in html.select("section li") if li.get_text().startswith("Required: HER2-positive")]
    assert [b.get_text() for b in item.select("b.or")] == ["or"]
    assert "IHC 3+ overexpression or amplification" in item.get_text()


def test_the_seed_prior_therapy_keeps_its_duration_and_setting(seed):
    [therapy] = bullets(section(render(seed, "card"), "Prior therapy"))
    assert therapy.startswith(
        "**Must have received**: anti-her2 therapy (trastuzumab, pertuzumab, trastuzumab deruxtecan, trastuzumab emtansine), "
        "for at least 24 months (2 years), in the metastatic setting — inc-4: “Patient must have received continuous"
    )
    assert "any line" not in therapy


def test_adequate_organ_function_without_numbers_is_shown_as_such(seed):
    labs = section(render(seed, "card"), "Lab requirements")
    assert bullets(labs) == [
        f"Adequate {organ} function, no threshold stated — inc-{n}: “adequate {written} function according to guidelines hospital”"
        for n, organ, written in ((5, "hematologic", "haematological"), (6, "renal", "renal"), (7, "hepatic", "hepatic"),
                                  (8, "cardiac", "cardiac"))
    ]  # fmt: skip
    assert "≥" not in labs and "≤" not in labs
    assert ["*Blood counts*", "*Kidney function*", "*Liver function*", "*Cardiac function*"] == re.findall(r"^\*.+\*$", labs, re.M)


def test_the_seed_faq_answers_only_what_the_record_can_and_quotes_its_evidence(seed):
    markdown = render(seed, "card")
    assert questions(markdown) == [
        "Is prior treatment required?", "Which biomarkers are required or excluded?", "Which disease stage is eligible?",
    ]  # fmt: skip
    # the seed record is a plain row: no registry status, so "is it recruiting" is not guessed; no ECOG, no brain metastases
    assert "recruiting" not in markdown.lower() and "ECOG" not in markdown
    faq = markdown.split("## Frequently asked questions", 1)[1].split("\n---\n")[0]
    answers = bullets(faq)
    assert len(answers) == 3 and all(re.search(r" — inc-\d+: “[^”]+”$", answer) for answer in answers)
    assert "Yes." in faq


def test_criteria_nothing_structured_are_listed_as_other(seed):
    markdown = render(seed, "card")
    other = section(markdown, "Other criteria")
    assert bullets(other) == [
        "inc-3 (inclusion): HER2-positive is defined as...the presence of HER2 amplification, according to ASCO-CAP guidelines"
    ]
    assert "eligex found nothing on: performance status, brain metastases, measurable disease, ages and sex." in markdown


def test_the_caveat_names_the_backend_and_its_version(seed):
    markdown = render(seed, "card")
    caveat = markdown.rsplit("\n---\n", 1)[1]
    assert "Structured by software (eligex " in caveat and "the gold backend, version gold" in caveat
    assert "official protocol" in caveat
    record = rules_record(RECORDS)
    assert f"the rules backend, version {record.extraction.prompt_version}" in render(record, "html")


# -- what the rules backend makes of the seed today ---------------------------------------------------


def test_the_rules_record_of_the_seed_shows_every_item_once_and_no_question_twice():
    record = rules_record(RECORDS)
    eligibility = record.eligibility
    # one HER2 rule whose alternatives are the definition's tests, one anti-HER2 therapy (issue 9 §2)
    assert len(eligibility.biomarkers) == 1 and len(eligibility.prior_therapies) == 1
    assert len(eligibility.biomarkers[0].any_of) == 2
    markdown = render(record, "card")
    structured = markdown.split("## Eligibility criteria", 1)[1].split("### Other criteria", 1)[0]
    items = [*eligibility.cancer_types, *eligibility.biomarkers, eligibility.stage, *eligibility.prior_therapies,
             *eligibility.labs]  # fmt: skip
    shown = bullets(structured)
    assert len(shown) == len(items)
    for item in items:
        assert sum(line.endswith(f"— {item.evidence.criterion_id}: “{item.evidence.quote}”") for line in shown) == 1
    names = questions(markdown)
    assert len(names) == len(set(names)) and names.count("Which biomarkers are required or excluded?") == 1
    assert "Every rule below must hold" not in markdown  # one rule: nothing to combine
    html = render(record, "html")
    # and inc-3, the definition's second way of being HER2-positive, with the criteria no item quotes
    listed = BeautifulSoup(html, "html.parser").select("section ul > li")
    assert len(listed) == len(items) + 1 and "HER2 amplification" in listed[-1].get_text()


@pytest.mark.parametrize("path", sorted((EXAMPLES / "ctgov-v2").glob("*.json"))[:8] + sorted((EXAMPLES / "ctgov-classic-xml").glob("*.xml"))[:8],
                         ids=lambda path: path.stem)  # fmt: skip
def test_every_criterion_of_a_real_trial_is_on_its_card(path):
    record = rules_record(path)
    markdown, html = render(record, "card"), render(record, "html")
    named = set(re.findall(r"(?:inc|exc)-\d+", markdown))
    assert {c.id for c in record.criteria} <= named  # structured with its quote, or listed as other
    names = questions(markdown) if "## Frequently" in markdown else []
    assert len(names) == len(set(names))
    assert html.startswith("<!DOCTYPE html>") and html.count("<h1>") == 1


# -- study facts in the header, and the recruiting question -------------------------------------------


def test_the_header_shows_the_study_facts_and_the_faq_the_registry_status():
    record = rules_record(EXAMPLES / "ctgov-v2" / "NCT06388018.json")
    facts = dict(card(record).facts)
    assert facts["Status"] == "Recruiting" and facts["Phase"] == "Phase 2"
    assert facts["Enrollment"] == "325 participants (estimated)"
    assert facts["Start"] == "2025-01-16 (estimated)" and facts["Completion"] == "2027-01-16 (estimated)"
    assert facts["Design"] == "non randomized, parallel, treatment, open label"
    assert facts["Collaborators"] == "National Cancer Institute (NCI); Canadian Cancer Trials Group (CCTG)"
    assert facts["Countries"] == "United States" and facts["Sites"] == "1 site, 1 recruiting"
    assert facts["Last update posted"] == "2024-07-15"
    markdown = render(record, "card")
    assert "- Cohort A2 (experimental): Clinical Observation, Computed Tomography, External Beam Radiation Therapy" in markdown
    assert "- Women and Infants Hospital, Providence, Rhode Island, United States (recruiting)" in markdown
    assert "| Registry page | https://clinicaltrials.gov/study/NCT06388018 |" in markdown
    recruiting = markdown.split("**Is NCT06388018 currently recruiting?**\n\n", 1)[1].split("\n")[0]
    assert recruiting == "Yes. (clinicaltrials.gov status RECRUITING, record last updated 2024-07-15; " \
                         f"retrieved {record.source.retrieved_at:%Y-%m-%d})"  # fmt: skip
    assert "Are brain metastases allowed?" not in markdown  # the record says nothing of them


def test_a_completed_study_is_not_recruiting_and_an_unknown_status_is_not_guessed():
    record = rules_record(EXAMPLES / "ctgov-classic-xml" / "NCT02465060.xml")
    status = record.trial.overall_status
    markdown = render(record, "card")
    if status == "UNKNOWN":
        assert "currently recruiting?" not in markdown
    else:
        assert f"**Is NCT02465060 currently recruiting?**" in markdown
    unknown = record.model_copy(update={"trial": record.trial.model_copy(update={"overall_status": "UNKNOWN"})})
    assert "currently recruiting?" not in render(unknown, "card")
    done = record.model_copy(update={"trial": record.trial.model_copy(update={"overall_status": "COMPLETED"})})
    assert "No: the study is completed." in render(done, "card")


def test_many_sites_are_cut_short_in_markdown_and_all_listed_in_html():
    record = rules_record(EXAMPLES / "ctgov-classic-xml" / "NCT02465060.xml")
    assert len(record.trial.locations) == 1218
    markdown = render(record, "card")
    sites = markdown.split("**Sites**\n\n", 1)[1].split("\n\n", 1)[0]
    assert len(bullets(sites)) == 21 and bullets(sites)[-1].startswith("and 1198 more (`eligex show NCT02465060 --part trial`")
    html = BeautifulSoup(render(record, "html"), "html.parser")
    assert len(html.select("details li")) == 1218


def test_a_gold_record_with_every_field_reads_in_plain_words():
    markdown = render(gold_record("NCT03093116", EXAMPLES / "ctgov-2026-sample.jsonl"), "card")
    assert bullets(section(markdown, "Biomarker criteria"))[0].startswith(
        "**Required**: ALK fusion **or** ROS1 fusion **or** NTRK1 fusion **or** NTRK2 fusion **or** NTRK3 fusion — inc-2: "
    )
    labs = bullets(section(markdown, "Lab requirements"))
    assert "Platelet count (PLT) ≥ 100,000/mm3 — inc-11: “Platelets (PLTs) ≥100,000/mm3”" in labs
    assert any(line.startswith("Alanine aminotransferase (ALT) < 5 × ULN (if liver metastases) — inc-11") for line in labs)
    assert any(line.startswith("Potassium: within normal limits, no threshold stated") for line in labs)
    assert bullets(section(markdown, "Performance status")) == ["**Required**: ECOG 0–1 — inc-3: “ECOG PS 0-1.”"]
    assert bullets(section(markdown, "Measurable disease"))[0].startswith("**Required**: measurable disease per RECIST 1.1")
    assert bullets(section(markdown, "Brain metastases"))[0].startswith("**Allowed if stable**: ")
    assert bullets(section(markdown, "Ages and sex")) == [
        "at least 12 years old — registry", "any sex — registry", "healthy volunteers not accepted — registry",
    ]  # fmt: skip
    brain = markdown.split("**Are brain metastases allowed?**\n\n", 1)[1]
    assert brain.startswith("Only if they are treated, stable or asymptomatic.")


def test_a_cap_on_prior_lines_does_not_make_prior_treatment_required():
    markdown = render(gold_record("NCT06933329", EXAMPLES / "ctgov-2026-sample.jsonl"), "card")
    assert bullets(section(markdown, "Prior therapy")) == [
        "No more than 3 prior lines of systemic therapy, in the metastatic setting — inc-3: “Participants must not have "
        "received more than 3 prior lines of systemic therapy in the advanced/metastatic setting”",
        "**Must not have received**: antibody-drug conjugate — exc-2: “Prior treatment with monomethyl auristatin E "
        "(MMAE) (vedotin) based therapy”",
    ]
    names = questions(markdown)
    assert "Is prior treatment required?" not in names
    assert {"How many prior lines of treatment are allowed?", "Which prior treatments exclude patients?"} <= set(names)


# -- untrusted text -----------------------------------------------------------------------------------

HOSTILE = {
    "nct_id": "NCT09999990",
    "title": "A <b>bold</b> title",
    "url": "javascript:alert(1)",
    "eligibility_text": "Inclusion Criteria:\n* ECOG 0-1\n* Signed consent <script>alert('consent')</script>\n"
                        "* Able to swallow <img src=x onerror=alert(1)> tablets [click](javascript:alert(2)) ![x](https://example.org/x.png)\n"
                        "Exclusion Criteria:\n* Pregnant | nursing **now**",
}  # fmt: skip


@pytest.fixture(scope="module")
def hostile() -> EligibilityRecord:
    return rules_record(Path("hostile.jsonl"), data=json.dumps(HOSTILE).encode())


def test_a_criterion_holding_script_renders_as_text_in_html(hostile):
    html = render(hostile, "html")
    page = BeautifulSoup(html, "html.parser")
    assert page.find("script") is None and page.find("img") is None and page.select("h1 b") == []
    assert "&lt;script&gt;alert(&#39;consent&#39;)&lt;/script&gt;" in html
    assert "<script>alert('consent')</script>" in page.get_text()  # shown, as text
    assert not [a for a in page.find_all("a") if "javascript" in a.get("href", "")]


def test_a_criterion_holding_script_stays_text_when_the_markdown_is_rendered(hostile):
    markdown = render(hostile, "card")
    html = MarkdownIt("commonmark").enable("table").render(markdown)
    page = BeautifulSoup(html, "html.parser")
    assert page.find("script") is None and page.find("img") is None
    assert not [a for a in page.find_all("a") if "javascript" in a.get("href", "")]
    assert "<script>alert('consent')</script>" in page.get_text() and "Pregnant | nursing **now**" in page.get_text()
    assert "javascript:alert(1)" not in markdown  # the registry "url" is not a web address: no link is made


def test_the_html_card_is_self_contained(hostile, seed):
    for record in (hostile, seed, rules_record(EXAMPLES / "ctgov-v2" / "NCT06388018.json")):
        page = BeautifulSoup(render(record, "html"), "html.parser")
        assert not page.find_all(["script", "link", "img", "iframe", "object", "embed"])
        assert not page.find_all(src=True) and "url(" not in page.style.get_text() and "@import" not in page.style.get_text()
        assert all(a["href"].startswith("https://clinicaltrials.gov/") for a in page.find_all("a"))


# -- the commands ----------------------------------------------------------------------------------


def test_show_prints_the_card_and_export_writes_every_card(tmp_path):
    root = str(tmp_path / "ws")
    run("--workspace", root, "import", str(RECORDS), str(EXAMPLES / "ctgov-v2" / "NCT06388018.json"))
    run("--workspace", root, "extract", "--all", "--backend", "rules")
    shown = run("--workspace", root, "show", "NCT06450314", "--format", "card")
    assert shown.exit_code == 0 and shown.stdout.startswith("# NCT06450314: Decreasing Treatment") and not shown.stderr
    page = run("--workspace", root, "show", "NCT06450314", "--format", "html")
    assert page.exit_code == 0 and page.stdout.startswith("<!DOCTYPE html>")
    out = tmp_path / "cards"
    for _ in range(2):  # and again into the same folder
        result = run("--workspace", root, "export", "--format", "cards", "--out", str(out))
        assert result.exit_code == 0 and "wrote the cards of 2 trials" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["NCT06388018.html", "NCT06388018.md", "NCT06450314.html", "NCT06450314.md"]
    assert (out / "NCT06450314.md").read_text() == shown.stdout
    assert (out / "NCT06450314.html").read_text() == page.stdout
    into_a_file = run("--workspace", root, "export", "--format", "cards", "--out", str(out / "NCT06450314.md"))
    assert into_a_file.exit_code == 2 and "is a file: cards are written to a folder" in into_a_file.stderr
    records_into_a_folder = run("--workspace", root, "export", "--format", "jsonl", "--out", str(out))
    assert records_into_a_folder.exit_code == 2 and "is a folder" in records_into_a_folder.stderr
