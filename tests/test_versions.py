"""Versions follow what they depend on, and what depends on them follows the versions.

The three mutations this catches: the LLM cache key without the prompt version, `up_to_date`
ignoring the trial's content hash, and a vocabulary file edit that leaves the rules version alone.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timezone

import pytest
from openai_server import openai_server, tool_call  # noqa: F401 (a fixture)
from test_llm import ANSWER, TRIAL, backend, environment, extract, rows, workspace  # noqa: F401 (fixtures)

from cli import run_async
from extract import text
from extract.cache import CachedBackend
from extract.hashing import files_sha256
from extract.llm import ExtractedEligibility, Prompt, load_prompt, prompt_version
from extract.pipeline import run_extraction
from extract.rules import RULES_DIR, RulesBackend, rules_version
from extract.rules.vocab import VOCAB_DIR
from extract.sources import flat_export_row
from extract.store import Workspace
from extract.text import SEGMENTER_VERSION

# -- the LLM prompt --------------------------------------------------------------------------------


def test_the_prompt_version_follows_the_prompt_text_the_tool_schema_the_segmenter_and_the_examples():
    prompt = load_prompt()
    schema = ExtractedEligibility.model_json_schema()
    examples = prompt.shots.version
    assert prompt.version == prompt_version("extract-v1", prompt.system, schema, SEGMENTER_VERSION, examples)
    assert prompt.version.startswith("extract-v1+")
    others = {
        prompt_version("extract-v1", prompt.system + "\nQuote exactly.", schema, examples=examples),
        prompt_version("extract-v1", prompt.system, schema | {"title": "Renamed"}, examples=examples),
        prompt_version("extract-v1", prompt.system, schema, segmenter="another segmenter", examples=examples),
        prompt_version("extract-v1", prompt.system, schema, examples="other examples"),
    }
    assert len(others) == 4 and prompt.version not in others


@pytest.mark.usefixtures("environment")
def test_an_edited_prompt_is_asked_afresh_not_answered_from_the_cache(openai_server, workspace):
    openai_server.script(tool_call(ANSWER), tool_call(ANSWER))
    extract(workspace, backend(workspace))
    first = workspace.current_record(TRIAL).extraction.prompt_version

    original = load_prompt()
    llm = backend(workspace).backend
    edited = CachedBackend(dataclasses.replace(llm, prompt=Prompt(original.name, original.system + "\nQuote exactly.")), workspace)
    summary = extract(workspace, edited)  # not forced: the record of the old prompt is not up to date

    assert summary.extracted == 1 and openai_server.count == 2  # the cache holds the old prompt's answer only
    again = workspace.current_record(TRIAL).extraction
    assert again.prompt_version == edited.prompt_version != first
    assert again.input_tokens > 0  # a fresh answer, paid for


# -- up to date: same backend version on the same content ----------------------------------------------


def test_a_trial_whose_content_changed_is_extracted_again(tmp_path, rows):
    workspace = Workspace(tmp_path / "ws")
    row = rows[TRIAL]
    workspace.store_trial(flat_export_row(row, datetime.now(timezone.utc)))
    rules = RulesBackend()

    def run():
        return run_async(run_extraction(workspace, rules, list(workspace.trials([TRIAL]))))

    assert (run().extracted, run().skipped) == (1, 1)
    changed = row | {"eligibility": row["eligibility"] | {"raw_text": row["eligibility"]["raw_text"] + "\n* Age 21 or over"}}
    workspace.store_trial(flat_export_row(changed, datetime.now(timezone.utc)))

    summary = run()

    assert (summary.extracted, summary.skipped) == (1, 0)
    assert workspace.current_record(TRIAL).eligibility_text.endswith("Age 21 or over")
    workspace.close()


# -- the rules -------------------------------------------------------------------------------------


def test_the_rules_version_follows_every_vocabulary_file_in_sub_folders_too(tmp_path):
    vocab = tmp_path / "vocab"
    shutil.copytree(VOCAB_DIR, vocab)
    versions = [rules_version(vocab_dir=vocab)]
    assert versions[0] == rules_version() == RulesBackend().prompt_version  # the copy is the same data

    with open(vocab / "markers.tsv", "a", encoding="utf-8") as markers:
        markers.write("HER2-low\tERBB2\t\t\t\t\n")
    versions.append(rules_version(vocab_dir=vocab))
    (vocab / "more").mkdir()
    (vocab / "more" / "genes.tsv").write_text("alias\tmarkers\nBRAF\tBRAF\n")
    versions.append(rules_version(vocab_dir=vocab))
    (vocab / "more" / "genes.tsv").write_text("alias\tmarkers\nBRAF\tBRAF\nKRAS\tKRAS\n")
    versions.append(rules_version(vocab_dir=vocab))
    (vocab / "more" / ".genes.tsv.swp").write_bytes(b"an editor's swap file")
    versions.append(rules_version(vocab_dir=vocab))

    assert len(set(versions[:4])) == 4 and versions[4] == versions[3]


def test_the_rules_version_follows_the_rules_code_and_the_segmenter(tmp_path):
    code = tmp_path / "rules"
    shutil.copytree(RULES_DIR, code, ignore=shutil.ignore_patterns("vocab", "__pycache__"))
    assert rules_version(code_dir=code) == rules_version()
    with open(code / "stage.py", "a", encoding="utf-8") as stage:
        stage.write("\n# a change\n")
    assert rules_version(code_dir=code) != rules_version()
    assert rules_version(segmenter="another segmenter") != rules_version()
    assert SEGMENTER_VERSION == files_sha256(RULES_DIR.parent, [RULES_DIR.parent / "text.py"])[:12]
    assert text.__file__.endswith("text.py")
