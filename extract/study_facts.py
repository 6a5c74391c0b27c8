"""The study facts of a registry record: enrollment, dates, design, arms, sites, ids. Pure: no I/O.

One function per source format, from the parsed document to the `TrialFacts` fields it can fill
(`sources` adds them to the title, phases and status it reads itself). Every value is the
registry's, in the API v2's words: classic XML's "Parallel Assignment" is `PARALLEL`, its
"Anticipated" is `ESTIMATED`, "March 30, 2018" is `2018-03-30` and "March 2007" is `2007-03` (a
month stays a month). These facts are secondary to the eligibility text: a value of the wrong
shape is left out, never a reason to refuse the record.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.record import ArmGroup, Enrollment, Location, SecondaryId, StudyDate, StudyDesign

Facts = dict[str, Any]  # keyword arguments of TrialFacts
# v2's intervention types, as its `interventionNames` prefix them ("Drug: Trastuzumab")
INTERVENTION_TYPES = {
    "DRUG", "DEVICE", "BIOLOGICAL", "PROCEDURE", "RADIATION", "BEHAVIORAL", "GENETIC", "DIETARY_SUPPLEMENT",
    "COMBINATION_PRODUCT", "DIAGNOSTIC_TEST", "OTHER",
}  # fmt: skip
_DATE_TYPES = {"ACTUAL": "ACTUAL", "ESTIMATED": "ESTIMATED", "ANTICIPATED": "ESTIMATED", "ESTIMATE": "ESTIMATED"}
_MASKING_LEVELS = {"NONE": "NONE", "OPEN": "NONE", "SINGLE": "SINGLE", "DOUBLE": "DOUBLE", "TRIPLE": "TRIPLE",
                   "QUADRUPLE": "QUADRUPLE"}  # fmt: skip


def registry_enum(value: Any) -> str | None:
    """Registry wording to the v2 API's enum style: "Not yet recruiting" -> NOT_YET_RECRUITING."""
    if not value or not isinstance(value, (str, int, float)):
        return None
    return re.sub(r"[^A-Z0-9]+", "_", str(value).upper()).strip("_") or None


# -- API v2 JSON ------------------------------------------------------------------------------------


def from_v2(protocol: dict[str, Any]) -> Facts:
    """The facts of a v2 study's `protocolSection`."""
    ident, status = _dict(protocol, "identificationModule"), _dict(protocol, "statusModule")
    design = _dict(protocol, "designModule")
    arms = _dict(protocol, "armsInterventionsModule")
    info, masking = _dict(design, "designInfo"), _dict(_dict(design, "designInfo"), "maskingInfo")
    enrollment = _dict(design, "enrollmentInfo")
    sites = [_kept(Location, facility=_text(s.get("facility")), city=_text(s.get("city")), state=_text(s.get("state")),
                   country=_text(s.get("country")), status=registry_enum(s.get("status")))
             for s in _dicts(_dict(protocol, "contactsLocationsModule"), "locations")]  # fmt: skip
    return _present(
        collaborators=_names(_dict(protocol, "sponsorCollaboratorsModule"), "collaborators", "name"),
        org_study_id=_text(_dict(ident, "orgStudyIdInfo").get("id")),
        secondary_ids=_all(_kept(SecondaryId, id=_text(i.get("id")), type=registry_enum(i.get("type")),
                                 domain=_text(i.get("domain"))) for i in _dicts(ident, "secondaryIdInfos")),  # fmt: skip
        enrollment=_kept(Enrollment, count=enrollment.get("count"), type=_date_type(enrollment.get("type"))),
        start_date=_v2_date(status, "startDateStruct"),
        primary_completion_date=_v2_date(status, "primaryCompletionDateStruct"),
        completion_date=_v2_date(status, "completionDateStruct"),
        last_update_posted=iso_date(_dict(status, "lastUpdatePostDateStruct").get("date")),
        design=_design(
            allocation=info.get("allocation"),
            intervention_model=info.get("interventionModel"),
            primary_purpose=info.get("primaryPurpose"),
            masking=masking.get("masking"),
            who_masked=[registry_enum(w) for w in _strings(masking, "whoMasked")],
            observational_model=info.get("observationalModel"),
            time_perspective=info.get("timePerspective"),
        ),
        arm_groups=_all(_kept(ArmGroup, label=_text(a.get("label")), type=registry_enum(a.get("type")),
                              description=_text(a.get("description")),
                              interventions=[_untyped(n) for n in _strings(a, "interventionNames")])
                        for a in _dicts(arms, "armGroups")),  # fmt: skip
        locations=_places(sites),
        countries=_unique(site.country for site in _places(sites)),
    )


