"""Normalise eligibility text and split it into single criteria. Pure: no I/O.

Every criterion is a span of the normalised text (`text[start:end] == criterion.text`), so evidence
offsets and criterion ids mean the same thing for every backend. Sub-bullets are kept with their
parent criterion: "Adequate organ function:" and its indented lab lines are one criterion.
"""

from __future__ import annotations

import html
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from extract.hashing import files_sha256
from schemas import Criterion

# The segmenter's version is its code: criterion ids and offsets follow from it, so the rules version
# and the LLM prompt version (whose cached answers name criterion ids) include it.
SEGMENTER_VERSION = files_sha256(Path(__file__).parent, [Path(__file__)])[:12]

# CommonMark lets any ASCII punctuation be backslash-escaped; the v2 API escapes >, <, =, [, ] ...
_MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")

_BULLET = re.compile(
    r"""^(?P<indent>[ \t]*)
        (?:(?:[*\-•·▪◦‣]+|\d{1,2}[.)]|\(\d{1,2}\)|[a-zA-Z][.)]|\([a-zA-Z]\)|(?:i{1,3}|iv|vi{0,3}|ix|x)[.)]|\((?:i{1,3}|iv|vi{0,3}|ix|x)\))
        [ \t]+
        |--(?=[^\W_]))  # "--No prior therapy": older records put their bullets right against the text""",
    re.VERBOSE,
)
_INDENT = re.compile(r"^[ \t]*")
_SECTION_WORD = re.compile(r"(?i)\b(inclusion|exclusion)s?\b")
# "Inclusion Criteria:", "KEY EXCLUSION CRITERIA", "Other Exclusions", "Exclusion criteria for patients include:"
_HEADING_ONLY = re.compile(r"(?i)^[\w /()-]{0,40}\b(?:inclusion|exclusion)s?\b(?: criteria| criterion)?[\w /(),-]{0,50}:?$")
# "Inclusion criteria: Age 18 or over" puts the heading and a criterion on one line.
_HEADING_PREFIX = re.compile(r"(?i)^(?:(?:key|main|general|selected|major)\s+)?(inclusion|exclusion)s?(?:\s+criteria)?\s*:\s*(?=\S)")
# Section labels of older records ("DISEASE CHARACTERISTICS:"): structure, not criteria.
_LABEL = re.compile(r"^[A-Z][A-Z0-9 ,/&()'-]{2,60}:$")
_SENTENCE_END = re.compile(r"[.;:!?]$")
# A lead-in for a whole list ("... any of the following criteria will be excluded:"): its bullets are
# criteria of their own, unlike the details under "Adequate organ function as defined below:".
_LIST_LEAD_IN = re.compile(r"(?i)\b(?:criteria|criterion|excluded|not be eligible|ineligible|must meet)\b[^\n]*:$")
# A short plain line over a list of the same depth ("Age", "Hepatic"): a label of older records.
_SHORT_LABEL = re.compile(r"^[A-Za-z][\w/&,() -]{0,40}$")


def unescape_markdown(text: str) -> str:
    return _MARKDOWN_ESCAPE.sub(r"\1", text)


def normalise(raw: str) -> str:
    """The text every offset points into: unified newlines, no markdown escapes, common indent removed."""
    text = unescape_markdown(raw.replace("\r\n", "\n").replace("\r", "\n"))
    text = textwrap.dedent(text)
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


# What registry text writes in more than one way, as the rules read it: HTML entities (decoded until
# nothing changes: "&amp;lt;" is "<"), comparators as ASCII, full-width punctuation and digits as ASCII.
_ENTITY = re.compile(r"&(?:amp;)*(?:[a-zA-Z][a-zA-Z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_SPELLINGS = {"≥": ">=", "≧": ">=", "⩾": ">=", "≤": "<=", "≦": "<=", "⩽": "<=", "、": ",", "。": ".", "\u3000": " "}
_SPELLINGS.update({chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)})  # "＞" -> ">", "（" -> "("
_TO_READ = re.compile("|".join([_ENTITY.pattern, "[" + re.escape("".join(_SPELLINGS)) + "]"]))


@dataclass(frozen=True)
class Reading:
    """A criterion's text as the rules read it, and where each of its characters came from, so that what
    they quote is given back as the words of the criterion itself (evidence is exact in the original)."""

    text: str
    original: str
    _starts: tuple[int, ...] | None = None  # per character of `text`: the original span it was read from
    _ends: tuple[int, ...] | None = None

    def span_in_original(self, start: int, end: int) -> tuple[int, int]:
        """The original span that text[start:end] was read from."""
        if self._starts is None or start >= end:
            return start, end
        return self._starts[start], self._ends[end - 1]

    def quote_in_original(self, quote: str) -> str:
        """The original words of a quote taken from `text` (its first occurrence); other quotes unchanged."""
        if self._starts is None:
            return quote
        found = self.text.find(quote)
        if found < 0 or not quote:
            return quote
        start, end = self.span_in_original(found, found + len(quote))
        return self.original[start:end]


