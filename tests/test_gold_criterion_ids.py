"""evals/add_criterion_ids.py: a gold quote gets the id of the one criterion holding it."""

import importlib.util

from extract.prompting import ROOT
from extract.text import segment

spec = importlib.util.spec_from_file_location("add_criterion_ids", ROOT / "evals" / "add_criterion_ids.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

CRITERIA = segment("Inclusion Criteria:\n- ECOG 0-1\n- Adequate organ function\n"
                   "Exclusion Criteria:\n- Active brain metastases\n- Inadequate organ function")  # fmt: skip


def test_a_quote_gets_the_id_of_its_one_criterion_and_keeps_its_other_keys():
    gold = {"brain_metastases": {"status": "excluded", "evidence": {"quote": "Active brain metastases"}},
            "performance_status": [{"scale": "ECOG", "evidence": {"quote": "ECOG 0-1"}}]}
    assert script.add_ids(gold, CRITERIA) == 2
    assert gold["brain_metastases"]["evidence"] == {"criterion_id": "exc-1", "quote": "Active brain metastases"}
    assert gold["performance_status"][0]["evidence"]["criterion_id"] == "inc-1"


def test_a_quote_in_two_criteria_or_none_gets_no_id_and_a_given_id_is_kept():
    gold = {"labs": [{"evidence": {"quote": "organ function"}}, {"evidence": {"quote": "not in the text"}},
                     {"evidence": {"criterion_id": "inc-2", "quote": "organ function"}}]}  # fmt: skip
    assert script.add_ids(gold, CRITERIA) == 0
    assert [item["evidence"].get("criterion_id") for item in gold["labs"]] == [None, None, "inc-2"]