def _v2_date(status: dict[str, Any], key: str) -> StudyDate | None:
    struct = _dict(status, key)
    return _kept(StudyDate, date=iso_date(struct.get("date")), type=_date_type(struct.get("type")))


def _untyped(name: str) -> str:
    """An arm's "Drug: Trastuzumab" is the intervention named "Trastuzumab"."""
    kind, _, rest = name.partition(": ")
    return rest.strip() if rest.strip() and registry_enum(kind) in INTERVENTION_TYPES else name.strip()


# -- classic XML ------------------------------------------------------------------------------------


def from_classic(study) -> Facts:
    """The facts of a classic `<clinical_study>` element (a BeautifulSoup tag)."""
    sites = [_kept(Location, facility=_at(site, "facility", "name"), city=_at(site, "facility", "address", "city"),
                   state=_at(site, "facility", "address", "state"), country=_at(site, "facility", "address", "country"),
                   status=registry_enum(_at(site, "status")))
             for site in _children(study, "location")]  # fmt: skip
    enrollment = _child(study, "enrollment")
    listed_countries = [_text(tag.get_text()) for tag in _children(_child(study, "location_countries"), "country")]
    return _present(
        collaborators=_unique(_at(tag, "agency") for tag in _children(_child(study, "sponsors"), "collaborator")),
        org_study_id=_at(study, "id_info", "org_study_id"),
        secondary_ids=_all(_kept(SecondaryId, id=_text(tag.get_text())) for tag in _children(_child(study, "id_info"), "secondary_id")),
        enrollment=None if enrollment is None else _kept(
            Enrollment, count=_count(enrollment.get_text()), type=_date_type(enrollment.get("type"))
        ),
        start_date=_classic_date(study, "start_date"),
        primary_completion_date=_classic_date(study, "primary_completion_date"),
        completion_date=_classic_date(study, "completion_date"),
        last_update_posted=iso_date(_at(study, "last_update_posted") or _at(study, "lastchanged_date")),
        design=_classic_design(study),
        arm_groups=_classic_arms(study),
        locations=_places(sites),
        countries=_unique(listed_countries or [site.country for site in _places(sites)]),
    )


def _child(tag, *path: str):
    """The element at `path` below `tag`, child by child (CSS selectors cost seconds on a study with
    a thousand sites), or None."""
    for name in path:
        tag = tag.find(name, recursive=False) if tag is not None else None
    return tag


def _children(tag, name: str) -> list:
    return tag.find_all(name, recursive=False) if tag is not None else []


def _at(tag, *path: str) -> str | None:
    """The text of the element at `path` below `tag`, or None."""
    found = _child(tag, *path)
    return _text(found.get_text()) if found is not None else None


def _classic_date(study, name: str) -> StudyDate | None:
    tag = _child(study, name)
    return None if tag is None else _kept(StudyDate, date=iso_date(tag.get_text()), type=_date_type(tag.get("type")))


def _classic_arms(study) -> list[ArmGroup]:
    """Classic arms do not list their interventions: each intervention names its arms."""
    arms_of = [(_at(tag, "intervention_name"), {_text(label.get_text()) for label in _children(tag, "arm_group_label")})
               for tag in _children(study, "intervention")]  # fmt: skip
    arms = []
    for tag in _children(study, "arm_group"):
        label = _at(tag, "arm_group_label")
        arms.append(_kept(ArmGroup, label=label, type=registry_enum(_at(tag, "arm_group_type")),
                          description=_at(tag, "description"),
                          interventions=[name for name, labels in arms_of if name and label in labels]))  # fmt: skip
    return _all(arms)


# Before 2017 one <study_design> line held the design: "Allocation: Randomized, Endpoint
# Classification: Safety Study, Masking: Open Label, Primary Purpose: Treatment".
_DESIGN_LINE_KEY = re.compile(r"(?:^|,\s*)([A-Z][A-Za-z ]+):\s*")
_DESIGN_FIELDS = ("allocation", "intervention_model", "primary_purpose", "observational_model", "time_perspective")


