"""eligex as a library: the pipeline's own functions, for apps that would rather not shell out.

    import eligex

    trial = eligex.parse_record(Path("NCT05253651.json").read_bytes(), "NCT05253651.json")
    criteria = eligex.segment(trial.eligibility_text)          # [Criterion(id="inc-1", ...), ...]
    record = eligex.extract(trial)                              # the rules backend; backend="openai" for the LLM
    record = eligex.validate(record.model_dump_json())          # any JSON document against the contract
    scores = eligex.score(record, eligex.load_gold(Path("evals/gold/NCT05253651.json")))
    result = eligex.match(eligex.Patient.model_validate_json(Path("patient.json").read_bytes()), record)

Records are `EligibilityRecord`s (../shared/SCHEMA.md as Pydantic models); `record.model_dump(mode="json")`
is the JSON that `eligex show` prints. Nothing here touches a workspace: use the command line (or
`extract.store.Workspace`) to store, cache and export. Errors are `EligexError`s: `InputError` for
bad input, `UpstreamError` when the LLM endpoint failed.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from extract.backend import Backend, assemble
from extract.errors import EligexError, InputError, UpstreamError
from extract.evaluate.scoring import score_trial, summarise
from extract.match import MatchResult, PatientFacts, Requirement, match_all, rank
from extract.match import match as _match
from extract.match_io import parse_patient
from extract.sources import RecordError, parse_document
from extract.text import normalise, segment
from schemas import SCHEMA_VERSION, Criterion, EligibilityRecord, Trial
from schemas.patient import Patient

__all__ = [
    "SCHEMA_VERSION", "Backend", "Criterion", "EligexError", "EligibilityRecord", "InputError", "MatchResult",
    "Patient", "Requirement", "Trial", "UpstreamError", "evaluate", "extract", "extract_async", "json_schema",
    "load_gold", "make_backend", "match", "match_all", "normalise", "parse_record", "parse_records", "rank", "score", "segment",
    "validate",
]  # fmt: skip


def parse_records(data: bytes | str | dict[str, Any], name: str = "record.json") -> list[Trial]:
    """Every trial in one registry document: an API v2 study or page of studies, classic XML, the flat
    2026 export, JSONL or CSV rows (`name`'s extension picks the format, as `eligex import` does; a
    dict is taken as JSON). A record that cannot be read raises InputError naming it and why."""
    if isinstance(data, dict):
        data = json.dumps(data)
    raw = data.encode() if isinstance(data, str) else data
    trials = []
    for number, parsed in enumerate(parse_document(raw, name, datetime.now(timezone.utc)), 1):
        if isinstance(parsed, RecordError):
            who = f" ({parsed.nct_id})" if parsed.nct_id else ""
            raise InputError(f"{name}, record {number}{who}: {parsed.reason}")
        trials.append(parsed.trial)
    return trials


def parse_record(data: bytes | str | dict[str, Any], name: str = "record.json") -> Trial:
    """The one trial of a registry document (see `parse_records`); InputError if it holds none or several."""
    trials = parse_records(data, name)
    if len(trials) != 1:
        raise InputError(f"{name} holds {len(trials)} trials, not one: use eligex.parse_records")
    return trials[0]


def make_backend(name: str = "rules", model: str | None = None) -> Backend:
    """A backend by name: "rules" (deterministic, no I/O) or "openai" (OPENAI_API_KEY and/or
    OPENAI_BASE_URL, ELIGEX_MODEL or `model`; no answer cache without a workspace)."""
    if name == "rules":
        from extract.rules import RulesBackend

        return RulesBackend()
    if name == "openai":
        from extract.llm import OpenAIBackend

        return OpenAIBackend.from_environment(model=model)
    raise InputError(f"unknown backend {name!r}: use 'rules' or 'openai'")


async def extract_async(trial: Trial, backend: Backend | str = "rules") -> EligibilityRecord:
    """`extract` in a running event loop; an LLM backend's requests then share it with other trials."""
    chosen = make_backend(backend) if isinstance(backend, str) else backend
    try:
        criteria = segment(trial.eligibility_text)
        return assemble(trial, criteria, await chosen.extract(trial, criteria), chosen)
    finally:
        if isinstance(backend, str) and hasattr(chosen, "client"):  # ours to close
            await chosen.client.close()


