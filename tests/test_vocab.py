"""The vocabularies: token lookup, the built files against their sources, the API other modules call."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from extract.rules import vocab
from extract.rules.vocab import Lexicon
from extract.rules.vocab_build import DEFAULT_SOURCES, build, inn_of

SOURCES_AVAILABLE = DEFAULT_SOURCES.is_dir()


# -- the lexicon ---------------------------------------------------------------------------------


def _lexicon() -> Lexicon[str]:
    lexicon: Lexicon[str] = Lexicon()
    lexicon.add("PD-L1", "CD274", exact=True)
    lexicon.add("ER", "ESR1", exact=True)
    lexicon.add("epidermal growth factor receptor", "EGFR", exact=False)
    lexicon.add("epidermal growth factor receptor 2", "ERBB2", exact=False)
    lexicon.add("anti-HER2 therapy", "anti-her2 therapy", exact=False)
    return lexicon


@pytest.mark.parametrize(
    "text, found",
    [
        ("PD-L1 TPS >= 50%", [("PD-L1", "CD274")]),
        ("PDL1 and PD L1", [("PDL1", "CD274"), ("PD L1", "CD274")]),
        # the longest phrase at a token wins, in any case for a folded phrase
        ("Human Epidermal Growth Factor Receptor 2 positive", [("Epidermal Growth Factor Receptor 2", "ERBB2")]),
        ("epidermal growth factor receptor (EGFR)", [("epidermal growth factor receptor", "EGFR")]),
        # an exact phrase only as written, and never inside a word
        ("er-positive; ERBB2; HER; ER+", [("ER", "ESR1")]),
        # plurals and hyphens fold
        ("no prior anti HER2 therapies", [("anti HER2 therapies", "anti-her2 therapy")]),
    ],
)
def test_scan_finds_the_longest_phrase_at_each_token(text, found):
    assert [(text[hit.start : hit.end], hit.value) for hit in _lexicon().scan(text)] == found


def test_scan_stays_inside_its_window():
    text = "ER and PD-L1"
    assert [hit.value for hit in _lexicon().scan(text, text.index("and"))] == ["CD274"]
    assert [hit.value for hit in _lexicon().scan(text, 0, text.index("PD-L1") + 2)] == ["ESR1"]


def test_a_lexicon_survives_its_json_form():
    lexicon = _lexicon()
    again = Lexicon.from_data(json.loads(json.dumps(lexicon.to_data(str))), str)
    text = "HER2: human epidermal growth factor receptor 2, PD-L1, ER"
    assert again.scan(text) == lexicon.scan(text)


def test_greek_letters_are_spelt_out():
    lexicon: Lexicon[str] = Lexicon()
    lexicon.add("FRalpha", "FOLR1", exact=True)
    assert [hit.value for hit in lexicon.scan("high FRα expression")] == ["FOLR1"]


# -- markers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, symbols",
    [
        ("HER2", ("ERBB2",)),
        ("epidermal growth factor receptor", ("EGFR",)),  # a full name
        ("CDK12", ("CDK12",)),  # a gene no hand-made list named
        ("MTAP", ("MTAP",)),
        ("TIM-3", ("HAVCR2",)),  # an alias
        ("NTRK", ("NTRK1", "NTRK2", "NTRK3")),  # families as the contract says
        ("BRCA", ("BRCA1", "BRCA2")),
        ("RAS", ("KRAS", "NRAS")),  # narrowed by the curated layer (GUIDE: HRAS only where named)
        ("FGFR", ("FGFR1", "FGFR2", "FGFR3", "FGFR4")),  # FamPlex's FGFRL1 left out
        ("AKT", ("AKT1", "AKT2", "AKT3")),  # FamPlex
        ("BCR::ABL1", ("ABL1",)),  # a fusion: the 3' gene
        ("t(9;22)", ("ABL1",)),  # the translocation of the same diseases
        ("CR", ()),  # three genes' alias, and complete response
        ("ALL", ()),  # BCR's alias, and a word
        ("STEP", ()),  # PTPN5's alias, and a word
    ],
)
def test_marker_symbols(name, symbols):
    assert vocab.marker_symbols(name) == symbols


def test_short_and_word_like_symbols_count_only_in_context():
    markers = vocab.markers()
    assert markers.get("CR1").context and markers.get("PI3").context and markers.get("CD4").context
    assert not markers.get("CDK12").context
    assert markers.get("t(15;17)").variant == "PML::RARA" and markers.get("t(15;17)").alteration == "fusion"


# -- drugs and classes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, inn",
    [
        ("Keytruda", "pembrolizumab"),
        ("MK-3475", "pembrolizumab"),
        ("XL092", "zanzalintinib"),  # code names the hand-made list never had
        ("BAY2927088", "sevabertinib"),
        ("PF-07799933", "claturafenib"),
        ("Tagrisso", "osimertinib"),  # the brand of a salt is the base's
        ("T-DXd", "trastuzumab deruxtecan"),  # curated
        ("Abraxane", "nab-paclitaxel"),  # a correction of the curated layer
        ("water", None),
    ],
)
def test_drug_inn(name, inn):
    assert vocab.drug_inn(name) == inn


def test_inn_of_drops_the_salt():
    assert inn_of("OSIMERTINIB MESYLATE") == "osimertinib"
    assert inn_of("TRASTUZUMAB DERUXTECAN") == "trastuzumab deruxtecan"
    assert inn_of("SODIUM") == "sodium"


@pytest.mark.parametrize(
    "inn, own, broader",
    [
        ("trastuzumab", "anti-her2 therapy", "targeted therapy"),
        ("pembrolizumab", "anti-pd-1/pd-l1 therapy", "immune checkpoint inhibitor"),  # from its target, PDCD1
        ("paclitaxel", "taxane", "chemotherapy"),
        ("zanzalintinib", "tyrosine kinase inhibitor", "targeted therapy"),  # from its INN stem
        ("asaretoclax", "bcl-2 inhibitor", "targeted therapy"),  # from the stem table (-toclax)
        ("datopotamab deruxtecan", "trop2-targeted therapy", "systemic therapy"),  # its target, as the guide names it
        ("elranatamab", "bcma-directed immunotherapy", "immunotherapy"),
    ],
)
def test_drug_classes(inn, own, broader):
    classes = vocab.drug_classes(inn)
    assert own in classes and broader in classes
    assert classes.index(own) < classes.index(broader)


def test_an_unknown_drug_has_no_class():
    assert vocab.drug_classes("no such drug") == ()


@pytest.mark.parametrize(
    "phrase, cls",
    [
        ("anti-CD38 therapy", "anti-cd38 antibody"),
        ("VEGF-TKI", "anti-vegf therapy"),
        ("inhibitor of MEK", "mek inhibitor"),
        ("BCMA-directed therapy", "bcma-directed immunotherapy"),
        ("KRAS G12C inhibitor", "kras g12c inhibitor"),
        ("KRAS G12D inhibitors", "kras g12d inhibitor"),
        ("mTOR inhibitors", "pi3k/akt/mtor inhibitor"),
        ("anti-TIGIT antibody", "immune checkpoint inhibitor"),
        ("anti-CD73 antibody", "cd73-targeted therapy"),  # no row: the target as written (GUIDE)
        ("TROP2-directed ADC", "antibody-drug conjugate"),  # a listed class fits (GUIDE)
        ("(STEAP1)-targeted therapy", "steap1-targeted therapy"),
        ("HER2-targeted tyrosine kinase inhibitors", "anti-her2 therapy"),
        ("WEE1 inhibitor", "wee1 inhibitor"),  # an enzyme's inhibitor (HGNC: "WEE1 G2 checkpoint kinase")
        ("PD-1/PD-L1 inhibitor", "anti-pd-1/pd-l1 therapy"),
        ("CYP3A4 inhibitors", None),  # a drug interaction, no cancer therapy
        ("EGFR therapy", None),  # says too little
        ("checkpoint inhibitor", "immune checkpoint inhibitor"),  # a row of therapy_classes.tsv
    ],
)
def test_therapy_class(phrase, cls):
    assert vocab.therapy_class(phrase) == cls


def test_class_ancestors():
    assert vocab.class_ancestors("kras g12c inhibitor") == ("kras inhibitor", "targeted therapy", "systemic therapy")
    assert vocab.class_ancestors("systemic therapy") == ()


# -- cancer types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, code",
    [
        ("non-small cell lung cancer", "NSCLC"),
        ("NSCLC", "NSCLC"),
        ("clear cell renal cell carcinoma", "CCRCC"),
        ("uveal melanoma", "UM"),
        ("Merkel cell carcinoma", "MCC"),
        ("glioblastoma multiforme", "GB"),  # a Mondo/DO synonym, coded through its xref
        ("cancer", None),  # too general to be a type
    ],
)
def test_oncotree_code(name, code):
    assert vocab.oncotree_code(name) == code


# -- the build -----------------------------------------------------------------------------------


def test_the_manifest_names_every_source_and_file():
    manifest = json.loads((vocab.VOCAB_DIR / "built" / "manifest.json").read_text())
    assert {"hgnc", "famplex", "unii", "chebi", "oncotree", "mondo", "do", "cytogenetics"} <= set(manifest["sources"])
    for source in manifest["sources"].values():
        assert source["version"] and all(len(file["sha256"]) == 64 for file in source["files"])
    for file in manifest["files"]:
        data = (vocab.VOCAB_DIR / "built" / file["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == file["sha256"], f"{file['file']} changed since the build: make vocab"


@pytest.mark.skipif(not SOURCES_AVAILABLE, reason="needs ../shared/data/vocab-sources")
def test_the_build_is_reproducible_without_a_source(tmp_path):
    """Built with FamPlex left out (the ablation), every file but the markers' is the committed one, and
    the families come from HGNC's gene groups alone."""
    committed = {f["file"]: f["sha256"] for f in json.loads((vocab.VOCAB_DIR / "built" / "manifest.json").read_text())["files"]}
    manifest = build(DEFAULT_SOURCES, tmp_path, without=["famplex"])
    assert "famplex" not in manifest["sources"] and manifest["without"] == ["famplex"]
    rebuilt = {f["file"]: f["sha256"] for f in manifest["files"]}
    assert {name: rebuilt[name] == committed[name] for name in rebuilt} == {
        "markers.json.gz": False, "enzymes.tsv": True, "drugs.json.gz": True, "drug_classes.tsv": True,
        "cancer_types.json.gz": True,
    }, "built/ is stale: make vocab"  # fmt: skip
    markers = json.loads(gzip.decompress((tmp_path / "markers.json.gz").read_bytes()))
    assert {value[5] for value in markers["values"]} == {"hgnc", "hgnc-groups", "cytogenetics"}


def test_the_rules_version_follows_the_built_files(tmp_path, monkeypatch):
    from extract.rules import RulesBackend

    before = RulesBackend().prompt_version
    other = tmp_path / "built"
    other.mkdir()
    for path in (vocab.VOCAB_DIR / "built").iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    (other / "enzymes.tsv").write_text("symbol\nWEE1\n")
    monkeypatch.setenv("ELIGEX_VOCAB_DIR", str(other))
    assert RulesBackend().prompt_version != before
