"""Lab thresholds: "ANC >= 1.5 x 10^9/L", "AST/ALT <= 2.5 x ULN (<= 5 x ULN if liver metastases)".

Each analyte (or group of analytes: "AST/ALT", "PT/INR") is followed by one or more thresholds: a
comparator with a value and unit, a multiple of ULN, or "within normal limits". A threshold's
condition ("if liver metastases", "for patients with Gilbert's syndrome") is kept as written. An
exclusion's threshold is restated as what the patient must meet ("QTcF > 470 ms" excludes: <= 470).
"Adequate organ function" with no numbers in the criterion gives the kind of function alone.
"""

from __future__ import annotations

import re
from typing import Iterator

from extract.rules.patterns import trie_alternation
from extract.rules.polarity import cohort_specific
from extract.rules.quantities import COMPARATOR_AFTER, COMPARATOR_BEFORE, NUMBER, clean_number, comparator, number, restated
from extract.rules.vocab import load_tsv
from schemas import Criterion


def _is_abbreviation(phrase: str) -> bool:
    return len(phrase) <= 5 and any(c.isupper() for c in phrase)


_ANALYTES = {row["phrase"] if _is_abbreviation(row["phrase"]) else row["phrase"].lower(): row["analyte"] for row in load_tsv("analytes.tsv")}
_UNITS = {row["written"]: row["unit"] for row in load_tsv("units.tsv")}


