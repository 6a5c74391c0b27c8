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

from extract.rules.polarity import cohort_specific, evidence
from extract.rules.quantities import COMPARATOR_AFTER, COMPARATOR_BEFORE, NUMBER, clean_number, comparator, number, restated
from extract.rules.vocab import is_abbreviation, key_forms, load_tsv, token_forms, trie_alternation
from schemas import Criterion


_ANALYTES = {row["phrase"] if is_abbreviation(row["phrase"]) else row["phrase"].lower(): row["analyte"] for row in load_tsv("analytes.tsv")}
# Analytes whose normal range only matters from below: "LVEF within normal limits" states no upper side.
_FLOOR_ONLY = {"lvef", "creatinine_clearance", "gfr"}
_UNITS = {row["written"]: row["unit"] for row in load_tsv("units.tsv")}


# Abbreviations keep their case ("PT", "Hb"); names ignore it ("Platelet count").
_ANALYTE = re.compile(
    rf"(?<![\w-])(?:(?i:{trie_alternation([p for p in _ANALYTES if not is_abbreviation(p)])})"
    rf"|{trie_alternation([p for p in _ANALYTES if is_abbreviation(p)])})(?![\w-])"
)
# What every match of _ANALYTE begins with: a token that is a name's first, as written for an abbreviation.
_ANALYTE_FIRST_TOKENS = frozenset(key_forms(phrase, exact=is_abbreviation(phrase))[0] for phrase in _ANALYTES)
# Between two analytes of one group: "AST/ALT", "AST (SGOT) and ALT (SGPT)", "PT or INR".
_GROUP_GAP = re.compile(r"(?i)(?:[^\S\n]|[/,&+()\[\]]|\b(?:and/or|and|or|serum|levels?|counts?)\b)*")
# Between an analyte and its threshold: "(ANC)", "count of", "level must be", ": ".
_LEAD = re.compile(
    r"(?i)(?:[^\S\n]|[:,)\]]|\((?=[^\S\n]*(?:[<>≤≥=]|\d))|\([^()\n]{0,60}\)|\[[^\[\]\n]{0,40}\]|\b(?:counts?|levels?|values?|must|be|is|are|of|"
    r"should|serum|plasma|total|absolute|concentration|measured|calculated|estimated|by|cockcroft[\s-]*gault|"
    r"interval|ratio|both|each|either|need|needs|to|has|have|a|an|the|result|at|screening|baseline|"
    r"using|equation|formula|method|measurement|in|peripheral|blood|prolongation|they|castrate)\b)*"
)
_ULN = (
    r"(?:(?:[x×*]|\btimes\b|-?\s*fold)?[^\S\n]*(?:the[^\S\n]+)?(?:institutional[^\S\n]+)?"
    r"(?:\bULN\b|\bIULN\b|\bUNL\b|\bupper[^\S\n]+limits?[^\S\n]+of[^\S\n]+(?:the[^\S\n]+)?normal(?:[^\S\n]+range)?|\bupper[^\S\n]+normal[^\S\n]+limit|(?<=[x×*\s])normal[^\S\n]+limits?\b))"
)
_UNIT = (
    r"(?:[x×*][^\S\n]*10[^\S\n]*(?:\^|e|\*\*|\()?[^\S\n]*(?:9|3|6|⁹|³|⁶)\)?[^\S\n]*/[^\S\n]*(?:L|l|[uµμ]L|[uµμ]l|mcL|mm3|mm\^3|mm³)\b"
    r"|10[^\S\n]*\^[^\S\n]*9[^\S\n]*/[^\S\n]*L\b|G/L\b"
    r"|(?:cells)?[^\S\n]*(?:/|\bper\b)[^\S\n]*(?:(?:mm3|mm\^3|mm³|[uµμ]L|[uµμ]l|mcL|microliter|cumm|mL)\b|mm\(3\))"
    r"|[Kk][^\S\n]*/[^\S\n]*(?:[uµμ]L|mm3)\b"
    r"|(?:g|gm|mg|ng|[uµμ]mol|nmol|pmol|mmol|mEq|mIU|IU|U)[^\S\n]*/[^\S\n]*(?:dL|dl|L|l|mL|ml|24[^\S\n]*h(?:ours?)?|g)\b"
    r"|m[lL][^\S\n]*/[^\S\n]*min(?:ute)?(?:[^\S\n]*/[^\S\n]*1[.,]73[^\S\n]*m(?:2|\^2|²))?"
    r"|%|\bmsec\b|\bms\b|\bmilliseconds\b|\bseconds\b|\bsec\b|\+)"
)
_THRESHOLD = re.compile(
    rf"""(?ix)
      (?P<before>{COMPARATOR_BEFORE})[^\S\n]*(?:
          (?P<uln_n>{NUMBER})?[^\S\n]*{_ULN}
        | (?P<n>{NUMBER})[^\S\n]*(?P<unit>{_UNIT})?)
    | (?P<n_after>{NUMBER})[^\S\n]*(?P<unit_after>{_UNIT})?[^\S\n]*(?P<after>{COMPARATOR_AFTER})
    | (?P<normal>within[^\S\n]+(?:the[^\S\n]+)?(?:institutional[^\S\n]+)?(?:normal[^\S\n]+(?:institutional[^\S\n]+)?(?:limits?|range)|limits[^\S\n]+of[^\S\n]+normal)|\bWNL\b)
    | (?P<lln>(?:{COMPARATOR_BEFORE})?[^\S\n]*(?:the[^\S\n]+)?(?:institutional[^\S\n]+)?(?:\bLLN\b|lower[^\S\n]+limit[^\S\n]+of[^\S\n]+normal))
    """
)
# Between two thresholds of one analyte: "(", "or", ",", a condition.
_NEXT_GAP = re.compile(r"(?i)(?:\((?:ULN|IULN|LLN)\)|[^\S\n]|[,;()]|\b(?:or|and)\b)*")
_CONDITION = re.compile(
    r"(?i)\b(?:if|for|in|with(?![^\S\n]+the[^\S\n]+exception))[^\S\n]+(?:the[^\S\n]+presence[^\S\n]+of[^\S\n]+|case[^\S\n]+of[^\S\n]+)?"
    r"(?:(?:patients?|participants?|subjects?|those|people|individuals)[^\S\n]+(?:with|who[^\S\n]+have|who[^\S\n]+are|having)[^\S\n]+)?"
    r"(?:documented[^\S\n]+|known[^\S\n]+|confirmed[^\S\n]+)?"
    r"(?P<condition>[^,;()\n<>≤≥=]{3,80}?)(?=[^\S\n]*(?:[,;()\n<>≤≥=]|$|\b(?:or|and)\b|:))"
)
# "(female subjects)" after a threshold: a subgroup in parentheses.
_PAREN_CONDITION = re.compile(r"(?i)\((?!\s*(?:excluding|except|unless|not|no|without)\b)(?P<condition>[^()\n\d<>≤≥=]{3,40})\)")
# "unless liver metastases are present, in which case they must be < 5 x ULN": the exception is the
# condition of what follows "in which case"; with nothing following, the threshold has no condition.
_UNLESS = re.compile(
    r"(?i)\bunless[^\S\n]+(?:due[^\S\n]+to[^\S\n]+|there[^\S\n]+is[^\S\n]+|the[^\S\n]+patient[^\S\n]+has[^\S\n]+|documented[^\S\n]+)?"
    r"(?P<condition>[^,;:()\n<>≤≥=]{3,80}?)[^\S\n]*(?:(?:are|is)[^\S\n]+present[^\S\n]*)?,?[^\S\n]*in[^\S\n]+which[^\S\n]+case\b"
    r"[^\S\n]*,?[^\S\n]*(?:the[^\S\n]+)?$"
)
_UNLESS_NEXT = re.compile(
    r"(?i)[^\S\n]*\bunless[^\S\n]+(?:due[^\S\n]+to[^\S\n]+|there[^\S\n]+is[^\S\n]+|documented[^\S\n]+)?"
    r"(?P<condition>[^,;:()\n<>≤≥=]{3,80}?)[^\S\n]*(?:(?:are|is)[^\S\n]+present[^\S\n]*)?,?[^\S\n]*in[^\S\n]+which[^\S\n]+case\b"
    r"[^\S\n]*,?[^\S\n]*(?:(?:they|it|these|values?)[^\S\n]+)?(?:(?:must|should)[^\S\n]+(?:be|have)[^\S\n]+)?"
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
    r"(?i)\b(?:patients?|participants?|subjects?|those)[^\S\n]+(?P<on>on[^\S\n]+|receiving[^\S\n]+|taking[^\S\n]+)?(?(on)|with[^\S\n]+)(?:known[^\S\n]+|documented[^\S\n]+)?"
    r"(?P<condition>[^,:;\n]{3,60}?)[^\S\n]*[,:]?[^\S\n]*(?:(?:who[^\S\n]+)?(?:must|should)[^\S\n]+have[^\S\n]+(?:an?[^\S\n]+)?)?$"
)
_ADEQUATE = re.compile(
    r"(?i)\b(?P<negation>in)?adequate[^\S\n]+(?:normal[^\S\n]+)?(?:(?P<kinds>(?:(?:bone[^\S\n]+marrow|h[a]?ematologic(?:al)?|haematologic(?:al)?|renal|kidney|hepatic|liver|"
    r"cardiac|heart|end[\s-]organ|organ|coagulation|reserve|and|or|,)[^\S\n]*)+)(?:function|reserve)|(?P<lab>laboratory[^\S\n]+(?:parameters|values|results)))"
)
_KINDS = (
    (re.compile(r"(?i)marrow|h[a]?ematolog|haematolog"), "hematologic_function"),
    (re.compile(r"(?i)renal|kidney"), "renal_function"),
    (re.compile(r"(?i)hepatic|liver"), "hepatic_function"),
    (re.compile(r"(?i)cardiac|heart"), "cardiac_function"),
    (re.compile(r"(?i)organ"), "organ_function"),
)
# "Adequate organ function as defined below:": the numbers follow in other criteria.
_DEFINED_BELOW = re.compile(r"(?i)\bdefined[^\S\n]+(?:as|by|below|in)\b|\b(?:as[^\S\n]+follows|following|below)\b|:\s*$")
_OR_BREAK = re.compile(r"(?i);|\bor\b")
_WITH = re.compile(r"[^\S\n]*,?[^\S\n]*with[^\S\n]+(?:an?[^\S\n]+|the[^\S\n]+)?")
_SPACE = re.compile(r"[^\S\n]*")
_QUICK = re.compile(r"[\dUL]")


