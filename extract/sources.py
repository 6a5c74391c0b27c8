"""Registry records in, normalised `Trial`s out: API v2 JSON, classic XML, flat exports. No I/O.

Every parser takes one file's content (its bytes, or a binary stream the importer opened) and
yields, for each record in it, either a `RawRecord` (the record exactly as received, plus its
normalised `Trial`) or a `RecordError` saying in one line why that record could not be read. A
bad record costs only itself: the records after it are read on. JSONL and CSV are read a record
at a time, so memory does not grow with the file. Opening files is the importer's job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import IO, Any, Iterator

from bs4 import BeautifulSoup
from lxml import etree
from pydantic import ValidationError

from extract import study_facts
from extract.hashing import canonical_sha256
from extract.text import normalise
from schemas import Intervention, Source, Trial, TrialFacts, normalise_nct_id

CTGOV = "clinicaltrials.gov"
STUDY_URL = "https://clinicaltrials.gov/study/{}"
_enum = study_facts.registry_enum
PLAIN_COLUMNS = ("nct_id", "title", "conditions", "eligibility_text", "sex", "minimum_age", "maximum_age")
# A criteria text can be long; the csv module's default field limit (128 KB) would end the file there.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class RawRecord:
    registry: str
    format: str  # "json" or "xml": the extension of the raw file
    raw: bytes  # the record exactly as received
    trial: Trial


@dataclass(frozen=True)
class RecordError:
    reason: str
    nct_id: str | None = None


Parsed = RawRecord | RecordError


class NotAStudy(ValueError):
    """The document is well-formed but holds no study (a search page, an unrelated JSON)."""


def parse_document(data: bytes, name: str, retrieved_at: datetime | None = None) -> Iterator[Parsed]:
    """Every record in one file's bytes; `name` (the file name) picks the format by extension."""
    return parse_stream(io.BytesIO(data), name, retrieved_at)


def parse_stream(stream: IO[bytes], name: str, retrieved_at: datetime | None = None) -> Iterator[Parsed]:
    """Every record in a binary stream, read as it is needed; `name` picks the format by extension."""
    retrieved_at = retrieved_at or datetime.now(timezone.utc)
    lower = name.lower()
    try:
        if lower.endswith((".jsonl", ".ndjson")):
            yield from _jsonl(stream, retrieved_at)
        elif lower.endswith(".csv"):
            yield from _csv(stream, retrieved_at)
        else:  # one document: a classic XML study, a v2 study or a page of them
            data = stream.read()
            if not data.strip():
                yield RecordError("empty file")
            elif lower.endswith(".xml"):
                yield from _classic_xml(data, retrieved_at)
            else:
                yield from _json_document(load_json(data), retrieved_at)
    except NotAStudy as error:
        yield RecordError(str(error))