def reading(original: str) -> Reading:
    """The text with every _TO_READ spelling replaced; the same object's text when there is none."""
    if not _TO_READ.search(original):
        return Reading(original, original)
    pieces, starts, ends = [], [], []
    done = 0
    for match in _TO_READ.finditer(original):
        if match.start() > done:
            pieces.append(original[done : match.start()])
            starts.extend(range(done, match.start()))
            ends.extend(range(done + 1, match.start() + 1))
        written = match.group()
        read = "".join(_SPELLINGS.get(char, char) for char in (_SPELLINGS.get(written) or _decoded(written)))
        pieces.append(read)
        starts.extend([match.start()] * len(read))
        ends.extend([match.end()] * len(read))
        done = match.end()
    pieces.append(original[done:])
    starts.extend(range(done, len(original)))
    ends.extend(range(done + 1, len(original) + 1))
    return Reading("".join(pieces), original, tuple(starts), tuple(ends))


def _decoded(entity: str) -> str:
    """An entity decoded until stable ("&amp;gt;" -> ">"); one that names nothing stays as written."""
    while True:
        decoded = html.unescape(entity)
        if decoded == entity:
            return decoded
        entity = decoded


@dataclass
class _Open:
    kind: str
    start: int
    end: int
    indent: int
    bulleted: bool


# A lead-in that opens the exclusions without the word: "Participants who meet any of the following will
# be disqualified:", "Patients are not eligible if any of the following apply:", "... will be excluded:".
_EXCLUDING_LEAD_IN = re.compile(
    r"(?i)^(?=[^:]*\b(?:any|one\s+or\s+more|either)\s+of\s+the\s+following\b)(?![^:]*\b(?:but|eligible\s+for)\b)[^:]{0,160}"
    r"\b(?:(?:will|shall|may)\s+(?:be\s+)?(?:excluded|disqualified|ineligible|not\s+be\s+(?:eligible|enrolled|included))"
    r"|(?:are|is)\s+(?:excluded|disqualified|ineligible|not\s+eligible)|disqualif(?:y|ies|ied))\b[^:]{0,120}:$"
)


def _heading_kind(content: str) -> str | None:
    if _EXCLUDING_LEAD_IN.match(content) and not _SECTION_WORD.search(content):
        return "exclusion"
    words = {w.lower() for w in _SECTION_WORD.findall(content)}
    if len(words) != 1 or len(content) > 100 or not _HEADING_ONLY.match(content):
        return None  # "Other protocol-defined inclusion/exclusion criteria apply." is a criterion
    if content.endswith(".") and not content.endswith(":"):
        return None
    return words.pop()


def segment(text: str) -> list[Criterion]:
    """Split normalised text into criteria with kind and stable ids (inc-1, exc-1, ... in text order)."""
    spans: list[_Open] = []
    current: _Open | None = None
    kind = "inclusion"  # no heading at all: everything is inclusion
    blank_before = False
    offset = 0

    def close() -> None:
        nonlocal current
        if current is not None:
            spans.append(current)
            current = None

    for line in text.split("\n"):
        line_start, offset = offset, offset + len(line) + 1
        if not line.strip():
            blank_before = True
            continue
        bullet = _BULLET.match(line)
        indent = len(_INDENT.match(line).group())
        content_start = line_start + (bullet.end() if bullet else indent)
        content = line[content_start - line_start :]
        line_end = line_start + len(line)

        heading = _heading_kind(content)
        prefix = _HEADING_PREFIX.match(content)
        if heading or (_LABEL.match(content) and not bullet):
            close()
            kind = heading or kind
        elif prefix:
            close()
            kind = prefix.group(1).lower()
            current = _Open(kind, content_start + prefix.end(), line_end, indent, True)
        elif current is not None and _continues(current, text, bullet, indent, blank_before, content):
            current.end = line_end
        else:
            if current is not None and bullet and _is_label(current, text, indent):
                current = None  # "Age" over "* Between the ages of 18 and 80": structure, not a criterion
            close()
            current = _Open(kind, content_start, line_end, indent, bool(bullet))
        blank_before = False
    close()

    counters = {"inclusion": 0, "exclusion": 0}
    criteria = []
    for span in spans:
        counters[span.kind] += 1
        prefix = "inc" if span.kind == "inclusion" else "exc"
        criteria.append(
            Criterion(
                id=f"{prefix}-{counters[span.kind]}",
                kind=span.kind,
                text=text[span.start : span.end],
                start=span.start,
                end=span.end,
            )
        )
    return criteria


def _is_label(current: _Open, text: str, indent: int) -> bool:
    opened = text[current.start : current.end]
    return not current.bulleted and indent <= current.indent and bool(_SHORT_LABEL.match(opened)) and len(opened.split()) <= 4


def _continues(current: _Open, text: str, bullet: re.Match | None, indent: int, blank_before: bool, content: str) -> bool:
    """Does this line belong to the open criterion (a sub-bullet, a wrapped line, an indented note)?"""
    if indent > current.indent and (current.bulleted or bullet):
        opened = text[current.start : current.end]
        # nested deeper than the criterion's own marker, unless the criterion only introduces a list
        return not (bullet and "\n" not in opened and _LIST_LEAD_IN.search(opened))
    if bullet or blank_before:
        return False
    # A plain line right after a plain line: wrapped mid-sentence, or a new criterion?
    previous = text[current.start : current.end].rstrip()
    return not _SENTENCE_END.search(previous) or content[:1].islower()