def _unit(written: str | None) -> str | None:
    if not written:
        return None
    compact = re.sub(r"\s+", "", written).replace("×", "x").replace("*", "x").replace("µ", "u").replace("μ", "u")
    compact = compact.replace("⁹", "^9").replace("³", "^3").replace("⁶", "^6").replace("²", "2")
    return _UNITS.get(compact.lower(), compact)


def _threshold(match: re.Match, exclusion: bool) -> dict | None:
    """The item fields one threshold gives, or None when it is not a threshold."""
    if match["normal"]:
        return {"comparator": "<=", "value": None, "unit": None, "uln_multiple": 1, "normal": True}
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
    # a set test first (most criteria name no analyte); ASCII only: a case-insensitive match pairs a few
    # non-ASCII letters with ASCII ones ("K", "ſ")
    if text.isascii() and _ANALYTE_FIRST_TOKENS.isdisjoint(token_forms(text)):
        return
    mentions = list(_ANALYTE.finditer(text))
    i = 0
    while i < len(mentions):
        first = mentions[i]
        analytes = _named(first.group())
        while i + 1 < len(mentions) and _GROUP_GAP.fullmatch(text, mentions[i].end(), mentions[i + 1].start()):
            i += 1
            analytes += _named(mentions[i].group())
        yield [a for n, a in enumerate(analytes) if a and a not in analytes[:n]], first.start(), mentions[i].end()
        i += 1