def load_json(data: bytes | str) -> Any:
    """A JSON document, or NotAStudy saying in one line why it is not one."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise NotAStudy(f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except UnicodeDecodeError as error:
        raise NotAStudy(_not_utf8(error)) from None
    except RecursionError:
        raise NotAStudy("JSON nested too deeply") from None


def _not_utf8(error: UnicodeDecodeError) -> str:
    return f"not UTF-8 text ({error.reason} at byte {error.start})"


def _jsonl(stream: IO[bytes], retrieved_at: datetime) -> Iterator[Parsed]:
    """One record per line; a line that is not UTF-8 or not JSON costs only itself."""
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            yield from (_numbered(f"line {number}", parsed) for parsed in _json_document(load_json(line), retrieved_at))
        except NotAStudy as error:
            yield RecordError(f"line {number}: {error}")


def _numbered(where: str, parsed: Parsed) -> Parsed:
    """A record error of a file of many records says which one it is."""
    return RecordError(f"{where}: {parsed.reason}", parsed.nct_id) if isinstance(parsed, RecordError) else parsed


def _json_document(document: Any, retrieved_at: datetime) -> Iterator[Parsed]:
    """A v2 study, a v2 page {"studies": [...]}, a flat 2026-export row or a plain row."""
    if isinstance(document, dict) and isinstance(document.get("studies"), list):
        for study in document["studies"]:
            yield from _json_document(study, retrieved_at)
    elif isinstance(document, dict) and "protocolSection" in document:
        yield checked(lambda: v2_study(document, retrieved_at))
    elif isinstance(document, dict) and isinstance(document.get("eligibility"), dict) and "nct_id" in document:
        yield checked(lambda: flat_export_row(document, retrieved_at))
    elif isinstance(document, dict) and "eligibility_text" in document:
        yield checked(lambda: plain_row(document, retrieved_at))
    else:
        raise NotAStudy("not a study: expected an API v2 study, a page of studies or a trial row")


def checked(build) -> Parsed:
    """`build()`, or the one-line reason the record cannot be one: whatever its content, only this
    record is lost (wrong types, lone surrogates, structures nested too deeply)."""
    try:
        return build()
    except InvalidRecord as error:
        return RecordError(str(error), error.nct_id)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return RecordError(f"{where}: {first['msg']} (got {_short(first.get('input'))})")
    except UnicodeEncodeError:
        return RecordError("not valid Unicode text (a lone surrogate)")
    except RecursionError:
        return RecordError("JSON nested too deeply")
    except (TypeError, AttributeError, KeyError, ValueError) as error:  # a shape no check above foresaw
        return RecordError(f"unreadable record ({type(error).__name__}: {_short(str(error))})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class InvalidRecord(ValueError):
    def __init__(self, reason: str, nct_id: str | None = None):
        super().__init__(reason)
        self.nct_id = nct_id


def _nct_id(value: Any) -> str:
    if not value:
        raise InvalidRecord("no NCT id")
    nct_id = normalise_nct_id(str(value))
    if nct_id is None:
        raise InvalidRecord(f"{_short(str(value).strip())} is not an NCT id (NCT + 8 digits)")
    return nct_id


def _object(document: dict[str, Any], key: str) -> dict[str, Any]:
    """`document[key]`, an object (or empty when absent); anything else makes the record invalid."""
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRecord(f"{key}: expected an object, got {type(value).__name__} {_short(value)}")
    return value


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRecord(f"{key}: expected a list, got {type(value).__name__} {_short(value)}")
    return value


def v2_study(study: dict[str, Any], retrieved_at: datetime) -> RawRecord:
    protocol = _object(study, "protocolSection")
    ident = _object(protocol, "identificationModule")
    nct_id = _nct_id(ident.get("nctId"))
    status = _object(protocol, "statusModule")
    design = _object(protocol, "designModule")
    eligibility = _object(protocol, "eligibilityModule")
    interventions = _list(_object(protocol, "armsInterventionsModule"), "interventions")
    facts = TrialFacts(
        **study_facts.from_v2(protocol),
        title=ident.get("briefTitle") or ident.get("officialTitle"),
        phases=[_phase(p) for p in _list(design, "phases")],
        overall_status=_enum(status.get("overallStatus")),
        study_type=_enum(design.get("studyType")),
        conditions=_object(protocol, "conditionsModule").get("conditions") or [],
        interventions=[
            Intervention(type=_enum(i.get("type")), name=i["name"]) for i in interventions if isinstance(i, dict) and i.get("name")
        ],
        sponsor=_object(_object(protocol, "sponsorCollaboratorsModule"), "leadSponsor").get("name"),
    )
    last_update = _object(status, "lastUpdatePostDateStruct").get("date")
    return _record(
        registry=CTGOV,
        document=study,
        retrieved_at=retrieved_at,
        nct_id=nct_id,
        facts=facts,
        text=eligibility.get("eligibilityCriteria") or "",
        sex=eligibility.get("sex"),
        minimum_age=eligibility.get("minimumAge"),
        maximum_age=eligibility.get("maximumAge"),
        healthy_volunteers=eligibility.get("healthyVolunteers"),
        last_update=_date(last_update),
    )


def flat_export_row(row: dict[str, Any], retrieved_at: datetime) -> RawRecord:
    """A row of the flattened 2026 ClinicalTrials.gov export (../shared/data/ctgov-2026)."""
    nct_id = _nct_id(row.get("nct_id"))
    eligibility = _object(row, "eligibility")
    facts = TrialFacts(
        title=row.get("title"),
        phases=[_phase(p) for p in str(row.get("phase") or "").split("/") if p.strip()],
        overall_status=_enum(row.get("status")),
        study_type=_enum(row.get("study_type")),
        conditions=row.get("conditions") or [],
        interventions=[Intervention(name=name) for name in _list(row, "interventions")],
        sponsor=row.get("sponsor"),
        **study_facts.from_flat_export(row),
    )
    return _record(
        registry=CTGOV,
        document=row,
        retrieved_at=retrieved_at,
        nct_id=nct_id,
        facts=facts,
        text=eligibility.get("raw_text") or "",
        sex=eligibility.get("sex"),
        minimum_age=eligibility.get("minimum_age"),
        maximum_age=eligibility.get("maximum_age"),
        healthy_volunteers=eligibility.get("accepts_healthy_volunteers"),
        url=row.get("source_url"),
    )


def plain_row(row: dict[str, Any], retrieved_at: datetime) -> RawRecord:
    """A trial from any registry: nct_id, title, conditions, eligibility_text, sex, minimum_age, maximum_age."""
    nct_id = _nct_id(row.get("nct_id"))
    conditions = row.get("conditions") or []
    if isinstance(conditions, str):
        conditions = [c.strip() for c in re.split(r"[;|]", conditions) if c.strip()]
    return _record(
        registry=row.get("registry") or "local",
        document=row,
        retrieved_at=retrieved_at,
        nct_id=nct_id,
        facts=TrialFacts(title=row.get("title") or None, conditions=conditions),
        text=row.get("eligibility_text") or "",
        sex=row.get("sex"),
        minimum_age=row.get("minimum_age"),
        maximum_age=row.get("maximum_age"),
        healthy_volunteers=None,
        url=row.get("url"),
    )


def _csv(stream: IO[bytes], retrieved_at: datetime) -> Iterator[Parsed]:
    """One record per row, read as it comes; a row that is not UTF-8 costs only itself (the bytes are
    kept apart while decoding, so a bad one cannot end the file)."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.DictReader(text)
    try:
        missing = [c for c in ("nct_id", "eligibility_text") if c not in (reader.fieldnames or [])]
        if not reader.fieldnames:
            raise NotAStudy("empty file")
        if missing:
            raise NotAStudy(f"CSV lacks the column(s) {', '.join(missing)} (expected {', '.join(PLAIN_COLUMNS)})")
        for number, row in enumerate(reader, 2):
            values = [v for k, v in row.items() if k is not None] + list(row.get(None) or [])
            if any(_SURROGATE.search(value) for value in values if value):
                nct_id = normalise_nct_id(row.get("nct_id") or "")
                yield RecordError(f"row {number}: not UTF-8 text", nct_id)
                continue
            yield _numbered(f"row {number}", checked(lambda: plain_row(row, retrieved_at)))
    except csv.Error as error:
        raise NotAStudy(f"malformed CSV at line {reader.line_num}: {error}") from None
    finally:
        text.detach()  # the stream is the caller's to close


