"""The rules backend's vocabularies: loading, lookup in text, and the API other modules call.

Two layers. `vocab/built/` holds what `make vocab` (vocab_build.py) derives from authoritative
sources: every HGNC gene and FamPlex family, the FDA UNII antineoplastic drugs with their classes,
OncoTree-coded tumour types. The hand-curated TSVs in `vocab/` are the override layer on top:
clinical abbreviations ("ER", "TNBC"), corrections (a family narrowed, a drug's class), the
project's classes, and terms that are not what a source says ("FISH" is a method, not a gene).
A row of the override layer replaces the built row with the same lookup key.

Every file has a header row naming the columns; lines starting with `#` are comments. Empty cells
are empty strings. `ELIGEX_VOCAB_DIR` points the rules to another built folder (the ablation).

Phrases are looked up by tokens, not by one regex per vocabulary: the text is cut into words and
single punctuation marks (spaces, hyphens and underscores only separate), and a phrase is the
concatenation of its tokens, so "PD-L1", "PD L1" and "PDL1" are one key. Greek letters are spelt out
(α is alpha); a phrase matched in any case also matches with its last word in the plural.

Called from other modules: `drug_inn`, `drug_classes`, `class_ancestors`, `therapy_class`,
`marker_symbols`, `oncotree_code`.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import json
import os
import re
from pathlib import Path
from typing import Generic, Iterable, Iterator, NamedTuple, TypeVar

from extract.rules.gate import gated

VOCAB_DIR = Path(__file__).parent / "vocab"


def built_dir() -> Path:
    """Where the built vocabularies are: `vocab/built`, or `ELIGEX_VOCAB_DIR` (a build for an ablation)."""
    return Path(os.environ.get("ELIGEX_VOCAB_DIR") or VOCAB_DIR / "built")


def load_tsv(name: str, folder: Path | None = None) -> list[dict[str, str]]:
    """The rows of `vocab/<name>` (or `folder/<name>`; gzip when it ends in .gz) as dicts keyed by the
    header's column names."""
    data = (Path(folder or VOCAB_DIR) / name).read_bytes()
    text = (gzip.decompress(data) if name.endswith(".gz") else data).decode("utf-8")
    lines = [line.rstrip("\r\n") for line in text.split("\n") if line.strip() and not line.startswith("#")]
    header = [column.strip() for column in lines[0].split("\t")]
    rows = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.split("\t")]
        cells += [""] * (len(header) - len(cells))
        rows.append(dict(zip(header, cells)))
    return rows


def load_built(name: str) -> list[dict[str, str]]:
    """The rows of a built TSV file; none when the built folder lacks it (a partial ablation)."""
    return load_tsv(name, built_dir()) if (built_dir() / name).is_file() else []


def load_built_lexicon(name: str, decode) -> "Lexicon":
    """A built lexicon (`Lexicon.to_data` as gzipped JSON); empty when the built folder lacks it."""
    path = built_dir() / name
    if not path.is_file():
        return Lexicon()
    return Lexicon.from_data(json.loads(gzip.decompress(path.read_bytes())), decode)


def is_abbreviation(phrase: str) -> bool:
    """Short with a capital ("PT", "Hb"): matched as written, where a name ignores case."""
    return len(phrase) <= 5 and any(char.isupper() for char in phrase)


def trie_alternation(phrases: list[str]) -> str:
    """One regex matching any of `phrases` (the labs' analytes and units), built as a trie so a long list
    stays fast: a space matches a run of at least one white space or hyphen ("anti PD-1", "anti-PD-1"),
    and a hyphen only a hyphen. Longer phrases win over their prefixes."""
    return _trie_regex(_trie(phrases, separators=""), _space_or_char)


# Python's `re` tries the branches of `a|b|c` one by one at every position; a few hundred phrases
# make that slow. Sharing prefixes ("platelet", "platelet count", "platelets") lets a failing
# position fail after one character instead of after every phrase.
_SEPARATOR, _END = 0, 1  # trie flags; every other key is a character