def _named(found: str) -> list[str]:
    """The analytes a matched phrase names ("transaminases" names two)."""
    return _ANALYTES.get(found, _ANALYTES.get(found.lower(), "")).split(",")


def _subgroup(condition: str) -> bool:
    return bool(_SUBGROUP.search(condition) or _ANALYTE.search(condition))


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
        if condition and _ANALYTE.search(condition["condition"]) and not _OR_BREAK.search(text, end, condition.start()):
            # "for patients with total bilirubin levels > 1.5 x ULN": the condition is itself a threshold
            inner = _THRESHOLD.match(text, _NEXT_GAP.match(text, condition.end(), stop).end(), stop)
            if inner and not inner["lln"]:
                fields["condition"] = text[condition.start("condition") : inner.end()].strip(" .")
                end = inner.end()
                gap = _NEXT_GAP.match(text, end, stop)
                condition = None
        paren = None if condition else _PAREN_CONDITION.match(text, _SPACE.match(text, end, stop).end(), stop)
        if paren and _SUBGROUP.search(paren["condition"]):  # "> 470 msec (female subjects)"
            fields["condition"] = paren["condition"].strip()
            end = paren.end()
            gap = _NEXT_GAP.match(text, end, stop)
        elif condition and _subgroup(condition["condition"]):
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
        unless = _UNLESS_NEXT.match(text, end, stop)
        if unless:  # "... unless liver metastases are present, in which case they must be < 5 x ULN"
            following = _THRESHOLD.match(text, unless.end(), stop)
            if following:
                fields = _threshold(following, exclusion)
                fields["condition"] = unless["condition"].strip()
                yield fields, following.end()
                previous, end = fields, following.end()
                gap = _NEXT_GAP.match(text, end, stop)
        match = _THRESHOLD.match(text, gap.end(), stop)


