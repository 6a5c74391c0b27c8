"""The answer cache: a wrapper around any backend that answers an unchanged trial from the workspace.

A backend that is worth caching says what decides its answers besides the trial's text, as its
`answer_version` (the openai backend: prompt, tool schema, model and parameters); the cache key is
that, the schema version and the eligibility text. A cached answer is the backend's draft as it was
(its eligibility and warnings), costing nothing: no tokens, $0.00. `refresh` asks the backend again
and the new draft replaces the cached one. Failures are never cached, nor a partial draft (`Draft.complete`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extract.backend import Draft
from extract.hashing import canonical_sha256
from extract.store import Workspace
from schemas import SCHEMA_VERSION, Criterion, Trial


def cache_key(answer_version: str, trial: Trial) -> str:
    return canonical_sha256({"answer_version": answer_version, "schema_version": SCHEMA_VERSION,
                             "eligibility_text": trial.eligibility_text})  # fmt: skip


@dataclass
class CachedBackend:
    backend: Any  # any backend with an `answer_version`
    workspace: Workspace
    refresh: bool = False  # ask the backend again instead of answering from the cache

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def model(self) -> str | None:
        return self.backend.model

    @property
    def prompt_version(self) -> str | None:
        return self.backend.prompt_version

    @property
    def client(self) -> Any:
        """The backend's HTTP client, for the CLI to close in the loop that used it."""
        return getattr(self.backend, "client", None)

    def key(self, trial: Trial) -> str:
        return cache_key(self.backend.answer_version, trial)

    def cached(self, trial: Trial) -> bool:
        """Whether `extract` would answer the trial from the cache (never under `refresh`)."""
        return not self.refresh and self.workspace.cache_get(self.key(trial)) is not None

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        key = self.key(trial)
        cached = None if self.refresh else await self.workspace.cache_lookup(key)
        if cached is not None:
            answer = cached["response"]
            return Draft(eligibility=answer["eligibility"], cost_usd=0.0, warnings=answer["warnings"])
        draft = await self.backend.extract(trial, criteria)
        if not draft.complete:
            return draft
        # Written with the trial's record (the workspace's next group write).
        self.workspace.cache_put(key, model=self.model or "", prompt_version=self.prompt_version or "",
                                 schema_version=SCHEMA_VERSION,
                                 response={"eligibility": draft.eligibility, "warnings": draft.warnings},
                                 input_tokens=draft.input_tokens, output_tokens=draft.output_tokens)  # fmt: skip
        return draft
