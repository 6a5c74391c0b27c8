"""The trial card: one record as a page a patient or a curator reads, in Markdown or HTML.

The card has the sections of a trial-matching page (cancer type, biomarkers, stage, performance
status, prior therapy, labs, brain metastases, measurable disease, ages and sex), each requirement
in plain words with its criterion id and verbatim quote; every criterion eligex did not structure
under "Other criteria"; a header with the registry's study facts; questions answered from the record
only, each with its evidence (a question the record cannot answer is left out); and the caveat
naming the backend and version that made the record.

`card()` builds the card's content from the record (pure); the templates in `templates/` only lay
it out, so the Markdown and the HTML say the same. Registry text is untrusted: the HTML is
autoescaped, the Markdown escapes whatever could become markup or break a line, and a link is only
made to an http(s) address.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from extract.rules.vocab import is_abbreviation, load_tsv
from schemas import EligibilityRecord

_TEMPLATES = Path(__file__).parent / "templates"
# What registry text must not make in Markdown: code, raw HTML and autolinks, table cells, emphasis
# (a * or _ before a word), links and images ("](").
_MARKDOWN_SPECIAL = re.compile(r"([\\`|]|<(?=[A-Za-z/!?])|[*_](?=\S)|(?<=\])\()")
_SAFE_URL = re.compile(r"^https?://[^\s<>()\[\]`*|\"']+$")
_SYMBOLS = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}


@dataclass
class Requirement:
    """One requirement in plain words: `label`, then `head`, then its alternatives joined by "or"."""

    label: str | None
    head: str | None
    alternatives: list[str]
    criterion_id: str | None = None
    quote: str | None = None
    origin: str | None = None  # "registry" for a registry field, which has no quote


@dataclass
class Section:
    title: str
    groups: list[tuple[str | None, list[Requirement]]]  # (sub-heading, requirements): labs come grouped


@dataclass
class Answer:
    question: str
    lead: str | None
    requirements: list[Requirement] = field(default_factory=list)
    evidence: str | None = None  # for an answer from registry fields


@dataclass
class Card:
    nct_id: str
    title: str
    facts: list[tuple[str, str]]  # the study facts, (label, value) in the order shown
    arms: list[str]
    sites: list[str]
    sections: list[Section]
    unstated: list[str]  # the sections the record has nothing on
    other: list[Requirement]
    faq: list[Answer]
    caveat: str
    url: str | None


def render(record: EligibilityRecord, fmt: str) -> str:
    """The record's card: `card` (Markdown) or `html` (a self-contained page)."""
    environment = _environments()[fmt]
    return environment.get_template(f"card.{'md' if fmt == 'card' else 'html'}.j2").render(card=card(record))


# -- the card's content ------------------------------------------------------------------------------


def card(record: EligibilityRecord) -> Card:
    eligibility, facts = record.eligibility, record.trial
    def plain(title: str, requirements: list[Requirement]) -> Section:
        return Section(title, [(None, requirements)])

    brain, measurable, stage = eligibility.brain_metastases, eligibility.measurable_disease, _stated_stage(eligibility)
    sections = [
        plain("Cancer type", [_cancer_type(c) for c in eligibility.cancer_types]),
        plain("Biomarker criteria", [biomarker_rule(rule) for rule in eligibility.biomarkers]),
        plain("Disease stage", [_stage(stage)] if stage else []),
        plain("Performance status", [_performance(p) for p in eligibility.performance_status]),
        plain("Prior therapy", [prior_therapy(t) for t in eligibility.prior_therapies]),
        Section("Lab requirements", _lab_groups(eligibility.labs)),
        plain("Brain metastases", [_brain(brain)] if brain else []),
        plain("Measurable disease", [_measurable(measurable)] if measurable else []),
        plain("Ages and sex", _ages_and_sex(eligibility)),
    ]
    stated = [s for s in sections if any(items for _, items in s.groups)]
    return Card(
        nct_id=record.nct_id,
        title=facts.title or "(no title)",
        facts=_facts(record),
        arms=[_arm(arm) for arm in facts.arm_groups],
        sites=[_site(site) for site in facts.locations],
        sections=stated,
        unstated=[s.title.lower() for s in sections if s not in stated],
        other=[Requirement(o.kind.capitalize(), None, [o.text], o.criterion_id) for o in eligibility.other],
        faq=faq(record),
        caveat=caveat(record),
        url=safe_url(record.source.url),
    )


