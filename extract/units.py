"""Lab units: one conversion to canonical units, so that 1,500/mm3 and 1.5 x10^9/L compare equal. Pure.

Scoring compares extracted thresholds with gold through it; matching compares a patient's values
with a trial's thresholds through it.
"""

from __future__ import annotations

import re

# Molar mass factors: umol/L divided by these gives mg/dL.
_UMOL_PER_MG_DL = {"creatinine": 88.4, "total_bilirubin": 17.1, "direct_bilirubin": 17.1}


def lab_threshold(analyte: str, value: float | None, unit: str | None, uln_multiple: float | None):
    """(number, canonical unit) of a lab threshold, so that 1,500/mm3 and 1.5 x10^9/L compare equal."""
    if uln_multiple is not None:
        return uln_multiple, "x ULN"
    if value is None or unit is None:
        return value, unit
    if unit.strip() == "G/L":  # giga per litre, before lower-casing makes it grams
        return value, "10^9/L"
    written = re.sub(r"\s+", "", unit).replace("µ", "u").replace("μ", "u").replace("×", "x")
    written = written.replace("mm^3", "mm3").replace("mm³", "mm3").lower().removeprefix("cells").removeprefix("x")
    written = written.replace("mcl", "ul")  # mcL is the microlitre too
    if written in ("/mm3", "/ul"):
        return value / 1000, "10^9/L"
    if written in ("10^9/l", "10^3/ul"):
        return value, "10^9/L"
    if written == "g/l":
        return value / 10, "g/dL"
    if written == "g/dl":
        return value, "g/dL"
    if written == "umol/l" and analyte in _UMOL_PER_MG_DL:
        return value / _UMOL_PER_MG_DL[analyte], "mg/dL"
    if written == "mg/dl":
        return value, "mg/dL"
    return value, written  # compared as written (spacing and case aside)
