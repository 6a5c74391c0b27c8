"""Ablation of the vocabulary sources: the rules' F1 on the dev and test gold with each source left out.

    .venv/bin/python bench/vocab_ablation.py [--workspace DIR] [--out bench/results/vocab_ablation.json]

Each configuration is a vocabulary build (`python -m extract.rules.vocab_build --without SOURCE`) in a
folder of its own, which `ELIGEX_VOCAB_DIR` points `eligex eval --backend rules` to; "all sources" is
the committed build and "curated only" leaves every source out (the hand-curated TSVs alone). The
workspace holds every shared record and the project's records (imported once, then reused).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extract.rules.vocab_build import DEFAULT_SOURCES, SOURCES, build  # noqa: E402

ELIGEX = str(Path(sys.executable).with_name("eligex"))
SPLITS = ("dev", "test")


def scores(workspace: Path, vocab_dir: Path | None, out: Path) -> dict[str, dict]:
    """{split: {"micro": F1, "fields": {field: F1}}} of a rules eval with this vocabulary build."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ELIGEX_VOCAB_DIR")}
    if vocab_dir is not None:
        env["ELIGEX_VOCAB_DIR"] = str(vocab_dir)
    result = {}
    for split in SPLITS:
        report = out / split
        done = subprocess.run([ELIGEX, "--workspace", str(workspace), "eval", "--backend", "rules", "--split", split,
                               "--out", str(report)], env=env, capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"eval of {split} with {vocab_dir or 'the committed build'} failed: {done.stderr.strip()[-500:]}")
        metrics = json.loads((report / "metrics.json").read_text())
        result[split] = {"micro": round(metrics["micro"]["f1"], 3),
                         "fields": {name: round(field["f1"], 3) for name, field in metrics["fields"].items()}}  # fmt: skip
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "eligex-ablation")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vocab_ablation.json")
    args = parser.parse_args()
    if not (args.workspace / "eligex.duckdb").exists():
        shared = ROOT.parent / "shared" / "data"
        sources = [shared / "ctgov-v2", shared / "ctgov-classic-xml", shared / "ctgov-2026", ROOT / "evals" / "records"]
        subprocess.run([ELIGEX, "--workspace", str(args.workspace), "import", *map(str, sources)], check=True,
                       capture_output=True)  # fmt: skip
    configurations: list[tuple[str, list[str] | None]] = [("all sources", None), ("curated only", list(SOURCES))]
    configurations += [(f"without {source}", [source]) for source in SOURCES]
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, without in configurations:
            vocab_dir = None
            if without is not None:
                vocab_dir = Path(scratch) / name.replace(" ", "-")
                build(DEFAULT_SOURCES, vocab_dir, without)
            rows[name] = scores(args.workspace, vocab_dir, Path(scratch) / "reports" / name.replace(" ", "-"))
            print(f"{name:24} dev {rows[name]['dev']['micro']:.3f}  test {rows[name]['test']['micro']:.3f}", file=sys.stderr)
    args.out.write_text(json.dumps({"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    "configurations": rows}, indent=1) + "\n")  # fmt: skip
    print(f"written {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