def safe_url(url: str | None) -> str | None:
    """The address if it is a plain http(s) one: a registry field must not become a `javascript:` link."""
    return url if url and _SAFE_URL.match(url) else None


def _quoted(label: str | None, head: str | None, alternatives: list[str], item: Any) -> Requirement:
    evidence = item.evidence
    return Requirement(label, head, alternatives, evidence.criterion_id, evidence.quote)


def _cancer_type(cancer) -> Requirement:
    code = f" ({'OncoTree' if cancer.code.system == 'oncotree' else 'NCIt'} {cancer.code.code})" if cancer.code else ""
    return _quoted(cancer.requirement.capitalize(), None, [cancer.name + code], cancer)


# -- biomarkers ----------------------------------------------------------------------------------


@functools.cache
def _marker_names() -> dict[str, str]:
    """The name criteria use for a gene, from the rules' vocabulary: ERBB2 is HER2, CD274 is PD-L1."""
    names: dict[str, str] = {}
    for row in load_tsv("markers.tsv"):
        if "|" not in row["markers"] and not (row["status"] or row["alteration"] or row["variant"]):
            names.setdefault(row["markers"], row["alias"])
    return names


def marker_name(symbol: str) -> str:
    """"HER2 (ERBB2)", or the symbol alone where criteria write it so (EGFR, MSI)."""
    name = _marker_names().get(symbol, symbol)
    return symbol if name == symbol else f"{name} ({symbol})"


def _finding(test) -> str:
    """What one test must show, without its marker: "IHC 3+ overexpression", "amplification by ISH"."""
    variant, alteration, method, value = test.variant, test.alteration, test.method, test.value
    if test.status == "negative":
        if value:
            return " ".join(filter(None, (method, value)))
        if variant:
            kind = f"no {variant} {alteration or 'alteration'}"
        else:
            kind = "wild-type" if alteration == "mutation" else f"no {alteration}" if alteration else ""
    else:
        kind = " ".join(filter(None, (variant, None if variant and alteration and alteration in variant else alteration)))
        if value:
            return " ".join(filter(None, (method, value, kind)))
    return f"{kind} by {method}" if kind and method else kind or (f"by {method}" if method else "")


def biomarker_rule(rule) -> Requirement:
    """One rule, one requirement, its tests the alternatives: "HER2-positive (ERBB2): IHC 3+
    overexpression or amplification", "ALK fusion or ROS1 fusion"."""
    label = rule.requirement.capitalize()
    markers = {(test.marker, test.status) for test in rule.any_of}
    if len(markers) == 1:
        [(marker, status)] = markers
        findings = list(dict.fromkeys(_finding(test) or status for test in rule.any_of))
        return _quoted(label, _marker_status(marker, status), [] if findings == [status] else findings, rule)
    return _quoted(label, None, list(dict.fromkeys(_marker_finding(test) for test in rule.any_of)), rule)


def _marker_status(symbol: str, status: str) -> str:
    name = _marker_names().get(symbol, symbol)
    return f"{name}-{status}" + ("" if name == symbol else f" ({symbol})")


def _marker_finding(test) -> str:
    """One test with its marker: "ALK fusion", "ER-positive (ESR1)", "KRAS wild-type"."""
    finding = _finding(test)
    if not finding or finding.startswith("by "):
        return " ".join(filter(None, (_marker_status(test.marker, test.status), finding)))
    return f"{marker_name(test.marker)}{':' if finding.startswith('no ') else ''} {finding}"