# Abbreviations keep their case ("PT", "Hb"); names ignore it ("Platelet count").
_ANALYTE = re.compile(
    rf"(?<![\w-])(?:(?i:{trie_alternation([p for p in _ANALYTES if not _is_abbreviation(p)])})"
    rf"|{trie_alternation([p for p in _ANALYTES if _is_abbreviation(p)])})(?![\w-])"
)
# Between two analytes of one group: "AST/ALT", "AST (SGOT) and ALT (SGPT)", "PT or INR".
_GROUP_GAP = re.compile(r"(?i)(?:[^\S\n]|[/,&+()\[\]]|\b(?:and/or|and|or|serum|levels?|counts?)\b)*")
# Between an analyte and its threshold: "(ANC)", "count of", "level must be", ": ".
_LEAD = re.compile(
    r"(?i)(?:[^\S\n]|[:,)\]]|\([^()\n]{0,60}\)|\[[^\[\]\n]{0,40}\]|\b(?:counts?|levels?|values?|must|be|is|are|of|"
    r"should|serum|plasma|total|absolute|concentration|measured|calculated|estimated|by|cockcroft[\s-]*gault|"
    r"interval|ratio|both|each|either|need|needs|to|has|have|a|an|the|result|at|screening|baseline)\b)*"
)
_ULN = (
    r"(?:(?:[x×*]|\btimes\b|-?\s*fold)?[^\S\n]*(?:the[^\S\n]+)?(?:institutional[^\S\n]+)?"
    r"(?:\bULN\b|\bIULN\b|\bUNL\b|\bupper[^\S\n]+limits?[^\S\n]+of[^\S\n]+(?:the[^\S\n]+)?normal(?:[^\S\n]+range)?|\bupper[^\S\n]+normal[^\S\n]+limit))"
)
_UNIT = (
    r"(?:[x×*][^\S\n]*10[^\S\n]*(?:\^|e|\*\*|\()?[^\S\n]*(?:9|3|6|⁹|³|⁶)\)?[^\S\n]*/[^\S\n]*(?:L|l|[uµμ]L|[uµμ]l|mcL|mm3|mm\^3|mm³)\b"
    r"|10[^\S\n]*\^[^\S\n]*9[^\S\n]*/[^\S\n]*L\b|G/L\b"
    r"|(?:cells)?[^\S\n]*/[^\S\n]*(?:(?:mm3|mm\^3|mm³|[uµμ]L|[uµμ]l|mcL|microliter|cumm)\b|mm\(3\))"
    r"|[Kk][^\S\n]*/[^\S\n]*(?:[uµμ]L|mm3)\b"
    r"|(?:g|gm|mg|ng|[uµμ]mol|mmol|mEq|mIU|IU|U)[^\S\n]*/[^\S\n]*(?:dL|dl|L|l|mL|ml|24[^\S\n]*h(?:ours?)?|g)\b"
    r"|m[lL][^\S\n]*/[^\S\n]*min(?:ute)?(?:[^\S\n]*/[^\S\n]*1[.,]73[^\S\n]*m(?:2|\^2|²))?"
    r"|%|\bmsec\b|\bms\b|\bmilliseconds\b|\bseconds\b|\bsec\b|\+)"
)
_THRESHOLD = re.compile(
    rf"""(?ix)
      (?P<before>{COMPARATOR_BEFORE})[^\S\n]*(?:
          (?P<uln_n>{NUMBER})?[^\S\n]*{_ULN}
        | (?P<n>{NUMBER})[^\S\n]*(?P<unit>{_UNIT})?)
    | (?P<n_after>{NUMBER})[^\S\n]*(?P<unit_after>{_UNIT})?[^\S\n]*(?P<after>{COMPARATOR_AFTER})
    | (?P<normal>within[^\S\n]+(?:the[^\S\n]+)?(?:institutional[^\S\n]+)?normal[^\S\n]+(?:institutional[^\S\n]+)?(?:limits?|range)|\bWNL\b)
    | (?P<lln>(?:{COMPARATOR_BEFORE})?[^\S\n]*(?:the[^\S\n]+)?(?:institutional[^\S\n]+)?(?:\bLLN\b|lower[^\S\n]+limit[^\S\n]+of[^\S\n]+normal))
    """
)
# Between two thresholds of one analyte: "(", "or", ",", a condition.
_NEXT_GAP = re.compile(r"(?i)(?:\((?:ULN|IULN|LLN)\)|[^\S\n]|[,;()]|\b(?:or|and)\b)*")
_CONDITION = re.compile(
    r"(?i)\b(?:if|for|in|with|unless)[^\S\n]+(?:the[^\S\n]+presence[^\S\n]+of[^\S\n]+|case[^\S\n]+of[^\S\n]+)?"
    r"(?:(?:patients?|participants?|subjects?|those|people|individuals)[^\S\n]+(?:with|who[^\S\n]+have|who[^\S\n]+are|having)[^\S\n]+)?"
    r"(?:documented[^\S\n]+|known[^\S\n]+|confirmed[^\S\n]+)?"
    r"(?P<condition>[^,;()\n<>≤≥=]{3,80}?)(?=[^\S\n]*(?:[,;()\n<>≤≥=]|$|\b(?:or|and)\b|:))"
)
# A qualifier is a condition only when it names a subgroup ("for age" is not one).
_SUBGROUP = re.compile(
    r"(?i)metasta|gilbert|liver|hepat|bone|marrow|leuk|lymphom|myelom|involv|hemoly|haemoly|\bmales?\b|\bfemales?\b|"
    r"\bmen\b|\bwomen\b|\bHCC\b|tumou?r|cirrho|syndrome|infiltrat|children|paediatric|pediatric"
)
# "... for patients with total bilirubin > 1.5 x ULN": an analyte inside another's condition.
_CONDITION_CUE = re.compile(
    r"(?i)(?:\b(?:if|for|in)[^\S\n]+|\b(?:patients?|participants?|subjects?)[^\S\n]+with[^\S\n]+)(?:(?:patients?|participants?|subjects?)[^\S\n]+with[^\S\n]+)?$"
)
# A subgroup named before the analyte: "For patients with Gilbert's syndrome, bilirubin <= 3 x ULN",
# "except in patients with Gilbert's syndrome, who must have a total bilirubin < 3.0 mg/dL".
_LEADING_CONDITION = re.compile(
    r"(?i)\b(?:patients?|participants?|subjects?|those)[^\S\n]+with[^\S\n]+(?:known[^\S\n]+|documented[^\S\n]+)?"
    r"(?P<condition>[^,:;\n]{3,60}?)[^\S\n]*[,:]?[^\S\n]*(?:who[^\S\n]+(?:must|should)[^\S\n]+have[^\S\n]+(?:an?[^\S\n]+)?)?$"
)
_ADEQUATE = re.compile(
    r"(?i)\b(?P<negation>in)?adequate[^\S\n]+(?P<kinds>(?:(?:bone[^\S\n]+marrow|h[a]?ematologic(?:al)?|haematologic(?:al)?|renal|kidney|hepatic|liver|"
    r"cardiac|heart|end[\s-]organ|organ|and|or|,)[^\S\n]*)+)(?:function|reserve)"
)
_KINDS = (
    (re.compile(r"(?i)marrow|h[a]?ematolog|haematolog"), "hematologic_function"),
    (re.compile(r"(?i)renal|kidney"), "renal_function"),
    (re.compile(r"(?i)hepatic|liver"), "hepatic_function"),
    (re.compile(r"(?i)cardiac|heart"), "cardiac_function"),
    (re.compile(r"(?i)organ"), "organ_function"),
)
_QUICK = re.compile(r"[\dUL]|(?i:normal|adequate)")


def _unit(written: str | None) -> str | None:
    if not written:
        return None
    compact = re.sub(r"\s+", "", written).replace("×", "x").replace("*", "x").replace("µ", "u").replace("μ", "u")
    compact = compact.replace("⁹", "^9").replace("³", "^3").replace("⁶", "^6").replace("²", "2")
    return _UNITS.get(compact.lower(), compact)


