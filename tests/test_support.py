"""extract.support and extract.hybrid.combine: a model item is taken only when its quote supports it."""

from __future__ import annotations

import pytest

from extract.hybrid import combine
from extract.rules import extract_eligibility
from extract.support import SUPPORT, identity, reach, unsupported
from schemas import Criterion
from schemas.fields import ITEM_FIELD


def criterion(kind: str, text: str, number: int = 1) -> Criterion:
    return Criterion(id=f"{kind[:3]}-{number}", kind=kind, text=text, start=0, end=len(text))


def item(c: Criterion, quote: str | None = None, **values) -> dict:
    return values | {"evidence": {"criterion_id": c.id, "quote": c.text if quote is None else quote}}


LABS = criterion("inclusion", "Absolute neutrophil count (ANC) >= 1.5 x 10^9/L and platelets >= 100 x 10^9/L")
QTC = criterion("exclusion", "QTcF > 470 ms")
ECOG = criterion("inclusion", "ECOG performance status 0-1")
AGE = criterion("inclusion", "Age >= 18 years")
STAGE = criterion("inclusion", "Stage IIIB-IV or recurrent NSCLC")
HER2 = criterion("inclusion", "HER2-negative breast cancer")
CLAUDIN = criterion("inclusion", "A tumour that expresses Claudin 18.2 at 2+ or 3+ in at least 75% of cells")
NAIVE = criterion("inclusion", "No prior treatment with trastuzumab")
EXPOSED = criterion("exclusion", "Known hypersensitivity to cetuximab or any of its excipients, or previous exposure to it")
PROGRESSED = criterion("inclusion", "Tumour progression during or after treatment with a fluoropyrimidine")
WASHOUT = criterion("exclusion", "Prior chemotherapy within 21 days before the first dose")
PANCREAS = criterion("inclusion", "Histologically confirmed metastatic pancreatic ductal adenocarcinoma")
BRAIN = criterion("exclusion", "Untreated or symptomatic brain metastases")
NO_BRAIN = criterion("inclusion", "Patients without brain metastases")
MEASURABLE = criterion("inclusion", "Measurable disease per RECIST 1.1")
COHORT = criterion("inclusion", "Cohort B: ECOG 0-2")
CD4 = criterion("inclusion", "CD4 count of at least 350 cells/mm3")
ANTI_PD1 = criterion("exclusion", "Prior anti-PD-1 therapy")


def lab(c, quote=None, analyte="anc", comparator=">=", value=1.5, unit="x10^9/L"):
    return item(c, quote, analyte=analyte, comparator=comparator, value=value, unit=unit, uln_multiple=None, condition=None)


def therapy(c, therapy, requirement, quote=None):
    return item(c, quote, requirement=requirement, therapy=therapy, drugs=[])


def marker(c, symbol, status, requirement="required", quote=None):
    return item(c, quote, requirement=requirement, any_of=[{"marker": symbol, "status": status}])