# -- stage, performance, prior therapy -----------------------------------------------------------


def _stated_stage(eligibility):
    stage = eligibility.stage
    return stage if stage is not None and (stage.groups or stage.settings) else None


def _stage(stage) -> Requirement:
    alternatives = [f"stage {group}" for group in stage.groups] + [_words(s).lower() for s in stage.settings]
    return _quoted("Required", None, alternatives, stage)


def _performance(item) -> Requirement:
    scale = {"ECOG": "ECOG", "KARNOFSKY": "Karnofsky", "LANSKY": "Lansky"}[item.scale]
    if item.min is not None and item.max is not None:
        words = f"{scale} {item.min}–{item.max}" if item.min != item.max else f"{scale} {item.min}"
    elif item.min is not None:
        words = f"{scale} ≥ {item.min}"
    else:
        words = f"{scale} ≤ {item.max}"
    return _quoted("Required", None, [words], item)


def only_caps_lines(item) -> bool:
    """ "No more than 2 prior lines" is a required systemic therapy with max_lines 2 (SCHEMA.md): it
    limits prior treatment, it does not require any."""
    return item.requirement == "required" and item.max_lines is not None and not item.min_lines \
        and item.min_duration_months is None  # fmt: skip


def prior_therapy(item) -> Requirement:
    """"anti-her2 therapy (trastuzumab, ...), for at least 24 months (2 years), in the metastatic setting"."""
    named = item.therapy + (f" ({', '.join(item.drugs)})" if item.drugs and item.drugs != [item.therapy] else "")
    if only_caps_lines(item):
        label, parts = None, [f"No more than {_count(item.max_lines, 'prior line')} of {named}"]
    else:
        label = "Must have received" if item.requirement == "required" else "Must not have received"
        parts = [named]
        if item.min_lines is not None and item.max_lines is not None:
            parts.append(f"{item.min_lines} to {item.max_lines} prior lines")
        elif item.min_lines is not None:
            parts.append(f"at least {_count(item.min_lines, 'prior line')}")
        elif item.max_lines is not None:
            parts.append(f"no more than {_count(item.max_lines, 'prior line')}")
    if item.min_duration_months is not None:
        months = item.min_duration_months
        years = f" ({_count(months / 12, 'year')})" if months >= 12 and months % 12 == 0 else ""
        parts.append(f"for at least {_count(months, 'month')}{years}")
    if item.setting:
        parts.append("in any setting" if item.setting == "any" else f"in the {item.setting} setting")
    return _quoted(label, None, [", ".join(parts)], item)


# -- labs ------------------------------------------------------------------------------------------

_LAB_GROUPS = (
    ("Blood counts", ("hematologic_function", "anc", "platelets", "hemoglobin", "wbc", "lymphocytes")),
    ("Kidney function", ("renal_function", "creatinine", "creatinine_clearance", "gfr", "urine_protein")),
    ("Liver function", ("hepatic_function", "total_bilirubin", "direct_bilirubin", "ast", "alt", "alkaline_phosphatase",
                        "albumin")),
    ("Cardiac function", ("cardiac_function", "lvef", "qtc")),
    ("Coagulation", ("inr", "aptt", "pt")),
)  # fmt: skip


@functools.cache
def _analyte_names() -> dict[str, str]:
    """An analyte's name from the rules' vocabulary, with its abbreviation: "absolute neutrophil count (ANC)"."""
    phrases: dict[str, list[str]] = {}
    for row in load_tsv("analytes.tsv"):
        if row["analyte"] and "," not in row["analyte"]:
            phrases.setdefault(row["analyte"], []).append(row["phrase"])
    names = {}
    for analyte, written in phrases.items():
        short = next((p for p in written if is_abbreviation(p)), None)
        names[analyte] = written[0] + (f" ({short})" if short else "")
    return names


