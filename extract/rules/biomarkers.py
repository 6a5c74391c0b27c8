"""Biomarker rules: "HER2-positive", "EGFR exon 19 deletion or L858R", "ER and PR negative", "MSI-H/dMMR".

A criterion is read as chains of marker mentions joined by "or", "and", commas or slashes
("ER+/PR+/HER2-", "EGFR, ALK or ROS1 alterations"). Each mention takes its status from its own
wording (after it: "HER2-negative", "KRAS wild-type"; or before it: "mutations in EGFR"), or from a
neighbour in the chain ("ER and PR negative"). A chain joined by "or" is one rule whose tests are
alternatives; a chain joined by "and" is one rule per mention. A mention with no status ("HER2
status known", "PD-L1 testing", "anti-HER2 therapy") is no rule, and neither is a biomarker that only
conditions another requirement ("patients with an EGFR mutation must have received a TKI").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from extract.rules.context import annotate
from extract.rules.gate import gated
from extract.rules.polarity import clause_bounds, cohort_specific, evidence, scoped_to_cohort, stated_requirement
from extract.rules.vocab import Marker, markers
from schemas import Criterion


# "BRAFV600E", "BRAFV600": a protein variant written onto the gene's name.
_GLUED = re.compile(r"\b(?P<alias>[A-Z][A-Z0-9]+)(?P<glued>[ACDEFGHIKLMNPQRSTVWY]\d{2,4}[ACDEFGHIKLMNPQRSTVWY]?)\b")
# What every glued variant holds, searched first: a far simpler scan, and most criteria have none.
_GLUED_CORE = re.compile(r"[ACDEFGHIKLMNPQRSTVWY]\d\d")
# A marker's name then its abbreviation in parentheses is one mention: "human epidermal growth factor receptor 2 (HER2)".
_OPEN, _CLOSE = re.compile(r"\s*\(\s*"), re.compile(r"\s*\)")
# What makes a short or word-like symbol ("CR1", "MET", "PI3") a marker: a finding or a test named beside it.
_BIOMARKER_CONTEXT = re.compile(
    r"(?i)\b(?:mutat\w*|mutant|positiv\w*|negativ\w*|amplifi\w*|(?:over)?express\w*|fusions?|fused|rearrange\w*|"
    r"translocat\w*|wild[\s-]?type|alteration\w*|altered|aberration\w*|deletions?|deleted|loss|variants?|IHC|FISH|"
    r"immunohisto\w*|gene)\b"
)


@dataclass
class _Hit:
    """A marker named in the text: its span, what the vocabulary says of it, a variant written onto it."""

    start: int
    end: int
    marker: Marker
    glued: str | None = None


def _marker_hits(text: str) -> list[_Hit]:
    """The marker names in a text (vocab.markers()), longest first at each word."""
    found = [_Hit(hit.start, hit.end, hit.value) for hit in markers().scan(text)]
    covered = {hit.start for hit in found}
    for glued in _GLUED.finditer(text) if _GLUED_CORE.search(text) else ():
        marker = markers().get(glued.group("alias")) if glued.start() not in covered else None
        if marker is not None and not marker.context:
            found.append(_Hit(glued.start(), glued.end(), marker, glued.group("glued")))
    found.sort(key=lambda hit: hit.start)
    merged: list[_Hit] = []
    for hit in found:
        previous = merged[-1] if merged else None
        opened = previous and _OPEN.fullmatch(text, previous.end, hit.start)
        closed = _CLOSE.match(text, hit.end)
        if previous and opened and closed and previous.glued is None:
            previous.end = closed.end()  # "... receptor 2 (HER2)": one mention
        elif previous and _is_fusion(text, previous, hit):
            five, three = previous.marker.markers[0], hit.marker.markers[0]
            merged[-1] = _Hit(previous.start, hit.end, Marker((three,), None, "fusion", f"{five}::{three}", False, "fusion"))
        else:
            merged.append(hit)
    return [hit for hit in merged if not _inside_word(text, hit.start)]


# "EML4::ALK", "EWSR1-FLI1 translocation": two genes joined are their fusion, the 3' gene its marker (GUIDE).
_FUSION_JOINT = re.compile(r"\s*(?:::|[-–]\s*)\s*")
_FUSION_WORD = re.compile(r"(?i)[\s-]*(?:gene\s+)?(?:fusions?|fused|translocations?|rearrangements?)\b")


def _is_fusion(text: str, first: _Hit, second: _Hit) -> bool:
    if len(first.marker.markers) != 1 or len(second.marker.markers) != 1 or first.glued or second.glued:
        return False
    joint = _FUSION_JOINT.fullmatch(text, first.end, second.start)
    return bool(joint) and ("::" in joint.group() or bool(_FUSION_WORD.match(text, second.end)))


def _inside_word(text: str, start: int) -> bool:
    """ "anti-HER2", "non-BRCA": a name glued by a hyphen to a word before it is part of that word."""
    return start >= 2 and text[start - 1] == "-" and text[start - 2].isalnum()


def _in_biomarker_context(text: str, start: int, end: int) -> bool:
    clause_start, clause_end = clause_bounds(text, start, end)
    return bool(_BIOMARKER_CONTEXT.search(text, max(clause_start, start - 40), min(clause_end, end + 50)))


_VALUE = (
    r"(?:(?:TPS|CPS|TC|IC|tumou?r\s+proportion\s+score|combined\s+positive\s+score)\s*(?:\(\w+\)\s*|\[\w+\]\s*)?"
    r"(?:score\s*)?(?:of\s*)?"
    r"(?:≥|>=|=>|≤|<=|=<|>|<|=|at\s+least|greater\s+than|more\s+than|less\s+than)\s*\d+(?:\.\d+)?\s*%?"
    r"|(?:of\s*)?(?:≥|>=|=>|≤|<=|=<|>|<|at\s+least|greater\s+than|more\s+than|less\s+than)\s*\d+(?:\.\d+)?\s*"
    r"(?:%|mut(?:ations)?\s*(?:/|per)\s*(?:Mb|mega\s*base)\b))"
)
# A mention's own wording after it: a few filler words ("EGFR activating mutation", "HER2 IHC 3+"),
# then one status word; the filler is lazy, so the nearest status wins.
_STATUS_AFTER = re.compile(
    r"""(?ix)(?:[\s:(/-]+|\([^()]{0,30}\)
        |(?:gene|genes|somatic|germline|tumou?r|tissue|activating|sensitizing|sensitising|oncogenic|pathogenic|
            likely|deleterious|driver|known|documented|protein|receptor|kinase|status|expression|IHC|FISH|ISH|pathway|
            by|is|are|was|point|hotspot|actionable|targetable|exon\s*\d+|codon\s*\d+|p\.|[A-Z]\d{2,4}[A-Z]?(?:/[A-Z])?
            |ITD|TKD)(?!\w))*?
    (?:(?P<any>positive\s*(?:,|or|and/or|/)\s*negative|negative\s*(?:,|or|/)\s*positive)
    |(?P<value>"""
    + _VALUE
    + r""")
    |(?P<score>[0-3]\s?\+)
    |(?P<negative>negative|negativity|阴性|neg\b|wild[\s-]?type|wt\b|non[\s-]?mutated|unmutated|non[\s-]?mutant
        |non[\s-]?amplified|not\s+amplified|proficient|\(\s*[-−–]\s*\)|[-−–](?!\w))
    |(?P<low>ultra[\s-]?low\b|low\b)
    |(?P<amplification>amplifi(?:ed|cations?)|amp\b|gains?\b|扩增)
    |(?P<overexpression>over[\s-]?express(?:ion|ing|ed|ors?))
    |(?P<fusion>fusions?|fused|rearrange(?:d|ments?)|translocations?|translocated|融合|重排)
    |(?P<mutation>mutat(?:ed|ions?)|mutants?|variants?|skipping|insertions?|突变)
    |(?P<deletion>deletions?|deleted)
    |(?P<loss>loss\b|lost\b)
    |(?P<altered>alterations?|altered|aberrations?|aberrant|abnormalit(?:y|ies))
    |(?P<expression>expressing|expressed|expressors?)
    |(?P<deficient>deficien(?:t|cy))
    |(?P<high>high\b)
    |(?P<positive>positive|positivity|阳性|pos\b|\(\s*\+\s*\)|\+))"""
)
# Words before a mention that give its status ("mutations in EGFR", "positive for HER2", "high TMB").
_STATUS_BEFORE = re.compile(
    r"""(?ix)(?P<word>
        (?P<positive>positive\s+for|mutated|mutant|amplified|over[\s-]?expressed|altered|rearranged|high)
        |(?P<negative>negative\s+for|wild[\s-]?type|non[\s-]?mutated|unmutated|low)
        |(?P<kind>mutations?|alterations?|aberrations?|amplifications?|rearrangements?|fusions?|overexpression|loss|deletions?)
            \*?(?:\s+(?:in|of|involving|at)\b|(?=\s*\())
      )
      (?:\s+(?:an?|the|germline|somatic|tumou?r|known|activating|sensitizing|oncogenic|genes?|following|
          (?:target\s+)?(?:antigens?|markers?)|
          (?:one|any|at\s+least\s+one)(?:\s+or\s+more)?(?:\s+of)?
          |(?:[\w/-]+\s+){1,4}?(?:\([\w\s/-]{1,15}\)\s+)?genes\b))*
      [\s(,:：*•·]*(?:(?:e\.g\.|i\.e\.|such\s+as|including|like)[\s,:：]*)?$"""
)
# Between the mentions of a list: commas, slashes, bullets of a list under a stem ("\n* BRCA2"), the
# full-width commas of CJK text ("EGFR、ALK，ROS1") and the words joining them (或: or; 和, 及, 与: and).
_CONNECTOR = re.compile(
    r"(?i)[\s,/;、，；*•·]*(?:(?:(?P<word>and/or|or|and|nor)\b|(?P<cjk>或者|或|和|及|与))[\s,/、，]*)?(?:\(\s*)?"
)
_CJK_WORDS = {"或者": "or", "或": "or", "和": "and", "及": "and", "与": "and"}
_VARIANT = re.compile(
    r"""(?x)\b(?:exon\s*(?P<exon>\d{1,2})(?:\s*(?P<exon_kind>deletion|del|insertion|ins|skipping|mutation)s?)?(?![\s-]*\d)
        |ex(?P<short_exon>\d{1,2})(?P<short_kind>del|ins)
        |p\.(?P<hgvs>[A-Z]\d{2,4}[A-Z]?)
        |(?P<protein>[ACDEFGHIKLMNPQRSTVWY]\d{2,4})(?P<to>[ACDEFGHIKLMNPQRSTVWYX])?(?:/(?P<to2>[A-Z])\b)?
        |(?P<itd>ITD|TKD))(?![\w])"""
)
_EXON_KIND = {"del": "deletion", "ins": "insertion"}
_METHODS = (
    ("IHC", re.compile(r"(?i)\bIHC\b|immunohistochemi")),
    ("ISH", re.compile(r"(?i)\b[FSCD]?ISH\b|in\s+situ\s+hybridi[sz]ation")),
    ("NGS", re.compile(r"(?i)\bNGS\b|sequencing")),
    ("PCR", re.compile(r"(?i)\b(?:RT-?|q)?PCR\b|polymerase\s+chain\s+reaction")),
    ("ctDNA", re.compile(r"(?i)\bct\s?DNA\b|\bcfDNA\b|liquid\s+biops|circulating\s+tumou?r\s+DNA|plasma|blood[\s-]based")),
)
# A mention after these is a therapy's target ("anti-HER2", "a drug that targets KRAS G12C").
_TARGET_BEFORE = re.compile(r"(?i)\b(?:anti|targets?|targeting|against)[\s-]*$")
# A mention after these qualifies another finding ("ERBB2 amplification in the absence of HER2 positivity").
_ABSENCE_BEFORE = re.compile(r"(?i)\bin\s+the\s+absence\s+of\s+(?:an?\s+|the\s+)?$")
# A mention after these has no required status ("unknown or indeterminate BRAF mutation").
_UNKNOWN_BEFORE = re.compile(
    r"(?i)\b(?:unknown|indeterminate|pending)\s+(?:[\w/-]+\s+){0,2}$|\b(?:regardless|irrespective)\s+of\b[^.;:]{0,100}$"
)
# "BRAF V600E mutation-negative": the status after the alteration word decides.
_THEN_STATUS = re.compile(r"(?i)[\s-]*(?:(?P<negative>negative)|positive)\b")
# A variant named as a test, not a finding ("as determined by BRAF V600E immunohistochemistry").
_TEST_AFTER = re.compile(r"(?i)[\s-]*(?:immunohisto\w*|IHC|test\w*|assays?|status|sequencing|analys[ie]s)\b")
# A finding named as what a test looks for ("EGFR mutation testing", "HER2 amplification assay").
_TESTING_AFTER = re.compile(r"(?i)[\s-]*(?:testing|tests?|assays?|analys[ie]s|screening)\b")
# A mention after these is what a test looks for, not a finding ("FISH studies for del(17p)").
_TESTED_BEFORE = re.compile(r"(?i)\b(?:stud(?:y|ies)|testing|tests?|analys[ie]s|assays?|screening|evaluation)\s+(?:for|of)\s+$")
# A mention before these counts cells, not a tumour's marker ("CD19+ CD5+ clonal B lymphocytes").
_CELLS_AFTER = re.compile(r"(?i)[\s,]*(?:[\w+-]+\s+){0,3}?(?:cells|lymphocytes|B[\s-]cells|T[\s-]cells|blasts)\b")
# A mention followed by these is a therapy, not a biomarker ("EGFR TKI", "KRAS G12C inhibitor").
_THERAPY_AFTER = re.compile(
    r"(?i)[\s/-]*(?:[\w.]+[\s/-]+){0,2}?(?:inhibitors?|inhibition|TKIs?|targeted|targeting|directed|antagonists?|"
    r"degraders?|antibod(?:y|ies)|blockers?|blockade|therap(?:y|ies)|agents?|drugs?|ADCs?|CAR|bispecifics?|"
    r"vaccines?|pathway|signal+ing)\b"
)
# A tumour type named as one alternative just before the mention: "Advanced melanoma or PD-L1-positive ...".
_ONE_ALTERNATIVE_BEFORE = re.compile(
    r"(?i)\b(?:cancers?|carcinomas?|tumou?rs?|melanomas?|lymphomas?|leuka?emias?|myelomas?|sarcomas?|NSCLC|SCLC|CRC|HCC)"
    r"\s*,?\s+(?:or|and/or)\s+(?:(?:with|an?|the|known|documented)\s+)*$"
)
_TUMOUR_NOUN = re.compile(
    r"(?i)\b(?:cancers?|carcinomas?|tumou?rs?|melanomas?|lymphomas?|leuka?emias?|myelomas?|sarcomas?|mesotheliomas?|"
    r"glioblastomas?|NSCLC|SCLC|HNSCC|CRC|HCC|RCC|PDAC|mCRPC|TNBC)\b"
)
# A specific tumour type right after a biomarker: "triple negative breast cancer", "MSI-H CRC".
_TUMOUR_AFTER = re.compile(
    r"(?i)[\s)]*(?:metastatic\s+|advanced\s+)?(?:breast|lung|colorectal|colon|rectal|gastric|gastro\w*|o?esophag\w*|ovarian|"
    r"endometrial|cervical|pancrea\w*|prostate|bladder|urothelial|melanoma|head|NSCLC|SCLC|CRC|BC|HNSCC|GEJ|biliary|"
    r"cholangio\w*|thyroid|glioma)\b"
)
# Markers whose plain "positive"/"negative" speaks of protein expression ("ER-positive", "CD20+").
_EXPRESSION_MARKERS = frozenset(
    "ESR1 PGR CD274 AR MS4A1 CD19 CD22 CD33 CD38 TNFRSF8 TNFRSF17 IL3RA GPRC5D CLDN18 TACSTD2 DLL3 FOLH1 FOLR1 "
    "NECTIN4 CD276 GPC3 ERBB3 CD70 IL13RA2".split()
)
_HER2_IHC_SCORE = re.compile(r"(?i)(?:IHC\s*)?\b(?P<score>[0-3])\s?\+(?:\s*(?:by|on)\s+IHC)?")
_HER2_ISH_POSITIVE = re.compile(
    r"(?i)\b[FSCD]?ISH[\s-]*(?:amplified|positive|\+)|(?:amplified|amplification|positive)\s+(?:by|on)\s+[FSCD]?ISH\b"
)
_HER2_LOW_VALUE = "1+ or 2+/ISH-"


# Status groups of _STATUS_AFTER that name the alteration itself (the group is named after it).
_ALTERATION_KINDS = frozenset("amplification overexpression fusion mutation deletion loss expression".split())
_ALTERATION_STEMS = (
    ("mut", "mutation"),
    ("type", "mutation"),
    ("ampl", "amplification"),
    ("rearrang", "fusion"),
    ("fusion", "fusion"),
    ("overexpress", "overexpression"),
    ("over-express", "overexpression"),
    ("loss", "loss"),
    ("deletion", "deletion"),
)


def _alteration_named(words: str) -> str | None:
    """The alteration a status word names ("mutated" -> mutation, "rearrangement" -> fusion)."""
    words = words.lower()
    return next((name for stem, name in _ALTERATION_STEMS if stem in words), None)


@dataclass
class _Mention:
    start: int
    end: int
    markers: list[str]
    status: str | None = None
    alteration: str | None = None
    value: str | None = None
    method: str | None = None
    variants: list[str] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)  # a definition's own tests (HER2 IHC 3+ or ISH+)
    status_before: bool = False  # the status came from the words before ("mutations in EGFR")
    fact_start: int = 0  # the quote that carries the fact is [fact_start, fact_end)
    fact_end: int = 0


def find(criterion: Criterion) -> Iterator[tuple[str, dict[str, Any]]]:
    text = criterion.text
    if cohort_specific(text):
        return
    # A sub-bullet "Cohort 1: participants with HR+/HER2-low ..." or "EXP-1: ROS1+ NSCLC" speaks for one cohort only.
    mentions = [m for m in _mentions(text) if not scoped_to_cohort(text, m.start)]
    if any(m.value == _HER2_LOW_VALUE for m in mentions):
        # The other HER2 mentions define HER2-low ("IHC 1+ or 2+ and no evidence of HER2 amplification").
        mentions = [m for m in mentions if m.markers != ["ERBB2"] or m.value == _HER2_LOW_VALUE]
    for chain, connector in _chains(text, mentions):
        _share_status(chain)
        chain = [m for m in chain if m.status in ("positive", "negative")]
        if connector == "or":
            chain = _drop_either_status(chain)
        if not chain or _not_a_requirement(criterion, chain[0].fact_start, chain[-1].fact_end):
            continue
        one_rule = connector == "or" or (connector is None and all(m.status == "positive" for m in chain))
        for group in [chain] if one_rule else [[m] for m in chain]:
            stated = stated_requirement(criterion, group[0].start, group[0].end)
            quote = _quote(text, min(m.fact_start for m in group), max(m.fact_end for m in group))
            for tests in _rule_tests(group):
                yield "biomarkers", {"requirement": stated, "any_of": tests, "evidence": evidence(criterion, quote)}


def _drop_either_status(chain: list[_Mention]) -> list[_Mention]:
    """ "ER+ or ER-": a marker allowed either way in one list of alternatives is no requirement."""
    statuses: dict[str, set] = {}
    for mention in chain:
        if len(mention.markers) == 1:  # not a family or subtype ("TNBC or HR+/HER2-" are alternative subtypes)
            statuses.setdefault(mention.markers[0], set()).add(mention.status)
    either = {marker for marker, found in statuses.items() if len(found) > 1}
    return [m for m in chain if not (len(m.markers) == 1 and m.markers[0] in either)]


def _quote(text: str, start: int, end: int) -> str:
    """text[start:end], closing a parenthesis it opened ("estrogen receptor positive (ER+)")."""
    if text.count("(", start, end) > text.count(")", start, end) and text.startswith(")", end):
        end += 1
    return text[start:end]


def _mentions(text: str) -> list[_Mention]:
    hits = _marker_hits(text)
    mentions = []
    for index, hit in enumerate(hits):
        following = hits[index + 1].start if index + 1 < len(hits) else len(text)
        mention = _mention(text, hit, following)
        if mention is not None and (not mentions or mention.start >= mentions[-1].fact_end):
            mentions.append(mention)
    return [m for i, m in enumerate(mentions) if not _named_by_members(text, m, mentions[i + 1 : i + 2])]


_MEMBERS_GAP = re.compile(r"(?i)\bgenes?\b|[(:]|\bsuch\s+as\b|\bincluding\b|\bi\.e\.|\be\.g\.")


def _named_by_members(text: str, family: _Mention, following: list[_Mention]) -> bool:
    """ "HRR genes BRCA1, BRCA2 or ATM": a panel followed by members of it is named by those members."""
    if len(family.markers) < 2 or not following:
        return False
    member = following[0]
    if not set(member.markers) < set(family.markers) or member.start - family.end > 40:
        return False
    return bool(_MEMBERS_GAP.search(text, family.end, member.start))  # not "TNBC or HR+/HER2-": alternatives


def _mention(text: str, hit: _Hit, following: int) -> _Mention | None:
    """One marker mention with whatever its own wording says; None for a therapy ("anti-HER2")."""
    row = hit.marker
    start, end = hit.start, hit.end
    if row.context and not _in_biomarker_context(text, start, end):
        return None  # "CR or PR", "CR1+": a clinical word, not a marker
    if _TARGET_BEFORE.search(text, max(0, start - 12), start) or _CELLS_AFTER.match(text, end):
        return None
    if _UNKNOWN_BEFORE.search(text, max(0, start - 120), start) or _ABSENCE_BEFORE.search(text, max(0, start - 30), start):
        return None
    mention = _Mention(start, end, list(row.markers), row.status, row.alteration)
    mention.fact_start, mention.fact_end = start, end
    if row.variant:
        mention.variants.append(row.variant)
    if hit.glued:
        mention.variants.append(hit.glued)  # "BRAFV600E"
    if mention.status is None:
        _read_status_after(text, mention)
    if mention.status in ("positive", "negative") and not row.status and _TESTING_AFTER.match(text, mention.fact_end):
        mention.status = None  # "available for NECTIN4 gene amplification testing": a test, not a finding
    if mention.fact_end == end and _TESTED_BEFORE.search(text, max(0, start - 30), start):
        return None  # "FISH studies for del(17p)": no finding stated
    if mention.status is None and _THERAPY_AFTER.match(text, end):
        return None  # "EGFR TKI", "KRAS G12C inhibitor", "HER2-targeted therapy"
    if mention.status is None:
        _read_status_before(text, mention)
    limit = min(following, clause_bounds(text, start, end)[1], mention.fact_end + 80)
    window = text[start:limit]
    if mention.markers[0] not in _EXPRESSION_MARKERS:
        _read_variants(text, mention, limit)
        if text.count("(", end, mention.fact_end) > text.count(")", end, mention.fact_end) and text.startswith(")", mention.fact_end):
            mention.fact_end += 1  # "BRAF (V600E)": the variant's parenthesis closes with it
    if mention.variants and mention.status is None and not _TEST_AFTER.match(text, mention.fact_end):
        mention.status, mention.alteration = "positive", mention.alteration or "mutation"  # inv(16) stays a fusion
    if mention.variants and mention.alteration in (None, "deletion"):
        mention.alteration = "mutation"  # "EGFR exon 19 deletion" is an EGFR mutation
    mention.method = mention.method or _first_method(window)
    if mention.markers == ["ERBB2"] and mention.status == "positive" and mention.value is None:
        _read_her2_definition(text, mention, limit)
    return mention


def _first_method(window: str) -> str | None:
    found = [(match.start(), name) for name, pattern in _METHODS if (match := pattern.search(window))]
    return min(found)[1] if found else None


def _read_status_after(text: str, mention: _Mention) -> None:
    status = _STATUS_AFTER.match(text[mention.end : mention.end + 100])
    if not status:
        return
    kind, words = status.lastgroup, status.group(status.lastgroup)
    mention.fact_end = mention.end + status.end()
    if kind == "any":
        mention.status = "any"  # "ER positive or negative": no requirement
    elif kind == "value":
        mention.value = _value_text(words)
        mention.status = "negative" if re.search(r"<|≤|less\s+than", words) else "positive"
        mention.alteration = None if mention.markers[0] == "TMB" else "expression"
    elif kind == "score":
        mention.value = words.replace(" ", "")
        mention.status, mention.method = "positive", "IHC"
        mention.alteration = "overexpression" if mention.value == "3+" else "expression"
    elif kind == "low" and mention.markers == ["ERBB2"]:
        mention.status, mention.alteration, mention.value, mention.method = "positive", "expression", _HER2_LOW_VALUE, "IHC"
    elif kind in ("negative", "low"):
        mention.status, mention.alteration = "negative", _alteration_named(words) or mention.alteration
    else:
        # the term's own alteration ("BCR::ABL1" is a fusion) unless the status word names one
        mention.status, mention.alteration = "positive", kind if kind in _ALTERATION_KINDS else mention.alteration
        then = _THEN_STATUS.match(text, mention.fact_end)
        if then:
            mention.status = "negative" if then.group("negative") else "positive"
            mention.fact_end = then.end()


def _read_status_before(text: str, mention: _Mention) -> None:
    before = _STATUS_BEFORE.search(text, max(0, mention.start - 100), mention.start)
    if before:
        mention.status = "negative" if before.group("negative") else "positive"
        mention.alteration = _alteration_named(before.group("word"))
        mention.status_before, mention.fact_start = True, before.start()


def _value_text(words: str) -> str:
    """A threshold as written, with ASCII comparators: "TPS ≥50%" -> "TPS >= 50%"."""
    words = re.sub(r"\s+", " ", words.strip())
    for symbol, ascii_form in (("≥", ">="), ("=>", ">="), ("≤", "<="), ("=<", "<=")):
        words = words.replace(symbol, ascii_form)
    words = re.sub(r"^of\s*", "", words)
    return re.sub(r"\s*(>=|<=|>|<)\s*", r" \1 ", words).strip()


def _read_variants(text: str, mention: _Mention, limit: int) -> None:
    found = mention.variants
    for match in _VARIANT.finditer(text, mention.start, limit):
        mention.fact_end = max(mention.fact_end, match.end())
        if match.group("exon"):
            kind = match.group("exon_kind")
            found.append(f"exon {match.group('exon')} {_EXON_KIND.get(kind, kind)}" if kind else f"exon {match.group('exon')}")
        elif match.group("short_exon"):
            found.append(f"exon {match.group('short_exon')} {_EXON_KIND[match.group('short_kind')]}")
        elif match.group("hgvs"):
            found.append(match.group("hgvs"))
        elif match.group("protein"):
            protein = match.group("protein")
            found.append(protein + (match.group("to") or ""))
            if match.group("to2"):
                found.append(protein + match.group("to2"))  # "V600E/K"
        else:
            found.append(match.group("itd"))
    mention.variants = list(dict.fromkeys(found))


def _read_her2_definition(text: str, mention: _Mention, limit: int) -> None:
    """ "HER2-positive (IHC 3+ or ISH amplified)": one test per way of being positive."""
    window_start = mention.fact_end
    score = _HER2_IHC_SCORE.search(text, window_start, limit)
    ish = _HER2_ISH_POSITIVE.search(text, window_start, limit)
    if score and score.group("score") == "3":
        mention.tests.append(_test("ERBB2", "positive", "overexpression", None, "IHC", "3+"))
    if ish:
        mention.tests.append(_test("ERBB2", "positive", "amplification", None, "ISH", None))
    ends = [m.end() for m in (score, ish) if m]
    if mention.tests:
        mention.fact_end = max(ends)
        closing = text.find(")", mention.fact_end, limit)
        mention.fact_end = closing + 1 if closing != -1 and "(" in text[window_start : mention.fact_end] else mention.fact_end


def _chains(text: str, mentions: list[_Mention]) -> Iterator[tuple[list[_Mention], str | None]]:
    """Mentions joined by connectors, with the chain's word: "or" (also and/or, nor), "and", or None."""
    chain: list[_Mention] = []
    words: set[str] = set()
    for mention in mentions:
        joint = _CONNECTOR.fullmatch(text, chain[-1].fact_end, mention.fact_start) if chain else None
        if joint and not (joint.group("word") or joint.group("cjk")) and _has_comma(joint.group()) and chain[-1].status and mention.status:
            joint = None  # "BRCA1 or BRCA2 deficient, HER2 negative": a comma between two findings ends the list
        if chain and joint is None:
            yield chain, _chain_word(words)
            chain, words = [], set()
        if joint is not None and (joint.group("word") or joint.group("cjk")):
            words.add(_CJK_WORDS.get(joint.group("cjk")) or joint.group("word").lower())
        chain.append(mention)
    if chain:
        yield chain, _chain_word(words)


def _has_comma(joint: str) -> bool:
    return any(comma in joint for comma in ",，、")


def _chain_word(words: set[str]) -> str | None:
    if words & {"or", "and/or", "nor"}:
        return "or"
    return "and" if words else None


def _share_status(chain: list[_Mention]) -> None:
    """ "ER and PR negative": a mention without status takes the next one's; "mutations in EGFR, ALK": the first's."""
    donor = None
    for mention in reversed(chain):
        if mention.status is not None:
            donor = mention
        elif donor is not None:
            _take_status(mention, donor, fact_end=donor.fact_end)
    head = chain[0]
    if head.status_before:
        for mention in chain[1:]:
            if mention.status is None:
                _take_status(mention, head, fact_end=mention.end)
                mention.fact_start = head.fact_start


def _take_status(mention: _Mention, donor: _Mention, fact_end: int) -> None:
    mention.status, mention.alteration, mention.value = donor.status, donor.alteration, donor.value
    mention.method = mention.method or donor.method
    mention.fact_end = fact_end


def _not_a_requirement(criterion: Criterion, start: int, end: int) -> bool:
    """Does the sentence use the biomarker only to condition something else, or to name one tumour of a basket?"""
    text = criterion.text
    context = annotate(text)
    if context.is_("conditional", start, end):
        return True  # "For patients with EGFR mutation, ..."; "Patients with EGFR mutation must have received a TKI"
    if criterion.kind == "exclusion" and context.is_("permitted", start, end):
        return True  # "Other DLL3 targeting agents are allowed only if DLL3 positivity is documented"; "... are eligible"
    sentence_start, sentence_end = context.sentence(start, end)
    if _ONE_ALTERNATIVE_BEFORE.search(text, max(sentence_start, start - 80), start) and _TUMOUR_NOUN.search(text, end, sentence_end):
        return True  # "Advanced melanoma or PD-L1-positive solid tumor": the marker qualifies one alternative
    # "urothelial carcinoma, triple negative breast cancer, NSCLC, ...": a subtype among the tumour types.
    names_a_tumour = _TUMOUR_AFTER.match(text, end) or _TUMOUR_NOUN.fullmatch(text, start, end)
    return bool(names_a_tumour) and len(_TUMOUR_NOUN.findall(text, sentence_start, sentence_end)) >= 3


def _rule_tests(group: list[_Mention]) -> Iterator[list[dict[str, Any]]]:
    """The tests of each rule: a lone family named negative ("RAS wild-type") is one rule per member."""
    tests = [test for mention in group for test in _tests(mention)]
    if len(group) == 1 and group[0].status == "negative" and len(group[0].markers) > 1:
        yield from ([test] for test in tests)
    elif tests:
        yield list({tuple(test.values()): test for test in tests}.values())


def _tests(mention: _Mention) -> list[dict[str, Any]]:
    if mention.tests:
        return mention.tests
    return [
        _test(marker, mention.status, _alteration_of(marker, mention.alteration), variant, mention.method, mention.value)
        for marker in mention.markers
        for variant in (mention.variants or [None])
    ]


def _alteration_of(marker: str, alteration: str | None) -> str | None:
    """ "ER-positive" speaks of expression; "HER2-positive" or "ALK-positive" does not say."""
    return "expression" if alteration is None and marker in _EXPRESSION_MARKERS else alteration


def _test(marker, status, alteration, variant, method, value) -> dict[str, Any]:
    return {"marker": marker, "status": status, "alteration": alteration, "variant": variant, "method": method, "value": value}


# "HER2-positive is defined as ...", "HER2 positivity is defined by ...": a criterion that defines a status.
_DEFINITION = gated(re.compile(
    r"(?i)^\W*(?P<name>[\w/.-]+(?:\s+[\w/.-]+){0,5}?)[\s-]*(?:positiv\w*|\+)(?:\s*\([^()]{0,30}\))?"
    r"(?:\s+(?:disease|status|tumou?rs?|expression))?\s+(?:is|are|will\s+be|must\s+be)?\s*(?:defined|determined|confirmed)\s+(?:as|by)\b"
))


def defined_marker(criterion: Criterion) -> str | None:
    """The marker whose positive status the criterion defines ("HER2-positive is defined as ..."), or None."""
    opener = _DEFINITION.match(criterion.text)
    if not opener:
        return None
    named = [hit for hit in _marker_hits(criterion.text) if opener.start("name") <= hit.start < opener.end("name")]
    return named[0].marker.markers[0] if len(named) == 1 and len(named[0].marker.markers) == 1 else None


def merge_definitions(rules: list[dict[str, Any]], criteria: list[Criterion]) -> list[dict[str, Any]]:
    """A status defined in criteria of its own ("HER2-positive is defined as HER2 3+ ...", "... or HER2
    amplification") gives the ways of meeting the rule that requires it: ONE rule whose alternatives are the
    definitions' tests, in place of the bare "HER2-positive" rule, grounded on the first definition."""
    defining = {c.id: marker for c in criteria if (marker := defined_marker(c))}
    if not defining:
        return rules
    merged = list(rules)
    for marker in dict.fromkeys(defining.values()):
        definitions = [
            rule for rule in merged
            if defining.get(rule["evidence"]["criterion_id"]) == marker and rule["requirement"] == "required"
            and all(test["marker"] == marker and test["status"] == "positive" for test in rule["any_of"])
        ]
        tests = list({tuple(t.values()): t for rule in definitions for t in rule["any_of"]}.values())
        if len(tests) < 2 and len(definitions) < 2:
            continue  # one definition stating one test: nothing to join
        rule = dict(definitions[0], any_of=tests, evidence=_definition_evidence(definitions[0]["evidence"], criteria))
        bare = next((r for r in merged if r not in definitions and _bare(r, marker)), None)
        at = merged.index(bare if bare is not None else definitions[0])
        merged[at] = rule
        merged = [r for r in merged if r is rule or (r not in definitions and r is not bare)]
    return merged


def _definition_evidence(first: dict[str, Any], criteria: list[Criterion]) -> dict[str, Any]:
    """The definition's words from its opening to its first test: "HER2-positive is defined as HER2 3+"."""
    criterion = next(c for c in criteria if c.id == first["criterion_id"])
    at = criterion.text.find(first["quote"])
    opener = _DEFINITION.match(criterion.text)
    if at < 0 or opener is None or opener.start("name") > at:
        return first
    return dict(first, quote=criterion.text[opener.start("name") : at + len(first["quote"])])


def _bare(rule: dict[str, Any], marker: str) -> bool:
    """A required rule naming the marker positive and nothing more ("HER2-positive breast cancer")."""
    tests = rule["any_of"]
    return rule["requirement"] == "required" and len(tests) == 1 and tests[0]["marker"] == marker and tests[0]["status"] == "positive" \
        and not any(tests[0][key] for key in ("alteration", "variant", "method", "value"))
