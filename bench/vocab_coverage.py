"""How much of what oncology criteria name the rules' vocabularies know (run on demand).

    .venv/bin/python bench/vocab_coverage.py [--legacy DIR]

Over the oncology trials of ../shared/data/ctgov-2026:
- genes: the distinct HGNC approved symbols (protein-coding) written in the criteria next to a biomarker
  word (mutation, positive, amplification, expression, fusion, wild-type, IHC...), and the share the
  marker vocabulary resolves to that gene;
- therapies: the distinct intervention names of those trials that are FDA UNII names, and the share the
  drug vocabulary finds a drug in.
`--legacy DIR` also measures hand-curated TSVs of the old layout (DIR/markers.tsv, DIR/drugs.tsv) the
same way, for a before/after.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extract.rules import vocab  # noqa: E402
from extract.rules.vocab import fold_key  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
_CONTEXT = re.compile(
    r"(?i)[\s:(/-]*(?:[\w.]+\s+){0,3}?(?:mutat\w*|positiv\w*|negativ\w*|amplifi\w*|(?:over)?express\w*|fusions?|"
    r"rearrange\w*|wild[\s-]?type|alteration\w*|altered|deletion\w*|loss|variants?|IHC)\b"
)
_SYMBOL = re.compile(r"(?<![\w-])[A-Z][A-Z0-9]{2,}(?!\w)")


def oncology_trials() -> list[dict]:
    with open(SHARED / "ctgov-2026" / "trials.jsonl", encoding="utf-8") as handle:
        return [record for record in map(json.loads, handle) if record.get("_oncology")]


def _tsv_gz(path: Path) -> list[dict[str, str]]:
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))


def gene_mentions(trials: list[dict]) -> set[str]:
    """HGNC approved protein-coding symbols written before a biomarker word."""
    approved = {
        row["term"] for row in _tsv_gz(SHARED / "vocab-sources" / "hgnc" / "hgnc_name_index.tsv.gz")
        if row["term_type"] == "approved_symbol" and row["locus_type"] == "gene with protein product"
    }  # fmt: skip
    found = set()
    for trial in trials:
        text = trial["eligibility"]["raw_text"] or ""
        for match in _SYMBOL.finditer(text):
            if match.group() in approved and _CONTEXT.match(text, match.end()):
                found.add(match.group())
    return found


def therapy_names(trials: list[dict]) -> set[str]:
    """Intervention names that are FDA UNII names (brand, code, official or common)."""
    unii = {fold_key(row["name"]) for row in _tsv_gz(SHARED / "vocab-sources" / "fda-unii" / "unii_names_no_systematic.tsv.gz")}
    return {name for trial in trials for name in trial["interventions"] or [] if fold_key(name) in unii}


def _legacy_known(folder: Path) -> tuple[set[str], set[str]]:
    """The marker and drug keys of hand-curated TSVs of the old layout."""
    markers = {fold_key(row["alias"]) for row in vocab.load_tsv("markers.tsv", folder) if row["markers"]}
    drugs = {fold_key(row["name"]) for row in vocab.load_tsv("drugs.tsv", folder)}
    return markers, drugs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legacy", type=Path, help="a folder with old-layout markers.tsv and drugs.tsv")
    args = parser.parse_args()
    trials = oncology_trials()
    genes, therapies = gene_mentions(trials), therapy_names(trials)
    known_genes = {g for g in genes if g in vocab.marker_symbols(g)}
    known_therapies = {t for t in therapies if vocab.drugs().scan(t)}
    print(f"{len(trials)} oncology trials of ctgov-2026")
    print(f"gene symbols in a biomarker context: {len(genes)}; known {len(known_genes)} ({len(known_genes) / len(genes):.0%})")
    print(f"intervention names that are UNII names: {len(therapies)}; known {len(known_therapies)} ({len(known_therapies) / len(therapies):.0%})")
    if args.legacy:
        markers, drugs = _legacy_known(args.legacy)
        old_genes = {g for g in genes if fold_key(g) in markers}
        old_therapies = {t for t in therapies if any(fold_key(part) in drugs for part in re.split(r"[\s,+/()]+|\band\b", t) + [t])}
        print(f"legacy vocabulary: genes known {len(old_genes)} ({len(old_genes) / len(genes):.0%}), "
              f"therapies known {len(old_therapies)} ({len(old_therapies) / len(therapies):.0%})")
        missing = sorted(genes - known_genes)
        print(f"genes still unknown ({len(missing)}): {' '.join(missing)}")


if __name__ == "__main__":
    main()