def _lab(lab) -> Requirement:
    name = _analyte_names().get(lab.analyte) or _words(lab.analyte).lower()
    name = name[0].upper() + name[1:]
    if lab.uln_multiple is not None:
        words = f"{name} {_SYMBOLS[lab.comparator or '<=']} {_number(lab.uln_multiple)} × ULN"
    elif lab.value is not None:
        unit = "" if not lab.unit else lab.unit if lab.unit.startswith("/") else f" {lab.unit}"
        words = f"{name} {_SYMBOLS[lab.comparator] + ' ' if lab.comparator else ''}{_number(lab.value)}{unit}"
    elif lab.analyte.endswith("_function"):
        words = f"Adequate {name.lower()}, no threshold stated"
    else:
        words = f"{name}: within normal limits, no threshold stated"
    if lab.condition:
        words += f" (if {lab.condition})"
    return _quoted(None, None, [words], lab)


def _lab_groups(labs) -> list[tuple[str | None, list[Requirement]]]:
    grouped = {title: [lab for lab in labs if lab.analyte in members] for title, members in _LAB_GROUPS}
    known = {analyte for _, members in _LAB_GROUPS for analyte in members}
    grouped["Other"] = [lab for lab in labs if lab.analyte not in known]
    return [(title, [_lab(lab) for lab in items]) for title, items in grouped.items() if items]


# -- brain metastases, measurable disease, ages and sex --------------------------------------------

_BRAIN_WORDS = {  # status: (label, words, the answer to "are brain metastases allowed?")
    "excluded": ("Excluded", "brain metastases exclude", "No."),
    "allowed_if_stable": ("Allowed if stable", "treated, stable or asymptomatic brain metastases are allowed; "
                          "active ones exclude", "Only if they are treated, stable or asymptomatic."),
    "allowed": ("Allowed", "brain metastases are allowed", "Yes."),
    "required": ("Required", "the trial is for patients with brain metastases", "Yes: the trial is for them."),
}  # fmt: skip


def _brain(brain) -> Requirement:
    label, words, _ = _BRAIN_WORDS[brain.status]
    return _quoted(label, None, [words], brain)


def _measurable(measurable) -> Requirement:
    if measurable.required:
        words = "measurable disease" + (f" per {measurable.standard}" if measurable.standard else "")
        return _quoted("Required", None, [words], measurable)
    return _quoted("Required", None, ["measurable or evaluable disease (evaluable will do)"], measurable)


def _ages_and_sex(eligibility) -> list[Requirement]:
    lines = []

    def stated(name: str, words: str) -> Requirement:
        origin = eligibility.origins.get(name)
        evidence = origin.evidence if origin else None
        if evidence is not None:
            return Requirement(None, None, [words], evidence.criterion_id, evidence.quote)
        return Requirement(None, None, [words], origin="registry" if origin else None)

    low, high = eligibility.min_age_years, eligibility.max_age_years
    if low is not None:
        lines.append(stated("min_age_years", f"at least {_age(low)} old"))
    if high is not None:
        lines.append(stated("max_age_years", f"at most {_age(high)} old"))
    if eligibility.sex is not None:
        lines.append(stated("sex", {"ALL": "any sex", "FEMALE": "female only", "MALE": "male only"}[eligibility.sex]))
    if eligibility.healthy_volunteers is not None:
        accepted = "accepted" if eligibility.healthy_volunteers else "not accepted"
        lines.append(stated("healthy_volunteers", f"healthy volunteers {accepted}"))
    return lines


def _age(years: float) -> str:
    if years < 2 and years != int(years):
        return _count(round(years * 12, 1), "month")
    return _count(round(years, 2), "year")


# -- the study facts ---------------------------------------------------------------------------------


