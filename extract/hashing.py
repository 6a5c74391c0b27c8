"""Records keyed by a hash of canonical JSON. Pure: no I/O."""

import hashlib
import json
from typing import Any


def canonical_sha256(document: Any) -> str:
    """sha256 of `document` as canonical JSON (sorted keys, no white space), so equal data hashes alike
    whichever file, page or JSONL line it came from."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
