"""The README's promises about itself: every environment variable the project reads is in its table."""

from __future__ import annotations

import re
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
VARIABLE = re.compile(r"\bELIGEX_[A-Z_]+[A-Z]\b")


def test_every_eligex_variable_is_in_the_readmes_table():
    folders = ("extract", "schemas", "tests")
    sources = [CHECKOUT / "cli.py", *(path for folder in folders for path in (CHECKOUT / folder).rglob("*.py"))]
    read = {name for path in sources for name in VARIABLE.findall(path.read_text(encoding="utf-8"))}
    readme = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Environment variables"):]
    table = table[: table.index("\n### ")]
    listed = set(re.findall(r"^\| `(ELIGEX_[A-Z_]+)` \|", table, flags=re.MULTILINE))
    assert read and sorted(read - listed) == []