def _facts(record: EligibilityRecord) -> list[tuple[str, str]]:
    facts = record.trial
    recruiting = sum(site.status == "RECRUITING" for site in facts.locations)
    sites = _count(len(facts.locations), "site") + (f", {recruiting} recruiting" if recruiting else "")
    ids = [f"{facts.org_study_id} (sponsor's)"] if facts.org_study_id else []
    ids += [i.id + (f" ({i.domain or _words(i.type).lower()})" if i.domain or i.type else "") for i in facts.secondary_ids]
    rows = [
        ("Status", _words(facts.overall_status)),
        ("Phase", ", ".join(_phase(p) for p in facts.phases)),
        ("Study type", _words(facts.study_type)),
        ("Enrollment", facts.enrollment and f"{facts.enrollment.count:,} participants{_kind(facts.enrollment.type)}"),
        ("Start", _date(facts.start_date)),
        ("Primary completion", _date(facts.primary_completion_date)),
        ("Completion", _date(facts.completion_date)),
        ("Design", facts.design and _design(facts.design)),
        ("Conditions", "; ".join(facts.conditions)),
        ("Interventions", "; ".join(i.name + _kind(_words(i.type)) for i in facts.interventions)),
        ("Sponsor", facts.sponsor),
        ("Collaborators", "; ".join(facts.collaborators)),
        ("Countries", ", ".join(facts.countries)),
        ("Sites", facts.locations and sites),
        ("Other ids", "; ".join(ids)),
        ("Last update posted", facts.last_update_posted),
        ("Source", f"{record.source.registry}, retrieved {record.source.retrieved_at:%Y-%m-%d}"),
    ]
    return [(label, value) for label, value in rows if value]


def _date(milestone) -> str | None:
    return milestone and milestone.date + _kind(milestone.type)


def _site(site) -> str:
    place = ", ".join(filter(None, (site.facility, site.city, site.state, site.country)))
    return place + _kind(_words(site.status))


def _design(design) -> str:
    parts = [_words(design.allocation), _words(design.intervention_model), _words(design.observational_model),
             _words(design.time_perspective), _words(design.primary_purpose)]  # fmt: skip
    if design.masking == "NONE":
        parts.append("open label")
    elif design.masking:
        who = f" ({', '.join(_words(w).lower() for w in design.who_masked)})" if design.who_masked else ""
        parts.append(f"{_words(design.masking).lower()} masking{who}")
    return ", ".join(p.lower() for p in parts if p)


def _arm(arm) -> str:
    kind = f" ({_words(arm.type).lower()})" if arm.type else ""
    given = f": {', '.join(arm.interventions)}" if arm.interventions else ""
    return f"{arm.label}{kind}{given}" + (f". {arm.description}" if arm.description else "")


# -- questions and answers ---------------------------------------------------------------------------

_STATUS_ANSWERS = {
    "RECRUITING": "Yes.",
    "NOT_YET_RECRUITING": "Not yet: it has not started recruiting.",
    "ENROLLING_BY_INVITATION": "Only by invitation.",
    "ACTIVE_NOT_RECRUITING": "No: the study is active but not recruiting.",
    "SUSPENDED": "No: recruitment is suspended.",
    "TERMINATED": "No: the study was terminated.",
    "COMPLETED": "No: the study is completed.",
    "WITHDRAWN": "No: the study was withdrawn.",
}