def _classic_xml(data: bytes, retrieved_at: datetime) -> Iterator[Parsed]:
    try:  # BeautifulSoup repairs broken XML silently; a truncated record must be reported instead
        etree.fromstring(data)
    except etree.XMLSyntaxError as error:
        raise NotAStudy(f"malformed XML: {error}") from None
    except RecursionError:
        raise NotAStudy("XML nested too deeply") from None
    soup = BeautifulSoup(data, "xml")
    study = soup.find("clinical_study")
    if study is None:
        root = next(tag.name for tag in soup.find_all(True, recursive=False))
        what = "a search results page" if root == "rss" else f"a <{root}> document"
        raise NotAStudy(f"{what}, not a study (expected <clinical_study>)")
    yield checked(lambda: _classic_study(study, data, retrieved_at))


def _classic_study(study, data: bytes, retrieved_at: datetime) -> RawRecord:
    def text_of(path: str, strip: bool = True) -> str | None:
        tag = study.select_one(path)
        if tag is None:
            return None
        return tag.get_text().strip() if strip else tag.get_text()

    nct_id = _nct_id(text_of("id_info > nct_id"))
    phase = text_of("phase") or ""
    facts = TrialFacts(
        title=text_of("brief_title") or text_of("official_title"),
        phases=[_phase(p) for p in phase.split("/") if p.strip()],
        overall_status=_enum(text_of("overall_status")),
        study_type=_enum(text_of("study_type")),
        conditions=[tag.get_text().strip() for tag in study.find_all("condition", recursive=False)],
        interventions=[
            Intervention(type=_enum(text_of_tag(i, "intervention_type")), name=text_of_tag(i, "intervention_name"))
            for i in study.find_all("intervention", recursive=False)
            if text_of_tag(i, "intervention_name")
        ],
        sponsor=text_of("sponsors > lead_sponsor > agency"),
        **study_facts.from_classic(study),
    )
    volunteers = text_of("eligibility > healthy_volunteers")
    return RawRecord(
        registry=CTGOV,
        format="xml",
        raw=data,
        trial=_trial(
            nct_id=nct_id,
            registry=CTGOV,
            sha=hashlib.sha256(data).hexdigest(),
            retrieved_at=retrieved_at,
            facts=facts,
            text=text_of("eligibility > criteria > textblock", strip=False) or "",  # normalise dedents it
            sex=text_of("eligibility > gender"),
            minimum_age=text_of("eligibility > minimum_age"),
            maximum_age=text_of("eligibility > maximum_age"),
            healthy_volunteers=None if volunteers is None else volunteers.lower().startswith("accepts"),
            last_update=_date(text_of("last_update_posted") or text_of("lastchanged_date")),
            url=text_of("required_header > url"),
        ),
    )


