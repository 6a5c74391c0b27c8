"""Exports in formats other systems read: FHIR R5 (`fhir`) and MatchMiner's CTML (`ctml`). Pure but for `write`.

Each format is one module with `build(record) -> dict` (validated by that format's own schema before
it is returned) and `document(records) -> bytes` (what `eligex export --format NAME` writes).
"""

from __future__ import annotations

import sys
from pathlib import Path

from extract.store import atomic_write
from schemas import EligibilityRecord

FORMATS = ("fhir", "ctml")


def document(records: list[EligibilityRecord], fmt: str) -> bytes:
    if fmt == "fhir":
        from extract.interop import fhir

        return fhir.document(records)
    from extract.interop import ctml

    return ctml.document(records)


def write(records: list[EligibilityRecord], out: str, fmt: str) -> None:
    """`eligex export --format fhir|ctml`: to the file `out`, or stdout for "-"."""
    data = document(records, fmt)
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        atomic_write(Path(out), data)