def faq(record: EligibilityRecord) -> list[Answer]:
    """The questions patients ask, each answered from the record with its evidence; a question the
    record cannot answer is left out, and no question is asked twice."""
    eligibility, facts = record.eligibility, record.trial
    answers = []
    if facts.overall_status in _STATUS_ANSWERS:
        updated = f", record last updated {facts.last_update_posted}" if facts.last_update_posted else ""
        answers.append(Answer(
            f"Is {record.nct_id} currently recruiting?", _STATUS_ANSWERS[facts.overall_status],
            evidence=f"{record.source.registry} status {facts.overall_status}{updated}; "
                     f"retrieved {record.source.retrieved_at:%Y-%m-%d}",
        ))  # fmt: skip
    therapies = eligibility.prior_therapies
    required = [prior_therapy(t) for t in therapies if t.requirement == "required" and not only_caps_lines(t)]
    if required:
        answers.append(Answer("Is prior treatment required?", "Yes.", required))
    caps = [prior_therapy(t) for t in therapies if only_caps_lines(t)]
    if caps:
        answers.append(Answer("How many prior lines of treatment are allowed?", None, caps))
    excluded = [prior_therapy(t) for t in therapies if t.requirement == "excluded"]
    if excluded:
        answers.append(Answer("Which prior treatments exclude patients?", None, excluded))
    if eligibility.biomarkers:
        lead = "Every rule below must hold; within a rule, any one alternative will do." if len(eligibility.biomarkers) > 1 else None
        answers.append(Answer("Which biomarkers are required or excluded?", lead,
                              [biomarker_rule(rule) for rule in eligibility.biomarkers]))  # fmt: skip
    if stage := _stated_stage(eligibility):
        answers.append(Answer("Which disease stage is eligible?", None, [_stage(stage)]))
    if eligibility.performance_status:
        scales = sorted({p.scale for p in eligibility.performance_status})
        which = "ECOG performance status" if scales == ["ECOG"] else "performance status"
        answers.append(Answer(f"Which {which} is required?", None, [_performance(p) for p in eligibility.performance_status]))
    brain = eligibility.brain_metastases
    if brain is not None:
        answers.append(Answer("Are brain metastases allowed?", _BRAIN_WORDS[brain.status][2], [_brain(brain)]))
    return answers


def caveat(record: EligibilityRecord) -> str:
    made = record.extraction
    by = f"the {made.backend} backend" + (f", model {made.model}" if made.model else "") + (
        f", version {made.prompt_version}" if made.prompt_version else "")  # fmt: skip
    return (
        f"Structured by software (eligex {_eligex_version()}, {by}) from the registry's eligibility text on "
        f"{made.extracted_at:%Y-%m-%d}. It can be wrong or incomplete: check each requirement against its quoted "
        f"criterion and the official protocol before relying on it."
    )


def _eligex_version() -> str:
    try:
        return version("eligex")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown version"


# -- words -------------------------------------------------------------------------------------------


def _words(enum: str | None) -> str:
    """The registry's enum in words: NON_RANDOMIZED -> "Non randomized"."""
    return enum.replace("_", " ").capitalize() if enum else ""


def _phase(phase: str) -> str:
    return "Not applicable" if phase == "NA" else re.sub(r"PHASE(\d)", r"phase \1", phase).replace("_", " ").capitalize()


def _kind(kind: str | None) -> str:
    """" (estimated)", " (drug)": a qualifier in parentheses, or nothing."""
    return f" ({kind.lower()})" if kind else ""


def _number(value: float) -> str:
    """1500 -> "1500", 100000 -> "100,000", 1.5 -> "1.5"."""
    if value != int(value):
        return f"{value:g}"
    return f"{int(value):,}" if value >= 10000 else str(int(value))


def _count(number: float, unit: str) -> str:
    return f"{_number(number)} {unit}{'' if number == 1 else 's'}"


# -- templates ---------------------------------------------------------------------------------------


def markdown_text(value: Any) -> str:
    """A value for Markdown: on one line, with whatever could become markup escaped ("<script>" stays text)."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


@functools.cache
def _environments() -> dict[str, Environment]:
    def environment(**options) -> Environment:
        return Environment(loader=FileSystemLoader(_TEMPLATES), undefined=StrictUndefined, trim_blocks=True,
                           lstrip_blocks=True, keep_trailing_newline=True, **options)  # fmt: skip

    return {"card": environment(autoescape=False, finalize=markdown_text), "html": environment(autoescape=True)}


def write_cards(records: list[EligibilityRecord], out_dir: Path) -> list[Path]:
    """`eligex export --format cards`: NCT….md and NCT….html for every record, in `out_dir`."""
    from extract.store import atomic_write

    written = []
    for record in records:
        for fmt, suffix in (("card", "md"), ("html", "html")):
            path = out_dir / f"{record.nct_id}.{suffix}"
            atomic_write(path, render(record, fmt).encode())
            written.append(path)
    return written