def extract(trial: Trial, backend: Backend | str = "rules") -> EligibilityRecord:
    """The trial's structured, grounded and validated record: segmentation, the backend ("rules",
    "openai" or a `Backend`), grounding of every quote, registry facts, `other` for what nothing
    captured. Raises the backend's error (an `UpstreamError` for a failed LLM call)."""
    return asyncio.run(extract_async(trial, backend))


def validate(document: EligibilityRecord | dict[str, Any] | str | bytes) -> EligibilityRecord:
    """A record checked against the contract, offsets included (`eligibility_text[start:end] == quote`);
    pydantic.ValidationError says what is wrong."""
    if isinstance(document, EligibilityRecord):
        document = document.model_dump(mode="json")
    if isinstance(document, (str, bytes)):
        return EligibilityRecord.model_validate_json(document)
    return EligibilityRecord.model_validate(document)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the record, as `eligex schema` prints it."""
    return EligibilityRecord.model_json_schema()


def load_gold(path: Path) -> dict[str, dict[str, Any]]:
    """Gold files by trial id: one `NCTxxxxxxxx.json` file, or every such file in a folder."""
    files = sorted(path.glob("NCT*.json")) if path.is_dir() else [path]
    gold = {}
    for file in files:
        try:
            gold[file.stem] = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(f"cannot read the gold file {file}: {error}") from None
    return gold


def score(record: EligibilityRecord | None, gold: dict[str, Any], nct_id: str | None = None) -> dict[str, Any]:
    """One record against its gold file (`{"nct_id", "eligibility"}`, or `load_gold`'s mapping): per
    field tp/fp/fn, the facts found, missed and spurious with their quotes, polarity errors,
    ungrounded and contradicted items. None scores as an empty extraction (a failed one)."""
    nct_id = nct_id or (record.nct_id if record else gold.get("nct_id"))
    one = gold if "eligibility" in gold else gold.get(nct_id)  # a gold file, or a mapping of them
    if not isinstance(one, dict) or "eligibility" not in one:
        raise InputError(f"no gold for {nct_id}")
    return score_trial(nct_id, one["eligibility"], record.model_dump(mode="json") if record else None)


def evaluate(records: Iterable[EligibilityRecord], gold: dict[str, dict[str, Any]], resamples: int = 1000) -> dict[str, Any]:
    """Metrics over many records, as `eligex eval` reports them: precision, recall and F1 per field
    and micro-averaged, with bootstrap intervals; every gold trial without a record scores as empty."""
    by_id = {record.nct_id: record for record in records}
    return summarise([score(by_id.get(nct_id), gold, nct_id) for nct_id in sorted(gold)], resamples)


def match(patient: Patient | PatientFacts | dict[str, Any] | str | bytes, record: EligibilityRecord | dict[str, Any] | str | bytes) -> MatchResult:
    """Check if a patient qualifies for one trial, as `eligex match` does (the same code): the verdict
    (`eligible`, `ineligible`, `uncertain`) and every requirement `meets`, `fails`, `unknown` (the profile
    lacks the fact) or `not_assessed` (a criterion eligex did not structure). A dict or JSON is read as
    a `Patient` (`eligex schema --patient`) and a contract record. For one patient against many records,
    `match_all(patient, records)` works the patient's facts out once and ranks the results."""
    if not isinstance(patient, PatientFacts):
        patient = parse_patient(patient)  # InputError, naming the field, for a profile that is not one
    return _match(patient, record if isinstance(record, EligibilityRecord) else validate(record))
