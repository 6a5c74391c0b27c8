"""Records keyed by a hash of canonical JSON; versions as a hash of the files they come from."""

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable


def canonical_sha256(document: Any) -> str:
    """sha256 of `document` as canonical JSON (sorted keys, no white space), so equal data hashes alike
    whichever file, page or JSONL line it came from."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def files_sha256(root: Path, paths: Iterable[Path]) -> str:
    """sha256 of files' names (relative to `root`) and bytes, in name order: a version that changes
    with any edit, addition, removal or move of those files (the code and data of a component)."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda path: path.relative_to(root).as_posix()):
        name = path.relative_to(root).as_posix().encode()
        content = path.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name + len(content).to_bytes(8, "big") + content)
    return digest.hexdigest()
