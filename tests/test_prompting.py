"""The prompt's parts: conventions included from the labelling guide, few-shot examples from the dev gold."""

import dataclasses
import json
import re

import pytest

from extract.errors import InputError
from extract.llm import ANSWER_FIELDS, PROMPT_FILE, load_prompt, section_field
from extract.prompting import GUIDE, SPLITS, FewShot, dev_examples, example, expand, guide_section
from extract.text import segment

DEV = set(json.loads(SPLITS.read_text())["dev"])
TEST = set(json.loads(SPLITS.read_text())["test"])


def test_the_prompt_holds_the_guides_current_decisions_word_for_word():
    decisions = guide_section("decisions")
    assert "Exceptions are not representable in v1" in decisions  # the section, not an empty match
    assert decisions in load_prompt().system
    assert "<!-- include" not in load_prompt().system


def test_every_fields_conventions_are_the_guides_not_a_copy_of_the_prompts_own():
    raw = PROMPT_FILE.read_text()
    sections = dict(re.findall(r"(?m)^# ([^\n]+)\n\n(.*?)\n*(?=^# |\Z)", raw, re.S))
    fields = [title for title in sections if title not in ("Evidence", "Age limits")]  # the answer's own format
    assert len(fields) == 9 and "Prior therapies" in fields
    for title in fields:
        assert re.fullmatch(r"<!-- include evals/GUIDE\.md#[a-z-]+ -->", sections[title].strip()), title
    assert "`met inhibitor`" in load_prompt().system  # a class the guide added after the prompt's old copy


def test_an_edit_to_the_guides_section_reaches_the_prompt(tmp_path):
    edited = tmp_path / "GUIDE.md"
    edited.write_text(GUIDE.read_text().replace("Zubrod is ECOG.", "Zubrod is ECOG; WHO is ECOG."))
    assert "WHO is ECOG." in expand(PROMPT_FILE.read_text(), edited)
    assert "WHO is ECOG." not in load_prompt().system


def test_examples_come_from_the_dev_split_only():
    examples = dev_examples()
    assert examples and {e.nct_id for e in examples} <= DEV
    assert not {e.nct_id for e in examples} & TEST


def test_a_test_split_trial_is_refused_as_an_example():
    nct_id = sorted(TEST)[0]
    gold = json.loads((SPLITS.parent / "gold" / f"{nct_id}.json").read_text())
    leaked = example(nct_id, gold["eligibility"])
    with pytest.raises(InputError, match="dev gold only"):
        FewShot((*dev_examples(), leaked))


def test_an_example_is_a_few_criteria_and_the_gold_items_quoting_them():
    gold = json.loads((SPLITS.parent / "gold" / "NCT01339988.json").read_text())["eligibility"]
    found = example("NCT01339988", gold)
    assert 1 <= len(found.criteria) <= 4
    shown = dict(zip(found.ids, found.criteria))
    for name, value in found.answer.items():
        for item in value if isinstance(value, list) else [value]:
            assert item["evidence"]["quote"] in shown[item["evidence"]["criterion_id"]]


def test_an_exclusion_is_shown_as_one_numbered_in_its_section():
    gold = {"brain_metastases": {"status": "excluded", "evidence": {"criterion_id": "exc-4", "quote": "Active brain metastases"}},
            "performance_status": [{"scale": "ECOG", "min": 0, "max": 1, "evidence": {"criterion_id": "inc-2", "quote": "ECOG 0-1"}}],
            "labs": [{"analyte": "anc", "evidence": {"quote": "ANC >= 1500/uL"}}]}  # fmt: skip
    found = example("NCT00000001", gold)
    assert found.render().splitlines()[1:4] == ["inc-1: ECOG 0-1", "inc-2: ANC >= 1500/uL", "exc-1: Active brain metastases"]
    assert found.answer["brain_metastases"]["evidence"] == {"criterion_id": "exc-1", "quote": "Active brain metastases"}
    assert found.answer["labs"][0]["evidence"]["criterion_id"] == "inc-2"  # the gold does not say: inclusion


def test_a_quote_inside_another_is_cited_from_the_criterion_that_holds_it():
    gold = {"stage": {"groups": [], "settings": ["metastatic"], "evidence": {"quote": "metastatic breast cancer"}},
            "cancer_types": [{"name": "breast cancer", "requirement": "required", "code": None,
                              "evidence": {"quote": "HER2-negative metastatic breast cancer"}}]}
    found = example("NCT00000001", gold)
    assert found.criteria == ("HER2-negative metastatic breast cancer",)
    assert found.answer["stage"]["evidence"] == {"criterion_id": "inc-1", "quote": "metastatic breast cancer"}