def text_of_tag(tag, name: str) -> str | None:
    child = tag.find(name)
    return child.get_text().strip() if child else None


def _record(*, registry: str, document: dict, retrieved_at: datetime, **fields) -> RawRecord:
    raw = json.dumps(document, ensure_ascii=False, indent=2).encode()
    trial = _trial(registry=registry, sha=canonical_sha256(document), retrieved_at=retrieved_at, **fields)
    return RawRecord(registry=registry, format="json", raw=raw, trial=trial)


def _trial(*, nct_id, registry, sha, retrieved_at, facts, text, sex, minimum_age, maximum_age,
           healthy_volunteers, last_update=None, url=None) -> Trial:  # fmt: skip
    for name, value in (("eligibility text", text), ("sex", sex), ("url", url)):
        if value is not None and not isinstance(value, str):
            raise InvalidRecord(f"{name}: expected a string, got {type(value).__name__} {_short(value)}", nct_id)
    return Trial(
        nct_id=nct_id,
        source=Source(
            registry=registry,
            url=url or (STUDY_URL.format(nct_id) if registry == CTGOV else None),
            retrieved_at=retrieved_at,
            content_sha256=sha,
        ),
        trial=facts,
        eligibility_text=normalise(text),
        sex=_sex(sex),
        min_age_years=age_in_years(minimum_age),
        max_age_years=age_in_years(maximum_age),
        healthy_volunteers=healthy_volunteers if isinstance(healthy_volunteers, bool) else None,
        last_update=last_update,
    )


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(year|month|week|day|hour|minute)s?\s*$", re.IGNORECASE)
_DAYS_PER_UNIT = {"year": 365.25, "month": 365.25 / 12, "week": 7, "day": 1, "hour": 1 / 24, "minute": 1 / 1440}


def age_in_years(value: Any) -> float | None:
    """Registry ages ("18 Years", "6 Months", "N/A") in years, rounded to 0.01."""
    if value is None or isinstance(value, (int, float)):
        return value
    match = _AGE.match(str(value))
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2).lower()
    return round(number * _DAYS_PER_UNIT[unit] / 365.25, 4)


def _sex(value: Any) -> str | None:
    value = (value or "").strip().upper()
    return {"ALL": "ALL", "BOTH": "ALL", "FEMALE": "FEMALE", "MALE": "MALE"}.get(value)


def _phase(value: str) -> str:
    """"Phase 1" / "PHASE1" -> PHASE1, "Early Phase 1" -> EARLY_PHASE1, "N/A" / "Not Applicable" -> NA."""
    phase = _enum(value) or ""
    if phase in ("N_A", "NOT_APPLICABLE", "NA"):
        return "NA"
    return re.sub(r"PHASE_(\d)", r"PHASE\1", phase)


def _date(value: str | None) -> date | None:
    if not value:
        return None
    for pattern in ("%Y-%m-%d", "%Y-%m", "%B %d, %Y", "%B %Y"):
        try:
            return datetime.strptime(value.strip(), pattern).date()
        except ValueError:
            continue
    return None