def _classic_design(study) -> StudyDesign | None:
    info = _child(study, "study_design_info")
    if info is not None:
        words = {tag.name: tag.get_text() for tag in info.find_all(True, recursive=False)}
    else:
        line = _at(study, "study_design") or ""
        parts = _DESIGN_LINE_KEY.split(line)
        words = {registry_enum(key).lower(): value for key, value in zip(parts[1::2], parts[2::2])}
    level, _, roles = (words.get("masking") or "").partition("(")  # "Double (Participant, Investigator)"
    return _design(masking=level, who_masked=[registry_enum(role) for role in roles.rstrip(")").split(",")],
                   **{name: words.get(name) for name in _DESIGN_FIELDS})  # fmt: skip


# -- the flat 2026 export ---------------------------------------------------------------------------


def from_flat_export(row: dict[str, Any]) -> Facts:
    """The facts of a row of the flattened 2026 export: its `locations` are the countries of its sites."""
    return _present(
        collaborators=_unique(_text(name) for name in _strings(row, "collaborators")),
        enrollment=_kept(Enrollment, count=row.get("enrollment_count")),
        start_date=_kept(StudyDate, date=iso_date(row.get("start_date"))),
        completion_date=_kept(StudyDate, date=iso_date(row.get("completion_date"))),
        countries=_unique(_text(country) for country in _strings(row, "locations")),
    )


# -- shared -----------------------------------------------------------------------------------------


def _design(*, masking: Any, who_masked: list[str | None], **words: Any) -> StudyDesign | None:
    """A design in v2's enum words ("Open Label" masking is NONE), or None when the source says nothing."""
    level = registry_enum(masking)
    level = _MASKING_LEVELS.get(level.split("_")[0], level) if level else None
    if level == "NONE":  # "None (Open Label)": the parentheses name no role
        who_masked = []
    values = {name: _enum_value(value) for name, value in words.items()}
    design = _kept(StudyDesign, masking=level, who_masked=[role for role in who_masked if role], **values)
    return design if design is not None and design != StudyDesign() else None


def _enum_value(value: Any) -> str | None:
    """Classic's "Parallel Assignment" is v2's PARALLEL, "N/A" is NA."""
    word = registry_enum(value)
    if word in ("N_A", "NOT_APPLICABLE"):
        return "NA"
    return word.removesuffix("_ASSIGNMENT") if word else None


def iso_date(value: Any) -> str | None:
    """A registry date as ISO 8601 with the precision it has: "2024-04-01", "March 2007" -> "2007-03"."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    for pattern, iso in (("%Y-%m-%d", "%Y-%m-%d"), ("%Y-%m", "%Y-%m"), ("%B %d, %Y", "%Y-%m-%d"), ("%B %Y", "%Y-%m")):
        try:
            return datetime.strptime(value, pattern).strftime(iso)
        except ValueError:
            continue
    return None


def _date_type(value: Any) -> str | None:
    return _DATE_TYPES.get(registry_enum(value) or "")


def _count(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def _kept(model: type[BaseModel], **values: Any) -> Any:
    """The model, or None when the source's values do not make one (a missing label, a negative count)."""
    try:
        return model(**values)
    except ValidationError:
        return None


def _present(**facts: Any) -> Facts:
    """The facts the source states: an empty list, None or False says nothing."""
    return {key: value for key, value in facts.items() if value}


def _all(items) -> list:
    return [item for item in items if item is not None]


def _places(sites: list[Location | None]) -> list[Location]:
    """The sites that name something: a <location> holding only a contact says nowhere."""
    return [site for site in sites if site is not None and site != Location()]


def _unique(values) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _dict(document: Any, key: str) -> dict[str, Any]:
    value = document.get(key) if isinstance(document, dict) else None
    return value if isinstance(value, dict) else {}


def _dicts(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = document.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _strings(document: dict[str, Any], key: str) -> list[str]:
    value = document.get(key)
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _names(document: dict[str, Any], key: str, name: str) -> list[str]:
    return _unique(_text(item.get(name)) for item in _dicts(document, key))