SUPPORTED = [
    ("labs", LABS, lab(LABS, "Absolute neutrophil count (ANC) >= 1.5 x 10^9/L")),  # the rules' parser reads it there
    ("labs", QTC, lab(QTC, analyte="qtc", comparator="<=", value=470, unit="ms")),  # an exclusion restated
    ("performance_status", ECOG, item(ECOG, scale="ECOG", min=0, max=1)),
    ("min_age_years", AGE, item(AGE, value=18)),
    ("stage", STAGE, item(STAGE, "Stage IIIB-IV", groups=["III", "IV"], settings=[])),
    ("biomarkers", HER2, marker(HER2, "ERBB2", "negative", quote="HER2-negative")),
    ("biomarkers", CLAUDIN, marker(CLAUDIN, "CLDN18", "positive")),  # the rules read nothing: a marker name is there
    ("prior_therapies", NAIVE, therapy(NAIVE, "trastuzumab", "excluded", quote="trastuzumab")),  # "No" reaches it
    ("prior_therapies", PROGRESSED, therapy(PROGRESSED, "fluoropyrimidine", "required")),  # the rules read nothing
    ("cancer_types", PANCREAS, item(PANCREAS, requirement="required", name="pancreatic cancer")),  # by a synonym
    ("brain_metastases", BRAIN, item(BRAIN, status="allowed_if_stable")),
    ("measurable_disease", MEASURABLE, item(MEASURABLE, required=True, standard="RECIST 1.1")),
]
UNSUPPORTED = [
    # a number of the quote, but not the one the rules read for that analyte
    ("labs", LABS, lab(LABS, value=100), "the rules read anc/>=/1.5/10^9/L, platelets/>=/100/10^9/L"),
    ("labs", QTC, lab(QTC, analyte="qtc", comparator=">", value=470, unit="ms"), "not qtc/>/470/ms"),
    ("performance_status", ECOG, item(ECOG, scale="ECOG", min=0, max=2), "the rules read ECOG/0/1"),
    ("min_age_years", AGE, item(AGE, value=21), "not 21"),
    ("stage", STAGE, item(STAGE, "Stage IIIB-IV", groups=["II", "III", "IV"], settings=[]), "not stage/II"),
    ("biomarkers", HER2, marker(HER2, "ERBB2", "positive", quote="HER2-negative"), "the rules read ERBB2/negative"),
    ("biomarkers", CLAUDIN, marker(CLAUDIN, "EGFR", "positive"), "no marker name of 'EGFR'"),
    ("biomarkers", CLAUDIN, marker(CLAUDIN, "CLDN18", "negative"), "status 'positive'"),
    ("prior_therapies", NAIVE, therapy(NAIVE, "trastuzumab", "required"), "not required/trastuzumab"),
    ("prior_therapies", PROGRESSED, therapy(PROGRESSED, "fluoropyrimidine", "excluded"), "requirement 'excluded'"),
    ("prior_therapies", PROGRESSED, therapy(PROGRESSED, "pembrolizumab", "required"), "no therapy name of 'pembrolizumab'"),
    # the rules' own tests of a sentence that speaks of prior therapy: a hypersensitivity, a washout
    ("prior_therapies", EXPOSED, therapy(EXPOSED, "cetuximab", "excluded"), "'hypersensitiv' makes it no requirement"),
    ("prior_therapies", WASHOUT, therapy(WASHOUT, "chemotherapy", "excluded"), "(window) takes it out"),
    # the rules read the therapy in the quote alone, but the window outside it takes it out
    ("prior_therapies", WASHOUT, therapy(WASHOUT, "chemotherapy", "excluded", quote="Prior chemotherapy"),
     "'within 21 days' (window) outside the quote takes it out"),
    # a marker's name with no finding or test beside it, or as what a therapy targets, states no status
    ("biomarkers", CD4, marker(CD4, "CD4", "positive"), "has none of the words the rules need"),
    ("biomarkers", ANTI_PD1, marker(ANTI_PD1, "PDCD1", "positive", "excluded"), "no marker name of 'PDCD1'"),
    ("cancer_types", PANCREAS, item(PANCREAS, requirement="required", name="breast cancer"), "not required/breast cancer"),
    ("cancer_types", PANCREAS, item(PANCREAS, requirement="excluded", name="pancreatic cancer"), "not excluded/pancreatic"),
    ("brain_metastases", BRAIN, item(BRAIN, status="excluded"), "the rules read allowed_if_stable"),
    ("brain_metastases", NO_BRAIN, item(NO_BRAIN, "brain metastases", status="required"), "'without' outside the quote"),
    ("measurable_disease", MEASURABLE, item(MEASURABLE, required=False, standard=None), "not not required"),
    ("performance_status", COHORT, item(COHORT, "ECOG 0-2", scale="ECOG", min=0, max=2), "for one cohort only"),
    ("labs", LABS, lab(LABS, "ANC >= 1.5"), "is not in inc-1"),
]


@pytest.mark.parametrize("name, c, found", SUPPORTED, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(SUPPORTED)])
def test_a_quote_that_states_the_value_supports_it(name, c, found):
    assert unsupported(name, found, c) is None


@pytest.mark.parametrize("name, c, found, why", UNSUPPORTED, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(UNSUPPORTED)])
def test_a_quote_that_does_not_state_the_value_is_said_why(name, c, found, why):
    reason = unsupported(name, found, c)
    assert reason is not None and why in reason


@pytest.mark.parametrize("name, c, found", SUPPORTED, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(SUPPORTED)])
def test_a_field_an_item_of_which_the_check_takes_is_in_the_criterions_reach(name, c, found):
    assert name in reach(c)


def test_reach_follows_what_the_check_refuses_and_the_quotes_a_model_would_choose():
    assert reach(WASHOUT) == set()  # a washout: no therapy item, by the quote alone or by its name
    assert reach(COHORT) == set()  # stated for one cohort
    assert reach(criterion("inclusion", "Signed informed consent")) == set()
    # the sentence as a whole is a hypersensitivity; its first words, quoted alone, are a prior therapy
    mixed = criterion("exclusion", "Prior exposure to cetuximab or panitumumab or history of hypersensitivity to either")
    assert "prior_therapies" in reach(mixed)
    assert unsupported("prior_therapies", therapy(mixed, "cetuximab", "excluded", "Prior exposure to cetuximab"), mixed) is None
    # what the rules said already is out of reach: only what a model item could add is in it
    said = [(name, item) for name in ("labs",) for item in extract_eligibility([LABS])[name]]
    assert "labs" in reach(LABS) and "labs" not in reach(LABS, said)
    assert "prior_therapies" in reach(mixed, [("prior_therapies", therapy(mixed, "cetuximab", "excluded"))])  # panitumumab
    # a drug the rules named is said, and the classes it belongs to with it; a class said leaves the drug to add
    prior = criterion("exclusion", "Prior treatment with trastuzumab")
    assert "prior_therapies" not in reach(prior, [("prior_therapies", therapy(prior, "trastuzumab", "excluded"))])
    assert "prior_therapies" in reach(prior, [("prior_therapies", therapy(prior, "anti-HER2 therapy", "excluded"))])


