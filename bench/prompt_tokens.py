"""Prompt tokens per trial and the stable-prefix share, over the dev gold trials, before (the prompt of
the `--before` revision, no examples) and after (this checkout's prompt, at 0, 2 and 3 few-shot examples).

    .venv/bin/python bench/prompt_tokens.py [--before main] [--data ../shared/data] [--out bench/results/prompt_tokens.json]

Every request is the one the openai backend would send (`OpenAIBackend.request`, tool mode, nothing is
sent). A request's text is its tool schema then its messages, in order (how providers lay out a prompt);
tokens are the project's estimate, four characters a token (`_tokens_estimate`; tiktoken is not a
dependency). The stable prefix is the leading text identical in every request; its share is its tokens
times the requests over all prompt tokens: the most a provider's prompt cache could serve (real caches
also round down to blocks, e.g. OpenAI's 128 tokens from 1,024 on, which this leaves out).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from extract.llm import PROMPT_FILE, OpenAIBackend, Prompt, load_prompt  # noqa: E402
from extract.prompting import FewShot, expand, split  # noqa: E402
from extract.sources import RawRecord, parse_document  # noqa: E402
from extract.text import segment  # noqa: E402

FILES = {"ctgov-v2": "{}.json", "ctgov-classic-xml": "{}.xml"}


def dev_trials(data: Path) -> list:
    wanted = set(split("dev"))
    sources = {n: json.loads((ROOT / "evals" / "gold" / f"{n}.json").read_text())["source"] for n in wanted}
    trials = {}
    for nct_id, source in sources.items():
        if source in FILES:
            path = data / source / FILES[source].format(nct_id)
            trials.update({p.trial.nct_id: p.trial for p in parse_document(path.read_bytes(), path.name) if isinstance(p, RawRecord)})
    lines = [line for line in (data / "ctgov-2026" / "trials.jsonl").read_bytes().splitlines()
             if any(f'"{n}"'.encode() in line[:40] for n in wanted)]  # fmt: skip
    for parsed in parse_document(b"\n".join(lines), "trials.jsonl"):
        if isinstance(parsed, RawRecord) and parsed.trial.nct_id in wanted:
            trials[parsed.trial.nct_id] = parsed.trial
    return [trials[n] for n in sorted(trials)]


def text(request: dict) -> str:
    return json.dumps(request.get("tools", [])) + "".join(m.get("content") or "" for m in request["messages"])


def measure(prompt: Prompt, trials: list) -> dict:
    client = openai.AsyncOpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")  # nothing is sent
    backend = OpenAIBackend(model="bench-model", client=client, prompt=prompt)
    per_trial, texts = [], []
    for trial in trials:
        criteria = segment(trial.eligibility_text)
        requests = [text(backend.request(trial, part)) for part in backend.parts(criteria)]
        texts += requests
        per_trial.append(sum(len(t) for t in requests) // 4)
    prefix = os.path.commonprefix(texts)
    total = sum(len(t) for t in texts) // 4
    per_trial.sort()
    return {"prompt_version": prompt.version, "trials": len(trials), "requests": len(texts),
            "prompt_tokens_total": total, "prompt_tokens_per_trial_mean": round(total / len(trials), 1),
            "prompt_tokens_per_trial_median": per_trial[len(per_trial) // 2],
            "stable_prefix_tokens": len(prefix) // 4,
            "stable_prefix_share": round(len(prefix) // 4 * len(texts) / total, 3)}  # fmt: skip


def git_show(revision: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def prompt_at(revision: str) -> Prompt:
    """The system prompt as `revision` built it (its includes from its own guide), with no examples."""
    with tempfile.TemporaryDirectory() as scratch:
        guide = Path(scratch) / "GUIDE.md"
        guide.write_text(git_show(revision, "evals/GUIDE.md"), encoding="utf-8")
        system = expand(git_show(revision, f"prompts/{PROMPT_FILE.name}").strip(), guide)
    return Prompt(PROMPT_FILE.stem, system, FewShot((), 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prompt_tokens.json")
    parser.add_argument("--before", default="main", help="the git revision whose prompt is 'before' (no examples)")
    args = parser.parse_args()
    trials = dev_trials(args.data)
    results = {"tokens": "characters / 4", "before": {"revision": args.before, **measure(prompt_at(args.before), trials)}}
    for k in (0, 2, 3):
        os.environ["ELIGEX_FEWSHOT_K"] = str(k)
        results[f"after_k{k}"] = measure(load_prompt(), trials)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