def _trie(phrases: list[str], separators: str) -> dict:
    """The phrases as a trie; a character in `separators` flags its node instead of opening a branch."""
    trie: dict = {}
    for phrase in phrases:
        node = trie
        for char in phrase:
            if char in separators:
                node[_SEPARATOR] = True
            else:
                node = node.setdefault(char, {})
        node[_END] = True
    return trie


def _trie_regex(node: dict, atom) -> str:
    """The regex for a trie node; `atom` writes one character."""
    # Sorted, so a vocabulary's regex does not depend on the order of its rows.
    children = sorted((char, child) for char, child in node.items() if isinstance(char, str))
    branches = [atom(char) + _trie_regex(child, atom) for char, child in children]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if node.get(_SEPARATOR):
        body = r"[\s-]*" + body
    return f"(?:{body})?" if node.get(_END) else body


def _space_or_char(char: str) -> str:
    return r"[\s-]+" if char == " " else re.escape(char)




# -- tokens and keys -------------------------------------------------------------------------------

# A token is a run of letters and digits, or one punctuation mark; white space, hyphens and
# underscores only separate tokens.
_TOKEN = re.compile(r"[^\W_]+|[^\w\s-]")
_GREEK = str.maketrans({"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "κ": "kappa", "λ": "lambda"})


class Token(NamedTuple):
    start: int
    end: int
    exact: str  # as written (Greek letters spelt out)
    folded: str  # lower case


class _Tokens:
    """A text's tokens as two lists of forms (as written, lower case), made by the regex engine in one pass
    each; their offsets are found only when a lookup hits."""

    __slots__ = ("text", "exact", "folded", "present", "_spans")

    def __init__(self, text: str) -> None:
        spelt = text if text.isascii() else text.translate(_GREEK)  # Greek letters are never ASCII
        self.text = text
        self.exact = _TOKEN.findall(spelt)
        # each token in lower case, in one call: no token holds a space (a letter whose lower case is two
        # characters, "İ", stays one token)
        self.folded = " ".join(self.exact).lower().split(" ") if self.exact else []
        self.present = set(self.exact).union(self.folded)  # every form, to meet a lexicon's starters in one step
        self._spans: list[tuple[int, int]] | None = None

    @property
    def spans(self) -> list[tuple[int, int]]:
        if self._spans is None:
            self._spans = [match.span() for match in _TOKEN.finditer(self.text)]
        return self._spans

    def where(self, forms: set[str]) -> list[int]:
        """The indices of the tokens with one of these forms, in order: one comprehension over the tokens
        (criteria are short; searching the list again for each form cost more)."""
        return [index for index, (exact, folded) in enumerate(zip(self.exact, self.folded)) if exact in forms or folded in forms]


# Two caches: the texts scanned (criteria, asked again by every finder and lexicon) and the many short
# phrases looked up by key while a criterion is read, which would push the criteria out of a shared one.
@functools.lru_cache(maxsize=32)
def _scanned_tokens(text: str) -> _Tokens:
    return _Tokens(text)


@functools.lru_cache(maxsize=1024)
def _phrase_tokens(text: str) -> _Tokens:
    return _Tokens(text)


def token_forms(text: str) -> set[str]:
    """Every form (as written, lower case) of a scanned text's tokens, tokenised once: one set test tells
    whether the text can name a phrase of a list, by the phrases' first tokens."""
    return _scanned_tokens(text).present


def tokens(text: str) -> list[Token]:
    """The tokens of a phrase (tokenised once: the same phrases are looked up again and again)."""
    found = _phrase_tokens(text)
    return [Token(start, end, exact, folded) for (start, end), exact, folded in zip(found.spans, found.exact, found.folded)]


def key_forms(phrase: str, exact: bool) -> list[str]:
    """The token forms a phrase is looked up by: as written, or in lower case."""
    return [token.exact if exact else token.folded for token in tokens(phrase)]


def _plurals(word: str) -> list[str]:
    """A folded phrase's last word also in the plural, so "therapies" and "inhibitors" need no folding of the
    text: "therapy" -> "therapies", "inhibitor" -> "inhibitors", "lymphoma" -> "lymphomas"."""
    if len(word) < 4 or not word.isalpha():
        return []
    if word.endswith("y") and word[-2] not in "aeiou":
        return [word[:-1] + "ies"]
    if word.endswith(("s", "x", "ch", "sh")):
        return [word + "es"]
    return [word + "s"]


@functools.lru_cache(maxsize=4096)
def exact_key(phrase: str) -> str:
    """The lookup key of a phrase matched as written: "PD-L1" -> "PDL1"."""
    return "".join(token.exact for token in tokens(phrase))


@functools.lru_cache(maxsize=4096)
def fold_key(phrase: str) -> str:
    """The lookup key of a phrase matched in any case: "Anti-HER2 therapy" -> "antiher2therapy"."""
    return "".join(token.folded for token in tokens(phrase))


V = TypeVar("V")


class Hit(NamedTuple, Generic[V]):
    start: int
    end: int
    value: V


class _Scanned(Generic[V]):
    """A text's hits, with their starts and ends to bisect: hits never overlap, so both are sorted, and
    the hits of one sentence are found without a pass over the hits of the whole text."""

    __slots__ = ("hits", "starts", "ends")

    def __init__(self, hits: list[Hit[V]]) -> None:
        self.hits = hits
        self.starts = [hit.start for hit in hits]
        self.ends = [hit.end for hit in hits]

    def within(self, start: int, end: int) -> list[Hit[V]]:
        """The hits inside text[start:end]."""
        return self.hits[bisect.bisect_left(self.starts, start) : bisect.bisect_right(self.ends, end)]


class Lexicon(Generic[V]):
    """Phrases and what each names, found in text by the longest phrase at each token.

    A phrase is kept under its exact key (matched as written: "AR", "EGFR") or its folded key
    (matched in any case: "androgen receptor"). Every proper prefix of a phrase's key at a token
    boundary is kept too, so a lookup extends a candidate only while some phrase could still match.
    """

    def __init__(self) -> None:
        self._tables: tuple[dict[str, V], dict[str, V]] = ({}, {})  # exact, folded
        self._prefixes: tuple[set[str], set[str]] = (set(), set())
        self._scanned: dict[str, _Scanned[V]] = {}  # the last texts scanned
        self._starters: set[str] | None = None  # every key and prefix, made at the first scan

    def add(self, phrase: str, value: V, exact: bool) -> None:
        side = 0 if exact else 1
        forms = key_forms(phrase, exact)
        self._scanned.clear()
        self._starters = None
        if not forms:
            return
        self._tables[side]["".join(forms)] = value
        if not exact:
            for plural in _plurals(forms[-1]):
                self._tables[side].setdefault("".join(forms[:-1]) + plural, value)
        prefix = ""
        for form in forms[:-1]:
            prefix += form
            self._prefixes[side].add(prefix)

    def to_data(self, encode) -> dict:
        """The lexicon as JSON-ready data (the built files): each distinct value once, keys by value index."""
        values: dict[str, int] = {}  # each value's JSON -> its index
        tables = [
            {key: values.setdefault(json.dumps(encode(value)), len(values)) for key, value in table.items()} for table in self._tables
        ]
        return {
            "values": [json.loads(value) for value in values],
            "exact": dict(sorted(tables[0].items())),
            "folded": dict(sorted(tables[1].items())),
            "prefixes": [sorted(prefixes) for prefixes in self._prefixes],
        }

    @classmethod
    def from_data(cls, data: dict, decode) -> "Lexicon":
        lexicon = cls()
        values = [decode(value) for value in data["values"]]
        lexicon._tables = tuple({key: values[index] for key, index in data[side].items()} for side in ("exact", "folded"))
        lexicon._prefixes = tuple(set(prefixes) for prefixes in data["prefixes"])
        lexicon._scanned, lexicon._starters = {}, None
        return lexicon

    def remove(self, phrase: str) -> None:
        self._scanned.clear()
        self._starters = None
        self._tables[0].pop(exact_key(phrase), None)
        forms = key_forms(phrase, exact=False)
        for key in ["".join(forms)] + ["".join(forms[:-1]) + plural for plural in _plurals(forms[-1]) if forms]:
            self._tables[1].pop(key, None)

    def get(self, phrase: str) -> V | None:
        """What a whole phrase names, as written first, else in any case."""
        exact = self._tables[0].get(exact_key(phrase))
        return exact if exact is not None else self._tables[1].get(fold_key(phrase))

    def __len__(self) -> int:
        return len(self._tables[0]) + len(self._tables[1])

    def scan(self, text: str, start: int = 0, end: int | None = None) -> list[Hit[V]]:
        """The phrases in text[start:end], leftmost first, each the longest at its start, none overlapping.
        The whole text is scanned once (finders ask for one sentence after another)."""
        scanned = self._scanned.get(text)
        if scanned is None:
            if len(self._scanned) > 16:
                self._scanned.clear()
            scanned = self._scanned[text] = _Scanned(self._scan(text))
        if start == 0 and end is None:
            return scanned.hits
        return scanned.within(start, len(text) if end is None else end)

    def _scan(self, text: str) -> list[Hit[V]]:
        toks = _scanned_tokens(text)
        count = len(toks.exact)
        sides = ((self._tables[0], self._prefixes[0], toks.exact), (self._tables[1], self._prefixes[1], toks.folded))
        found: list[Hit[V]] = []
        # a phrase can start only at a token that is a key or a key's prefix: most tokens are neither, and
        # set intersections find the few that are without a Python step per token
        if self._starters is None:
            self._starters = set().union(*self._tables, *self._prefixes)
        found_forms = toks.present.intersection(self._starters)
        if not found_forms:
            return []
        candidates = toks.where(found_forms)
        free = 0  # the first token no hit covers
        for index in candidates:
            if index < free:
                continue
            best, value = -1, None
            for table, prefixes, forms in sides:
                last, key = index, forms[index]
                while True:
                    found_value = table.get(key)
                    if found_value is not None and last > best:  # the exact side first: it wins a tie
                        best, value = last, found_value
                    last += 1
                    if last >= count or key not in prefixes:
                        break
                    key += forms[last]
            if best >= 0:
                found.append(Hit(toks.spans[index][0], toks.spans[best][1], value))
                free = best + 1
        return found


# -- markers ---------------------------------------------------------------------------------------


class Marker(NamedTuple):
    markers: tuple[str, ...]  # HGNC symbols or MSI/TMB/HRD; several: a family's members
    status: str | None  # what the term itself says ("dMMR" is MSI positive), else None
    alteration: str | None
    variant: str | None
    context: bool  # a marker only in a biomarker context ("CR1", "MET": also clinical words)
    source: str  # "override" for the curated layer, else the source it was built from


def marker_of(row: dict[str, str], source: str) -> Marker:
    """The marker a row of markers.tsv (or of the build) names."""
    return Marker(
        tuple(row["markers"].split("|")), row["status"] or None, row["alteration"] or None, row["variant"] or None,
        row.get("context") == "yes", source,
    )  # fmt: skip


@functools.cache
def markers() -> Lexicon[Marker]:
    """Every marker term: the built genes, families and fusions, then the curated layer over them."""
    return with_curated_markers(load_built_lexicon("markers.json.gz", lambda value: Marker(tuple(value[0]), *value[1:])))


def with_curated_markers(lexicon: Lexicon[Marker]) -> Lexicon[Marker]:
    """The lexicon with markers.tsv over it; a curated row with no markers says the term is not one
    ("FISH" is a method)."""
    for row in load_tsv("markers.tsv"):
        lexicon.remove(row["alias"])
        if row["markers"]:
            lexicon.add(row["alias"], marker_of(row, "override"), exact=row["case"] == "exact")
    return lexicon


def marker_symbols(name: str) -> tuple[str, ...]:
    """The HGNC symbols (or MSI/TMB/HRD) a marker or family name stands for: "HER2" -> ("ERBB2",),
    "NTRK" -> ("NTRK1", "NTRK2", "NTRK3"); () when it names none."""
    found = markers().get(name)
    if found is None and not name.islower():
        found = markers().get(name.upper())  # "mTOR", "Lag-3"; never "or"
    return found.markers if found else ()


@functools.cache
def enzymes() -> frozenset[str]:
    return frozenset(row["symbol"] for row in load_built("enzymes.tsv"))


# -- drugs and classes -----------------------------------------------------------------------------


@functools.cache
def drugs() -> Lexicon[str]:
    """Drug names (INN, brand, code) -> lower-case INN: the built UNII names, then drugs.tsv over them."""
    lexicon: Lexicon[str] = load_built_lexicon("drugs.json.gz", str)
    for row in load_tsv("drugs.tsv"):
        lexicon.remove(row["name"])
        lexicon.add(row["name"], row["inn"], exact=is_abbreviation(row["name"]))
    return lexicon


def drug_inn(name: str) -> str | None:
    """The lower-case INN a drug name stands for: "Keytruda", "MK-3475" -> "pembrolizumab"."""
    return drugs().get(name)


@functools.cache
def therapy_classes() -> Lexicon[str]:
    """Phrases that name a class of therapy -> the class (therapy_classes.tsv, the project's classes)."""
    lexicon: Lexicon[str] = Lexicon()
    for row in load_tsv("therapy_classes.tsv"):
        lexicon.add(row["phrase"], row["class"], exact=is_abbreviation(row["phrase"]))
    return lexicon


@functools.cache
def _class_parents() -> dict[str, str]:
    return {row["class"]: row["parent"] for row in load_tsv("class_parents.tsv")}


def class_ancestors(cls: str) -> tuple[str, ...]:
    """The broader classes a class belongs to, nearest first: "taxane" -> ("chemotherapy", "systemic therapy")."""
    found: list[str] = []
    parent = _class_parents().get(cls)
    while parent and parent not in found:
        found.append(parent)
        parent = _class_parents().get(parent)
    return tuple(found)


@functools.cache
def _classes_by_drug() -> dict[str, tuple[str, ...]]:
    """Each drug's own classes: the curated ones of drugs.tsv first, then those the build derived."""
    classes: dict[str, list[str]] = {}
    for row in load_tsv("drugs.tsv"):
        if row["class"]:
            classes.setdefault(row["inn"], []).append(row["class"])
    for row in load_built("drug_classes.tsv"):
        classes.setdefault(row["inn"], []).extend(row["classes"].split("|"))
    return {inn: tuple(dict.fromkeys(found)) for inn, found in classes.items()}


def drug_classes(inn: str) -> tuple[str, ...]:
    """The project's classes of a drug by its lower-case INN, its own first, then the broader ones:
    "trastuzumab" -> ("anti-her2 therapy", "targeted therapy", "systemic therapy")."""
    own = _classes_by_drug().get(inn.lower(), ())
    return tuple(dict.fromkeys([*own, *(a for cls in own for a in class_ancestors(cls))]))


@functools.cache
def _target_classes() -> dict[tuple[str, str], str]:
    """(target, kind) -> class from class_signals.tsv; kind is "inhibitor", "antibody" or "any"."""
    return {
        (row["value"], row["kind"] or "any"): row["class"]
        for row in load_tsv("class_signals.tsv")
        if row["signal"] == "target"
    }


# What a class noun says of the therapy: an inhibitor (small molecule), or an antibody-like agent, some of
# whose kinds are classes of their own when the table names none for the target.
_NOUN_KINDS = (
    ("adc", re.compile(r"(?i)adcs?$|conjugate"), "antibody-drug conjugate"),
    ("bispecific", re.compile(r"(?i)bispecific"), "bispecific antibody"),
    ("car-t", re.compile(r"(?i)^car"), "car-t therapy"),
    ("inhibitor", re.compile(r"(?i)inhibitor|tki|antagonist|blocker|degrader"), None),
)


def target_class(symbols: Iterable[str], written: str, noun: str | None = None, variant: str | None = None) -> str | None:
    """The class of a therapy named by its target and a class noun ("anti-CD38 therapy", "KRAS G12C
    inhibitor", "BCMA-directed", "TROP2-targeted ADC").

    The explicit table first (class_signals.tsv, by symbol, with the variant where one is named); then, for
    a target the table does not name, the listed class the noun names (an ADC, a bispecific, a CAR-T), else
    the guide's `<target> inhibitor` (an enzyme's inhibitor) or `<target>-targeted therapy`, the target as
    written. None for a target that is no cancer therapy's (CYP3A4 inhibitors).
    """
    kind, noun_class = next(((k, c) for k, pattern, c in _NOUN_KINDS if noun and pattern.search(noun)), ("antibody", None))
    table_kind = "inhibitor" if kind == "inhibitor" else "antibody"
    table = _target_classes()
    symbols = list(symbols)
    for symbol in symbols:
        for key in ([f"{symbol} {variant}"] if variant else []) + [symbol]:
            cls = table.get((key, table_kind)) or table.get((key, "any"))
            if cls:
                return None if cls == "-" else cls
    if noun_class:
        return noun_class
    name = written.lower().strip("()")
    if kind == "inhibitor" and symbols and all(symbol in enzymes() for symbol in symbols):
        return f"{name} inhibitor"
    return f"{name}-targeted therapy"


_CLASS_NOUN = (
    r"(?P<noun>(?:tyrosine[\s-]+kinase[\s-]+)?inhibitors?|TKIs?|antagonists?|blockers?|blockade|degraders?|(?:monoclonal\s+)?antibod(?:y|ies)|mAbs?|"
    r"ADCs?|antibody[\s-]+drug[\s-]+conjugates?|bispecifics?|CAR[\s-]?T(?:[\s-]+cells?)?|therap(?:y|ies)|agents?|"
    r"drugs?|treatments?|immunotherap(?:y|ies)|medications?)"
)
_HOW = r"(?:targeted|directed|targeting|based)"
# A target's name: "CD38", "PD-L1", "CLDN18.2", "PD-1/PD-L1"; never its "-directed".
_TARGET = rf"(?P<target>[A-Za-z][A-Za-z0-9α-ω]*(?:[-.](?!{_HOW}\b)[A-Za-z0-9α-ω()]+)*(?:/[A-Za-z0-9()-]+)*)"
_VARIANT_WORD = r"(?:[\s-]+(?P<variant>[A-Z]\d{2,3}[A-Z]))?"
# "anti-CD38 therapy", "anti-TIGIT antibody", "anti-PD-1": the target after "anti"
_ANTI_TARGET = re.compile(rf"(?i)\banti[\s-]*{_TARGET}(?:[\s-]+(?:{_CLASS_NOUN}))?(?![\w-])")
# "VEGF-TKI", "KRAS G12C inhibitor", "BCMA-directed therapy", "TROP2 ADC": a class noun, then the target before it
_NOUN = re.compile(rf"(?i)(?<!\w){_CLASS_NOUN}(?![\w-])")
_TARGET_BEFORE = re.compile(rf"(?i)(?<![\w-])\(?{_TARGET}\)?{_VARIANT_WORD}[\s-]*(?:(?P<how>{_HOW})[\s-]*)?$")
# "inhibitor of MEK", "inhibitors of PARP"
_NOUN_OF_TARGET = re.compile(rf"(?i)\b(?P<noun>inhibitors?|antagonists?|blockers?|degraders?)\s+of\s+(?:the\s+)?{_TARGET}(?![\w-])")
# A noun that says too little without "targeted" or "directed": "EGFR therapy" is no class, "HER2-targeted therapy" is.
_VAGUE_NOUN = re.compile(r"(?i)therap(?:y|ies)|agents?|drugs?|treatments?|medications?|immunotherap(?:y|ies)")
_ANY_GENERIC = gated(re.compile(r"(?i)\banti|inhibit|\btki|antagon|blocke|degrad|antibod|\bmabs?\b|\badcs?\b|conjugate|bispecific|\bcar\b|directed|targeted|targeting"))


def _generic_matches(text: str) -> Iterator[tuple[int, int, str, str | None, str | None]]:
    """(start, end, target, noun, variant) of every target-and-noun wording."""
    for match in _ANTI_TARGET.finditer(text):
        yield match.start(), match.end(), match.group("target"), match.group("noun"), None
    for noun in _NOUN.finditer(text):
        before = _TARGET_BEFORE.search(text, max(0, noun.start() - 60), noun.start())
        if before and (before.group("how") or not _VAGUE_NOUN.fullmatch(noun.group())):
            yield before.start(), noun.end(), before.group("target"), noun.group(), before.group("variant")
    for match in _NOUN_OF_TARGET.finditer(text):
        yield match.start(), match.end(), match.group("target"), match.group("noun"), None


@functools.lru_cache(maxsize=64)
def generic_classes(text: str) -> list[Hit[str]]:
    """Classes named generically by a target and a class noun, whether or not a row names them:
    "anti-CD38 therapy" -> anti-cd38 antibody, "inhibitor of MEK" -> mek inhibitor."""
    if not _ANY_GENERIC.search(text):
        return []
    found: list[Hit[str]] = []
    for start, end, target, noun, variant in _generic_matches(text):
        parts = [part for part in target.split("/") if part]
        symbols = [marker_symbols(part) for part in parts]
        if not parts or not all(symbols):
            continue
        classes = [target_class(found_symbols, part, noun, variant) for found_symbols, part in zip(symbols, parts)]
        if classes[0] and all(cls == classes[0] for cls in classes):
            found.append(Hit(start, end, classes[0]))
    found.sort(key=lambda hit: (hit.start, -hit.end))
    kept: list[Hit[str]] = []
    for hit in found:
        if not kept or hit.start >= kept[-1].end:
            kept.append(hit)
    return kept


def generic_classes_within(text: str, start: int, end: int) -> list[Hit[str]]:
    """generic_classes(text) inside text[start:end], found by bisection (finders ask sentence by sentence)."""
    return _generic_scanned(text).within(start, end)


@functools.lru_cache(maxsize=64)
def _generic_scanned(text: str) -> _Scanned[str]:
    return _Scanned(generic_classes(text))


def therapy_class(phrase: str) -> str | None:
    """The project class a phrase names: a row of therapy_classes.tsv, else the target grammar
    ("anti-CD38 therapy" -> "anti-cd38 antibody", "VEGF-TKI" -> "anti-vegf therapy")."""
    named = therapy_classes().get(phrase)
    if named:
        return named
    whole = [hit for hit in generic_classes(phrase) if hit.start == 0 and hit.end == len(phrase.rstrip())]
    return whole[0].value if whole else None


# -- cancer types ----------------------------------------------------------------------------------


class CancerType(NamedTuple):
    name: str
    oncotree: str | None


@functools.cache
def cancer_types() -> Lexicon[CancerType]:
    """Tumour-type phrases -> (name, OncoTree code): built from OncoTree, Mondo and DO, then cancer_types.tsv."""
    lexicon: Lexicon[CancerType] = load_built_lexicon("cancer_types.json.gz", lambda value: CancerType(*value))
    for row in load_tsv("cancer_types.tsv"):
        lexicon.remove(row["pattern"])
        lexicon.add(row["pattern"], CancerType(row["name"], row["oncotree"] or None), exact=row["case"] == "exact")
    return lexicon


def load_all() -> None:
    """Load every vocabulary now rather than at its first use (a trial's time budget should not pay for it)."""
    for load in (markers, enzymes, drugs, therapy_classes, _class_parents, _classes_by_drug, _target_classes, cancer_types):
        load()


def oncotree_code(name: str) -> str | None:
    """The OncoTree code of a tumour type's name: "non-small cell lung cancer" -> "NSCLC"."""
    found = cancer_types().get(name)
    return found.oncotree if found else None