def test_every_item_field_is_declared():
    assert set(SUPPORT) == set(ITEM_FIELD) | {"min_age_years", "max_age_years"}


def test_identity_is_what_an_item_is_about():
    assert identity("labs", lab(LABS)) == identity("labs", lab(LABS, value=2.0))
    assert identity("biomarkers", marker(HER2, "ERBB2", "negative")) != identity("biomarkers", marker(HER2, "EGFR", "negative"))


def draft(*criteria: Criterion) -> dict:
    return extract_eligibility(list(criteria))


def model(*items: tuple[str, dict]) -> dict:
    answer: dict = {}
    for name, found in items:
        if name in ("min_age_years", "max_age_years"):
            answer[name] = found["value"]
            answer.setdefault("origins", {})[name] = {"origin": "text", "evidence": found["evidence"]}
        elif ITEM_FIELD[name].many:
            answer.setdefault(name, []).append(found)
        else:
            answer[name] = found
    return answer


def test_combine_rejects_an_unsupported_change_and_keeps_the_rules_item():
    merged, warnings = combine(draft(ECOG), model(("performance_status", item(ECOG, scale="ECOG", min=0, max=2))), [ECOG])
    assert [(p["min"], p["max"]) for p in merged["performance_status"]] == [(0, 1)]
    assert len(warnings) == 1 and warnings[0].startswith("hybrid: rejected the model's performance_status for inc-1: ")
    assert warnings[0].endswith("kept the rules' reading")


def test_combine_takes_a_supported_addition():
    added = model(("prior_therapies", therapy(PROGRESSED, "fluoropyrimidine", "required")))
    merged, warnings = combine(draft(PROGRESSED), added, [PROGRESSED])
    assert [(t["requirement"], t["therapy"]) for t in merged["prior_therapies"]] == [("required", "fluoropyrimidine")]
    assert warnings == []


def test_a_supported_correction_replaces_the_rules_item_its_quote_does_not_read():
    rules = draft(ECOG)
    rules["performance_status"][0]["max"] = 2  # a misreading, as a rules slip would be
    merged, warnings = combine(rules, model(("performance_status", item(ECOG, scale="ECOG", min=0, max=1))), [ECOG])
    assert [(p["min"], p["max"]) for p in merged["performance_status"]] == [(0, 1)] and warnings == []


def test_silence_deletes_nothing_and_a_confirmation_changes_nothing():
    second = criterion("inclusion", ECOG.text, 2)
    rules = draft(LABS, second)
    assert combine(rules, {}, [LABS, second]) == (rules, [])
    confirmed = model(("labs", lab(LABS, "Absolute neutrophil count (ANC) >= 1.5 x 10^9/L")))
    merged, warnings = combine(rules, confirmed, [LABS, second])
    assert merged["labs"] == rules["labs"] and warnings == []


def test_the_model_speaks_only_for_the_criteria_it_was_sent():
    elsewhere = criterion("inclusion", PROGRESSED.text, 2)
    answer = model(("prior_therapies", therapy(elsewhere, "fluoropyrimidine", "required")))
    merged, warnings = combine(draft(ECOG, elsewhere), answer, [ECOG])
    assert merged["prior_therapies"] == [] and "inc-2, a criterion it was not sent" in warnings[0]


def test_a_model_item_naming_what_the_rules_said_in_other_words_is_a_confirmation():
    # "breast cancer" where the rules read "invasive breast cancer": the vocabulary's one OncoTree concept (BRCA)
    breast = criterion("inclusion", "Histologically confirmed invasive breast cancer")
    rules = draft(breast)
    assert [(c["name"], c["code"]["code"]) for c in rules["cancer_types"]] == [("invasive breast cancer", "BRCA")]
    restated = model(("cancer_types", item(breast, "breast cancer", name="breast cancer", requirement="required",
                                           code={"system": "oncotree", "code": "BRCA"})))  # fmt: skip
    assert combine(rules, restated, [breast]) == (rules, [])
    other = criterion("inclusion", "Histologically confirmed invasive breast cancer or ovarian cancer")
    added = model(("cancer_types", item(other, "ovarian cancer", name="ovarian cancer", requirement="required", code=None)))
    rules = draft(other)
    rules["cancer_types"] = [c for c in rules["cancer_types"] if c["name"] != "ovarian cancer"]  # as if the rules missed it
    merged, _ = combine(rules, added, [other])
    assert [c["name"] for c in merged["cancer_types"]] == ["invasive breast cancer", "ovarian cancer"]