def criteria_of(*texts):
    return segment("Inclusion Criteria:\n" + "\n".join(f"- {text}" for text in texts))


def test_the_most_similar_trial_ranks_first_never_the_trial_itself_and_selection_is_deterministic():
    shots = FewShot(tuple(dev_examples()), k=3)
    target = shots.examples[7]
    criteria = criteria_of(*target.criteria)
    other = "NCT00000001"
    chosen = shots.select(other, criteria)
    assert chosen[0].nct_id == target.nct_id and len(chosen) == 3
    assert [e.nct_id for e in shots.select(other, criteria)] == [e.nct_id for e in chosen]
    assert target.nct_id not in {e.nct_id for e in shots.select(target.nct_id, criteria)}
    for query in DEV | TEST:
        assert not {e.nct_id for e in shots.select(query, criteria)} & TEST


def test_the_prompt_version_changes_with_the_examples_k_and_none():
    prompt = load_prompt()
    shots = prompt.shots
    fewer = FewShot(shots.examples[:-1], shots.k)
    versions = {prompt.version, *(dataclasses.replace(prompt, shots=s).version
                                  for s in (fewer, FewShot(shots.examples, shots.k + 1), FewShot(shots.examples, 0)))}
    assert len(versions) == 4


def test_the_examples_follow_the_system_prompt_in_the_trials_message(monkeypatch):
    monkeypatch.setenv("ELIGEX_FEWSHOT_K", "2")
    prompt = load_prompt()
    criteria = criteria_of("HER2-positive breast cancer", "ECOG 0-1")
    trial = type("T", (), {"nct_id": "NCT00000001", "trial": type("F", (), {"title": "A trial", "conditions": []})()})()
    message = prompt.user(trial, criteria)
    assert message.count("Answer: ") == 2 and message.index("Answer: ") < message.index("[inc-1] HER2-positive")
    monkeypatch.setenv("ELIGEX_FEWSHOT_K", "0")
    assert "Answer: " not in load_prompt().user(trial, criteria)
    monkeypatch.setenv("ELIGEX_FEWSHOT_K", "two")
    with pytest.raises(InputError, match="ELIGEX_FEWSHOT_K"):
        load_prompt()


def test_a_decision_about_one_field_goes_with_that_field_and_the_shared_ones_with_every_request():
    prompt = load_prompt()
    labs, performance = prompt.scoped(("labs",)).system, prompt.scoped(("performance_status",)).system
    assert '"Granulocytes" is `anc`' in labs and '"Granulocytes" is `anc`' not in performance
    assert "Zubrod is ECOG." in performance and "Zubrod is ECOG." not in labs
    assert "sets no minimum" in prompt.scoped(("age_limits",)).system and "sets no minimum" not in labs
    for system in (labs, performance, prompt.system):
        assert guide_section("decisions") in system and "Exceptions are not representable in v1" in system
    assert all(decision in prompt.system for decision in ('"Granulocytes" is `anc`', "Zubrod is ECOG.", "sets no minimum"))


def test_a_prompt_scoped_to_some_fields_keeps_their_sections_the_shared_ones_schema_and_examples(monkeypatch):
    monkeypatch.setenv("ELIGEX_FEWSHOT_K", "2")
    prompt = load_prompt()
    titled = [section_field(section) for section in re.split(r"(?m)^(?=# )", prompt.system)]
    assert sorted(filter(None, titled)) == sorted(ANSWER_FIELDS)  # each field's section is named by its title, once
    scoped = prompt.scoped(("labs", "stage"))
    assert re.findall(r"(?m)^# (.+)$", scoped.system) == ["Evidence", "Stage", "Labs", "Decisions of the labelling guide"]
    assert guide_section("labs") in scoped.system and guide_section("biomarkers") not in scoped.system
    assert list(scoped.answer_model.model_json_schema()["properties"]) == ["stage", "labs"]
    assert scoped.version != prompt.version
    criteria = criteria_of("Platelets >= 100,000/mm3", "HER2-positive breast cancer, stage IV")
    trial = type("T", (), {"nct_id": "NCT00000001", "trial": type("F", (), {"title": "A trial", "conditions": []})()})()
    full = [json.loads(line[len("Answer: "):]) for line in prompt.user(trial, criteria).splitlines() if line.startswith("Answer: ")]
    shown = [json.loads(line[len("Answer: "):]) for line in scoped.user(trial, criteria).splitlines() if line.startswith("Answer: ")]
    assert len(shown) == 2 and any(set(answer) - {"stage", "labs"} for answer in full)
    assert shown == [{name: items for name, items in answer.items() if name in ("stage", "labs")} for answer in full]
