"""The I/O around matching: a patient file, a folder of records, the table people read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from extract.errors import InputError, one_line
from extract.match import MatchResult
from schemas import EligibilityRecord
from schemas.patient import Patient


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(map(str, first['loc'])) or 'the document'}: {first['msg']}"


def parse_patient(document: Patient | dict[str, Any] | str | bytes, name: str = "patient") -> Patient:
    """A patient profile from JSON or a dict; InputError, one line naming the field, when it is not one."""
    if isinstance(document, Patient):
        return document
    try:
        if isinstance(document, (str, bytes)):
            return Patient.model_validate_json(document)
        return Patient.model_validate(document)
    except ValidationError as error:
        raise InputError(one_line(f"{name}: {_problem(error)}", limit=400)) from None


def load_patient(path: Path) -> Patient:
    return parse_patient(path.read_bytes(), f"patient file {path}")


def read_records(folder: Path, removed: list[str] | None = None) -> tuple[list[EligibilityRecord], list[str]]:
    """Every contract record in `folder` (NCT*.json), and a line for each file that is not one. A
    record beside which a workspace says its study was removed from the registry (`NCT….removed`)
    is left out, its id added to `removed`."""
    records, failures = [], []
    for path in sorted(folder.glob("NCT*.json")):
        if path.with_suffix(".removed").exists():
            if removed is not None:
                removed.append(path.stem)
            continue
        try:
            records.append(EligibilityRecord.model_validate_json(path.read_bytes()))
        except ValidationError as error:
            failures.append(one_line(f"{path}: not a contract record: {_problem(error)}", limit=400))
    return records, failures


_MARK = {"meets": "meets", "fails": "FAILS", "unknown": "unknown", "not_assessed": "not assessed"}


def render_table(results: list[MatchResult], records: dict[str, EligibilityRecord]) -> str:
    """One trial: every requirement with its outcome, reason, criterion and quote. Many: one line each."""
    if len(results) != 1:
        lines = [f"{'trial':<12} {'verdict':<11} meets fails unknown not-assessed  title"]
        for result in results:
            title = records[result.nct_id].trial.title or ""
            counts = [result.count(o) for o in ("meets", "fails", "unknown", "not_assessed")]
            lines.append(f"{result.nct_id:<12} {result.verdict:<11} {counts[0]:>5} {counts[1]:>5} {counts[2]:>7} "
                         f"{counts[3]:>12}  {title[:60]}")  # fmt: skip
        return "\n".join(lines) + "\n"
    [result] = results
    lines = [f"{result.nct_id}: {result.verdict}"]
    for requirement in result.requirements:
        where = f" [{requirement.criterion_id}]" if requirement.criterion_id else ""
        quote = requirement.quote or ""
        if requirement.outcome == "not_assessed":
            lines.append(f"  {_MARK[requirement.outcome]:<12} {requirement.field:<18}{where} {quote[:100]}")
        else:
            lines.append(f"  {_MARK[requirement.outcome]:<12} {requirement.field:<18} {requirement.reason}"
                         + (f"{where} \"{quote[:80]}\"" if quote else ""))  # fmt: skip
    return "\n".join(lines) + "\n"