def _threshold(match: re.Match, exclusion: bool) -> dict | None:
    """The item fields one threshold gives, or None when it is not a threshold."""
    if match["normal"]:
        return {"comparator": "<=", "value": None, "unit": None, "uln_multiple": 1}
    if match["lln"]:
        return {"comparator": None, "value": None, "unit": None, "uln_multiple": None}
    written = match["before"] or match["after"]
    canonical = restated(comparator(written)) if exclusion else comparator(written)
    if match["n_after"]:
        return {"comparator": canonical, "value": clean_number(number(match["n_after"])), "unit": _unit(match["unit_after"]), "uln_multiple": None}
    if match["n"]:
        return {"comparator": canonical, "value": clean_number(number(match["n"])), "unit": _unit(match["unit"]), "uln_multiple": None}
    multiple = clean_number(number(match["uln_n"])) if match["uln_n"] else 1
    return {"comparator": canonical, "value": None, "unit": None, "uln_multiple": multiple}


def _groups(text: str) -> Iterator[tuple[list[str], int, int]]:
    """(analytes, start, end) for each analyte or group of analytes named together."""
    mentions = list(_ANALYTE.finditer(text))
    i = 0
    while i < len(mentions):
        first = mentions[i]
        analytes = [_ANALYTES.get(first.group(), _ANALYTES.get(first.group().lower(), ""))]
        while i + 1 < len(mentions) and _GROUP_GAP.fullmatch(text, mentions[i].end(), mentions[i + 1].start()):
            i += 1
            found = mentions[i].group()
            analytes.append(_ANALYTES.get(found, _ANALYTES.get(found.lower(), "")))
        yield [a for n, a in enumerate(analytes) if a and a not in analytes[:n]], first.start(), mentions[i].end()
        i += 1


def _thresholds(text: str, start: int, stop: int, exclusion: bool) -> Iterator[tuple[dict, int]]:
    """The thresholds following an analyte group at `start`, up to `stop`, with where each ends."""
    lead = _LEAD.match(text, start, stop)
    match = _THRESHOLD.match(text, lead.end(), stop)
    previous: dict | None = None
    while match:
        fields = _threshold(match, exclusion)
        end = match.end()
        gap = _NEXT_GAP.match(text, end, stop)
        condition = _CONDITION.match(text, gap.end(), stop)
        if condition and _SUBGROUP.search(condition["condition"]):
            follows = _NEXT_GAP.match(text, condition.end(), stop)
            following = _THRESHOLD.match(text, follows.end(), stop)
            if following and follows.end() - condition.end() < 4:
                # "..., for patients with liver metastases <= 5 x ULN": the condition leads the next one
                yield fields, end
                fields, end = _threshold(following, exclusion), following.end()
                match = following
            fields["condition"] = condition["condition"].strip(" .")
            end = max(end, condition.end())
            gap = _NEXT_GAP.match(text, end, stop)
        # "1.5 x 10^9/L (1,500/mm3)" gives one threshold in two units: keep the first
        equivalent = (
            previous is not None
            and None not in (fields["unit"], previous["unit"])
            and fields["unit"] != previous["unit"]
            and fields["comparator"] == previous["comparator"]
            and "condition" not in fields
        )
        if not equivalent:
            yield fields, end
        previous = fields
        match = _THRESHOLD.match(text, gap.end(), stop)


def find(criterion: Criterion) -> Iterator[tuple[str, dict]]:
    text = criterion.text
    if not _QUICK.search(text) or cohort_specific(text):
        return
    exclusion = criterion.kind == "exclusion"
    groups = list(_groups(text))
    found_numbers = False
    for index, (analytes, start, end) in enumerate(groups):
        if not analytes or _CONDITION_CUE.search(text, max(0, start - 40), start):
            continue
        stop = groups[index + 1][1] if index + 1 < len(groups) else len(text)
        line_end = text.find("\n", end)
        stop = min(stop, line_end) if line_end >= 0 else stop
        line_start = text.rfind("\n", 0, start) + 1
        leading = _LEADING_CONDITION.search(text, max(line_start, start - 100), start)
        leading = leading if leading and _SUBGROUP.search(leading["condition"]) else None
        for fields, quote_end in _thresholds(text, end, stop, exclusion):
            found_numbers = True
            if leading and "condition" not in fields:
                fields["condition"] = leading["condition"].strip()
            quote = text[start:quote_end].strip()
            if (fields["unit"] or "").startswith("mL/min") and len(analytes) > 1:
                # "creatinine clearance (... creatinine or CrCl) >= 60 mL/min" is a clearance only
                analytes = [a for a in analytes if a != "creatinine"]
            for analyte in analytes:
                item = {"analyte": analyte, **fields}
                item.setdefault("condition", None)
                item["evidence"] = {"criterion_id": criterion.id, "quote": quote}
                yield "labs", item
    if found_numbers:
        return
    for adequate in _ADEQUATE.finditer(text):
        if bool(adequate["negation"]) != exclusion:
            continue
        for pattern, kind in _KINDS:
            if pattern.search(adequate["kinds"]):
                yield "labs", {"analyte": kind, "comparator": None, "value": None, "unit": None, "uln_multiple": None,
                               "condition": None, "evidence": {"criterion_id": criterion.id, "quote": adequate.group()}}
