"""Exports in formats other systems read: FHIR R5 (`fhir`) and MatchMiner's CTML (`ctml`). Pure but for `write_fhir`.

Each format is one module with `build(record) -> dict`, validated by that format's own schema before
it is returned. `eligex export` writes CTML's documents as JSON lines, one record at a time
(`extract.export.export`), and FHIR's as one Bundle (`fhir.document(records)`, `write_fhir`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from extract.store import atomic_write
from schemas import EligibilityRecord

FORMATS = ("fhir", "ctml")


def write_fhir(records: list[EligibilityRecord], out: str) -> None:
    """`eligex export --format fhir`, one Bundle of every record: to the file `out`, or stdout for "-".
    (CTML's lines stream through `extract.export.export`.)"""
    from extract.interop import fhir

    data = fhir.document(records)
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        atomic_write(Path(out), data)