def find(criterion: Criterion) -> Iterator[tuple[str, dict]]:
    text = criterion.text
    lower = text.lower()
    if not (_QUICK.search(text) or "normal" in lower or "adequate" in lower) or cohort_specific(text):
        return
    exclusion = criterion.kind == "exclusion"
    # an analyte named inside another's condition ("... for patients with total bilirubin > 1.5 x ULN")
    groups = [(analytes, start, end, bool(_CONDITION_CUE.search(text, max(0, start - 40), start))) for analytes, start, end in _groups(text)]
    items: list[dict] = []
    last_end, last_items = 0, []
    for index, (analytes, start, end, cued) in enumerate(groups):
        if cued:
            continue
        if last_items and _WITH.fullmatch(text, last_end, start):
            # "total bilirubin > 1.5 x ULN with direct bilirubin <= ULN": the first is the second's condition
            with_condition = {"condition": text[last_items[0]["evidence_start"] : last_end].strip()}
            items = [item for item in items if item not in last_items]
        else:
            with_condition = None
        last_items = []
        if not analytes:
            continue
        stop = next((g[1] for g in groups[index + 1 :] if not g[3]), len(text))
        line_end = text.find("\n", end)
        stop = min(stop, line_end) if line_end >= 0 else stop
        line_start = text.rfind("\n", 0, start) + 1
        leading = _LEADING_CONDITION.search(text, max(line_start, start - 100), start)
        leading = leading if leading and (leading["on"] or _SUBGROUP.search(leading["condition"])) else None
        unless = _UNLESS.search(text, max(line_start, start - 120), start)
        leading = with_condition or leading
        group_items = []
        for fields, quote_end in _thresholds(text, end, stop, exclusion):
            if "condition" not in fields and (leading or unless):
                fields["condition"] = (unless or leading)["condition"].strip()
            quote = text[start:quote_end].strip()
            if (fields["unit"] or "").startswith("mL/min") and len(analytes) > 1:
                # "creatinine clearance (... creatinine or CrCl) >= 60 mL/min" is a clearance only
                analytes = [a for a in analytes if a != "creatinine"]
            for analyte in analytes:
                item = {"analyte": analyte, **fields}
                item.setdefault("condition", None)
                if item.pop("normal", False) and analyte in _FLOOR_ONLY:
                    item.update(comparator=None, uln_multiple=None)  # "LVEF within normal limits": no upper side
                item["evidence"] = evidence(criterion, quote)
                item["evidence_start"] = start
                group_items.append(item)
            last_end = quote_end
        items += group_items
        last_items = group_items
    if items:
        # "LVEF >= 45% or lower limit of normal": the number states the floor; "normal" adds nothing
        floored = {item["analyte"] for item in items if item["comparator"] is not None}
        for item in items:
            item.pop("evidence_start")
            if item["comparator"] is not None or item["analyte"] not in floored:
                yield "labs", item
        return
    for adequate in _ADEQUATE.finditer(text) if "adequate" in lower else ():
        if bool(adequate["negation"]) != exclusion or _DEFINED_BELOW.search(text, adequate.end()):
            continue
        for pattern, kind in _KINDS:
            if adequate["lab"] and kind == "organ_function" or adequate["kinds"] and pattern.search(adequate["kinds"]):
                yield "labs", {"analyte": kind, "comparator": None, "value": None, "unit": None, "uln_multiple": None,
                               "condition": None, "evidence": evidence(criterion, adequate.group())}
