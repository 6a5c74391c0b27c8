"""Shared test helpers. No test reaches the network: pytest-socket allows loopback only (pyproject)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import Criterion

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_criterion(text: str, kind: str = "inclusion", number: int = 1) -> Criterion:
    """A criterion standing alone, as segmentation would cut it from a record."""
    prefix = "inc" if kind == "inclusion" else "exc"
    return Criterion(id=f"{prefix}-{number}", kind=kind, text=text, start=0, end=len(text))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED_DATA}")
    return SHARED_DATA
