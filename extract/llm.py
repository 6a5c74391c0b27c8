"""The `openai` backend: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

The model sees the criteria with their ids and answers with items whose evidence is only a criterion
id and a verbatim quote; `extract.backend.assemble` grounds them with the one aligner. instructor
drives each request through its public API (`instructor.patch(create=...)` around our own transport):
it shapes the request (the tool, or the schema in the system prompt), validates the answer with the
trial's criteria as validation context, so that a quote the aligner would not find is re-asked with
the reason (instructor's citation pattern; after the last try the aligner drops the misquoted item
with a warning), and counts every attempt's tokens through its hooks. Each failure has one retry
policy: instructor re-asks an answer that fails validation (its re-ask turns sent as user turns:
strict chat templates refuse a `tool` role), tenacity retries transport failures (429, 5xx, timeouts,
lost connections) honouring Retry-After, and the openai client's own retries are off. A request always
bounds its answer (`max_tokens`) and asks for temperature 0; a trial's criteria are cut into parts that
fit the model's context, sent one after another, and a part the server finds too long is split in
two. The Batch API path (extract/batch.py) builds its requests and reads its answers with the same
methods; answers are cached by extract/cache.py, a wrapper around any backend.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import instructor
import openai
from aiolimiter import AsyncLimiter
from instructor.core import Hooks, IncompleteOutputException, InstructorRetryException
from openai.types.chat import ChatCompletion
from pydantic import Field, ValidationError, ValidationInfo, create_model, model_validator
from pydantic_core import PydanticCustomError
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt

from extract.backend import Draft
from extract.errors import (Billed, EligexError, InputError, UpstreamError, log, one_line, positive_env, redact,
                            retry_after, retry_notice)  # fmt: skip
from extract.grounding import locate
from extract.hashing import canonical_sha256
from extract.prompting import FewShot, expand
from extract.text import SEGMENTER_VERSION
from extract.transport import Breaker, checked_url
from schemas import Criterion, Trial
from schemas.fields import ITEM_FIELDS, ItemField, with_evidence
from schemas.record import Contract, NonNegative

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
PROMPT_FILE = PROMPTS / "extract-v1.md"  # its version follows its text and ExtractedEligibility (prompt_version)
PRICES_FILE = PROMPTS / "prices.json"
DEFAULT_MODEL = "gpt-4.1-mini"  # with OpenAI itself; a local server is asked what it serves
CHARS_PER_TOKEN = 3  # for sizing parts: clinical text runs nearer 3 characters a token than 4
CUT_OFF = "the model's answer was cut off at its output token limit"

# A pack's message opens with it: the schema's `trials` says the rest.
PACK_HEADING = ("Several trials follow, each with its own criteria: read each on its own, and answer each one "
                "under its NCT id in `trials`, every item quoting a criterion of that trial.")  # fmt: skip
Ask = tuple[Trial, list[Criterion]]  # some of a trial's criteria, to be read together
MISQUOTED = "misquoted"  # the error type of a quote that is not in the criteria
NO_ITEMS = "the model answered with no items at all: every criterion is left in `other`"
# How servers say a request is longer than the model's context (OpenAI, vLLM, llama.cpp, TGI).
_CONTEXT_ERROR = re.compile(r"context.length|context window|maximum context|too many tokens|prompt is too long", re.I)
MODES = {"tools": instructor.Mode.TOOLS, "json": instructor.Mode.JSON}


# Failures are reported once, per trial, by the pipeline; without a handler of its own instructor's
# log records (an ERROR line per failed attempt) would reach stderr through logging's last-resort handler.
logging.getLogger("instructor").addHandler(logging.NullHandler())


# -- what the model answers: the contract's items, with evidence reduced to what a model can know ----


class Quote(Contract):
    criterion_id: str = Field(pattern=r"^(inc|exc)-[1-9][0-9]*$", description="id of the criterion quoted")
    quote: str = Field(min_length=1, description="verbatim text of that criterion: the shortest span carrying the fact")

    @model_validator(mode="after")
    def _in_the_criteria(self, info: ValidationInfo) -> Quote:
        """With the trial in the validation context (`quote_context`), a quote the aligner would not find
        is an error the model is told about, criterion text and all; without it, no check (a pack's
        quotes are checked by the trial they are answered under: `_quotes_in_their_trial`)."""
        trial = info.context or {}
        if "criteria" in trial and (problem := misquote(self, trial)) is not None:
            raise PydanticCustomError(MISQUOTED, problem)
        return self


def misquote(quote: Quote, trial: dict[str, Any]) -> str | None:
    """What the model is told when the aligner would not find the quote in the trial (`quote_context`)."""
    if locate(trial["text"], quote.quote, trial["criteria"], quote.criterion_id) is not None:
        return None
    named = next((c.text for c in trial["criteria"] if c.id == quote.criterion_id), None)
    where = f"criterion {quote.criterion_id} ({named[:300]!r})" if named else "the criteria given"
    return f"the quote {quote.quote[:200]!r} is not in {where}: quote its words exactly"


class AgeLimits(Contract):
    min_years: NonNegative | None = None
    max_years: NonNegative | None = None
    evidence: Quote


def _answer_field(field: ItemField) -> tuple[Any, Any]:
    """An item field of the contract as the model answers it: its evidence reduced to a quote."""
    quoted = with_evidence(field.model, Quote, "Quoted", required=True)
    return (list[quoted], Field(default_factory=list)) if field.many else (quoted | None, None)


ANSWER_FIELDS = ("age_limits", *(field.name for field in ITEM_FIELDS))  # what the model may answer, in order


def _answer_specs(fields: tuple[str, ...]) -> dict[str, tuple[Any, Any]]:
    if unknown := sorted(set(fields) - set(ANSWER_FIELDS)):
        raise ValueError(f"not fields of the answer: {', '.join(unknown)}")
    specs = {"age_limits": (AgeLimits | None, Field(default=None, description="only when the criteria state an age"))}
    specs |= {field.name: _answer_field(field) for field in ITEM_FIELDS}
    return {name: specs[name] for name in ANSWER_FIELDS if name in fields}


@functools.lru_cache(maxsize=None)
def extracted(fields: tuple[str, ...] = ANSWER_FIELDS) -> type[Contract]:
    """The answer's model, asking for `fields` (a request scoped to some fields: the hybrid's)."""
    return create_model(
        "ExtractedEligibility",
        __base__=Contract,
        __doc__="What the eligibility criteria require; every item quotes the criterion it comes from.",
        **_answer_specs(fields),
    )


class _TrialAnswer(Contract):
    """One trial's answer within a pack: its quotes are checked against that trial's criteria."""

    nct_id: str = Field(pattern=r"^NCT[0-9]{8}$", description="the trial these items are about")

    @model_validator(mode="after")
    def _quotes_in_their_trial(self, info: ValidationInfo) -> _TrialAnswer:
        trials = (info.context or {}).get("trials")
        if trials is None:  # no validation context: no check, as for a trial's answer
            return self
        if self.nct_id not in trials:
            raise PydanticCustomError("unknown_trial", "{nct_id} is not a trial of this request: answer under the "
                                      "ids given ({ids})", {"nct_id": self.nct_id, "ids": ", ".join(trials)})  # fmt: skip
        problems = [problem for quote in _quotes(self) if (problem := misquote(quote, trials[self.nct_id])) is not None]
        if problems:
            raise PydanticCustomError(MISQUOTED, "; ".join(problems))
        return self


def _quotes(answer: Contract) -> list[Quote]:
    """Every quote of an answer's items."""
    items = [item for name in type(answer).model_fields for value in [getattr(answer, name)]
             for item in (value if isinstance(value, list) else [value])]  # fmt: skip
    return [item.evidence for item in items if isinstance(getattr(item, "evidence", None), Quote)]


@functools.lru_cache(maxsize=None)
def packed(fields: tuple[str, ...] = ANSWER_FIELDS) -> type[Contract]:
    """The answer to a pack (several trials in one request, extract/packing.py): one answer of
    `extracted(fields)` per trial, under its NCT id."""
    trial = create_model("TrialEligibility", __base__=_TrialAnswer, **_answer_specs(fields))
    return create_model(
        "PackedEligibility",
        __base__=Contract,
        __doc__="What each trial's eligibility criteria require, trial by trial; every item quotes a criterion of its trial.",
        trials=(list[trial], Field(default_factory=list, description="one entry per trial, under its NCT id")),
    )


@functools.lru_cache(maxsize=None)
def answer_model(fields: tuple[str, ...] = ANSWER_FIELDS, pack: bool = False) -> type[Contract]:
    """`extracted(fields)` (a pack's: `packed(fields)`) as instructor uses it (its tool schema generated
    once, not per request)."""
    return instructor.response_schema(packed(fields) if pack else extracted(fields))


ExtractedEligibility = extracted()
ANSWER_MODEL = answer_model()


def merge(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Answers for parts of one trial as one: lists concatenated, single fields first-wins."""
    merged: dict[str, Any] = {}
    for answer in answers:
        for name, value in answer.items():
            if isinstance(value, list):
                merged.setdefault(name, []).extend(value)
            elif merged.get(name) is None:
                merged[name] = value
    return merged


def to_eligibility(answer: dict[str, Any]) -> dict[str, Any]:
    """The contract's `eligibility` as plain data: ages stated in the text become text-origin facts."""
    eligibility = {name: value for name, value in answer.items() if name != "age_limits"}
    ages = answer.get("age_limits") or {}
    for name, key in (("min_age_years", "min_years"), ("max_age_years", "max_years")):
        if ages.get(key) is not None:
            eligibility[name] = ages[key]
            eligibility.setdefault("origins", {})[name] = {"origin": "text", "evidence": ages["evidence"]}
    return eligibility


# -- the prompt: a stable prefix (instructions, conventions; the schema travels as the tool) -----------


def prompt_version(name: str, system: str, schema: dict[str, Any], segmenter: str = SEGMENTER_VERSION,
                   examples: str = "") -> str:
    """The version of what the model is asked: the prompt's text, the answer's schema (the tool),
    the segmenter that numbers the criteria (cached answers name criterion ids) and the few-shot
    examples' version (their set, k and how they are chosen; extract/prompting.py). It keys the answer
    cache and says when a record is up to date, so an edit to any of them is asked afresh."""
    asked = {"system": system, "schema": schema, "segmenter": segmenter} | ({"examples": examples} if examples else {})
    return f"{name}+{canonical_sha256(asked)[:12]}"


@dataclass(frozen=True)
class Prompt:
    name: str  # the file's name, for people: "extract-v1"
    system: str  # with the guide's conventions included (extract/prompting.py)
    shots: FewShot | None = None  # few-shot examples, in the trial's message
    fields: tuple[str, ...] = ANSWER_FIELDS  # what the model is asked for (`scoped`)

    @cached_property
    def version(self) -> str:
        examples = self.shots.version if self.shots is not None and self.shots.k else ""
        return prompt_version(self.name, self.system, extracted(self.fields).model_json_schema(), examples=examples)

    @property
    def answer_model(self) -> type[Contract]:
        return answer_model(self.fields)

    def scoped(self, fields: tuple[str, ...]) -> Prompt:
        """This prompt asking for `fields` only: their sections of the system prompt (`scoped_system`),
        their schema, their items in the examples."""
        fields = tuple(name for name in ANSWER_FIELDS if name in fields)
        return Prompt(self.name, scoped_system(self.system, fields), self.shots, fields)

    def user(self, trial: Trial, criteria: list[Criterion], note: str = "") -> str:
        """The trial's message: the chosen examples, if any, then the trial (and `note` after it)."""
        shots = self.shots.message(trial.nct_id, criteria, self.fields) if self.shots is not None else ""
        return shots + trial_block(trial, criteria, note)

    def pack_user(self, asks: list[Ask], blocks: list[str]) -> str:
        """A pack's message (extract/packing.py): the examples chosen for all its criteria, then each
        trial's block as it goes alone (`trial_block`), and how to answer them."""
        criteria = [criterion for _, part in asks for criterion in part]
        shots = self.shots.message([t.nct_id for t, _ in asks], criteria, self.fields, PACK_HEADING) if self.shots else ""
        return (shots or f"{PACK_HEADING}\n\n") + "\n\n".join(blocks)


def scoped_system(system: str, fields: tuple[str, ...]) -> str:
    """The system prompt with the sections of `fields` only. A section whose `# Title` names a field of
    the answer ("# Prior therapies": prior_therapies) is that field's; the others (the opening, the
    evidence, the guide's decisions) go to every request."""
    sections = re.split(r"(?m)^(?=# )", system)
    return "".join(section for section in sections if section_field(section) in (None, *fields)).strip()


def section_field(section: str) -> str | None:
    """The answer field a section of the system prompt is about, by its title; None for the others."""
    title = section[2:].split("\n", 1)[0].strip().lower().replace(" ", "_") if section.startswith("# ") else ""
    return title if title in ANSWER_FIELDS else None


def load_prompt(path: Path = PROMPT_FILE, shots: FewShot | None = None) -> Prompt:
    """The prompt file with the guide's conventions included; examples as ELIGEX_FEWSHOT_K says unless given."""
    system = expand(path.read_text(encoding="utf-8").strip())
    return Prompt(name=path.stem, system=system, shots=FewShot.from_environment() if shots is None else shots)


def trial_message(trial: Trial, criteria: list[Criterion]) -> str:
    """The trial-specific part, sent last so that everything before it is a cacheable prefix."""
    lines = [f"Trial {trial.nct_id}: {trial.trial.title or '(no title)'}"]
    if trial.trial.conditions:
        lines.append(f"Conditions: {'; '.join(trial.trial.conditions)}")
    lines += ["", "Criteria:"] + [f"[{c.id}] {c.text}" for c in criteria]
    return "\n".join(lines)


def trial_block(trial: Trial, criteria: list[Criterion], note: str = "") -> str:
    """The trial's criteria as sent, and `note` after them (the hybrid's rules draft)."""
    return trial_message(trial, criteria) + (f"\n\n{note}" if note else "")


def empty(answer: dict[str, Any]) -> bool:
    """An answer with no item in any field."""
    return not any(answer.values())


def chunk(criteria: list[Criterion], budget: int) -> list[list[Criterion]]:
    """Criteria in order, grouped under `budget` characters of text; a criterion is never cut."""
    groups: list[list[Criterion]] = []
    size = 0
    for criterion in criteria:
        if not groups or size + len(criterion.text) > budget:
            groups.append([])
            size = 0
        groups[-1].append(criterion)
        size += len(criterion.text)
    return groups


# -- usage and cost -----------------------------------------------------------------------------------


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # input tokens the provider served from its prompt cache

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, name) + getattr(other, name) for name in COUNTS))

    def add(self, response: Any) -> None:
        usage = getattr(response, "usage", None)
        if usage is None:  # some local servers report none
            return
        self.input_tokens += usage.prompt_tokens or 0
        self.output_tokens += usage.completion_tokens or 0
        details = usage.prompt_tokens_details
        self.cached_tokens += (details.cached_tokens or 0) if details else 0


COUNTS = tuple(counter.name for counter in dataclasses.fields(Usage))


def shares(usage: Usage, weights: list[int]) -> list[Usage]:
    """A pack's usage shared out by weight (what each trial adds to the request), every total kept whole."""
    total = sum(weights) or 1
    split = [Usage() for _ in weights]
    for name in COUNTS:
        spent, given = getattr(usage, name), 0
        for index, weight in enumerate(weights):
            part = spent - given if index == len(weights) - 1 else spent * weight // total
            setattr(split[index], name, part)
            given += part
    return split


def load_prices() -> dict[str, dict[str, float]]:
    """USD per million tokens per model, from ELIGEX_PRICES (a JSON file) or the shipped table."""
    path = Path(os.environ.get("ELIGEX_PRICES") or PRICES_FILE)
    try:
        return json.loads(path.read_text(encoding="utf-8"))["usd_per_million_tokens"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read the price table {path}: {error}") from None


def cost_usd(prices: dict[str, dict[str, float]], model: str, usage: Usage) -> float | None:
    """What the usage cost; None for a model the table does not price."""
    price = prices.get(model)
    if price is None:
        return None
    cached_price = price.get("cached_input", price["input"])
    fresh = usage.input_tokens - usage.cached_tokens
    total = fresh * price["input"] + usage.cached_tokens * cached_price + usage.output_tokens * price["output"]
    return round(total / 1_000_000, 8)


# -- transport ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How hard to push the endpoint, how long to wait on it, how to cut long texts."""

    mode: str = "tools"  # "json" for servers without forced tool calls
    requests_per_minute: int = 500
    tokens_per_minute: int = 200_000
    max_in_flight: int = 256  # requests at once; the pipeline's --concurrency (at most 256) is the real bound
    timeout_seconds: float = 120.0  # for the whole answer of one attempt
    attempts: int = 4  # transport attempts per request
    backoff_seconds: float = 1.0  # first wait between attempts without Retry-After, then doubled
    max_wait_seconds: float = 30.0  # cap on any wait between attempts, Retry-After included
    reasks: int = 2  # re-asks after an answer fails validation
    max_tokens: int = 4096  # the answer's bound: a model that loops stops there, and it is a cut-off
    context_tokens: int = 128_000  # the model's context (ELIGEX_LLM_CONTEXT): prompt and answer together


def transient(error: BaseException) -> bool:
    """Worth another attempt: rate limits, server errors, timeouts and lost connections (the caller
    stops at a 500 that repeats: `retryable` in `_send`)."""
    if isinstance(error, TimeoutError):  # the attempt's deadline
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in (408, 409, 429) or error.status_code >= 500
    return isinstance(error, openai.APIConnectionError)


def server_wait(error: BaseException | None) -> float | None:
    """The server's own wait, in seconds, when it sent one."""
    if not isinstance(error, openai.APIStatusError):
        return None
    headers = error.response.headers
    milliseconds = retry_after(headers.get("retry-after-ms"))
    return milliseconds / 1000 if milliseconds is not None else retry_after(headers.get("retry-after"))


def too_long(error: BaseException) -> bool:
    """The server says the request does not fit the model's context."""
    if not isinstance(error, openai.APIStatusError) or error.status_code not in (400, 413, 422, 500):
        return False
    body = error.body if isinstance(error.body, dict) else {}
    return body.get("code") == "context_length_exceeded" or bool(_CONTEXT_ERROR.search(describe(error)))


def describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return str(error)
    if isinstance(error, openai.APITimeoutError):
        return "the request timed out"
    if isinstance(error, openai.APIConnectionError):
        return "could not connect"
    if isinstance(error, openai.APIStatusError):
        body = error.body if isinstance(error.body, dict) else {}
        message = body.get("message") or error.response.reason_phrase
        return one_line(f"HTTP {error.status_code} {message}")
    return one_line(str(error))


# -- the backend --------------------------------------------------------------------------------------


@dataclass
class OpenAIBackend:
    model: str
    client: openai.AsyncOpenAI
    settings: Settings = field(default_factory=Settings)
    prompt: Prompt = field(default_factory=load_prompt)
    prices: dict[str, dict[str, float]] = field(default_factory=load_prices)
    name: str = "openai"
    # Something more for the model to read after a part's criteria (the hybrid's rules draft, extract/hybrid.py).
    note: Callable[[list[Criterion]], str] | None = None

    def __post_init__(self) -> None:
        if self.settings.mode not in MODES:
            raise InputError(f"unknown LLM mode {self.settings.mode!r}: use one of {', '.join(MODES)}")
        mode = MODES[self.settings.mode]
        # instructor's public API around our own transport: it shapes the request, validates the answer
        # and re-asks; `_post` sends each attempt through the limits and the retry policy below.
        self._create = instructor.patch(create=self._post, mode=mode)
        # The same preparation, answered at once by an empty answer: the request that would be sent.
        self._prepare = instructor.patch(create=self._nothing, mode=mode)
        self._prefix = self.request()  # the stable prefix: system prompt; the tool, or the schema in the prompt
        self._prefix_chars = len(json.dumps(self._prefix))
        self._in_flight = asyncio.Semaphore(self.settings.max_in_flight)
        self._requests = AsyncLimiter(self.settings.requests_per_minute, 60)
        self._tokens = AsyncLimiter(self.settings.tokens_per_minute, 60)
        self._breaker = Breaker(redact(f"the LLM endpoint at {self.client.base_url}"))

    @property
    def prompt_version(self) -> str:
        return self.prompt.version

    def scoped(self, fields: tuple[str, ...]) -> OpenAIBackend:
        """This backend asking for `fields` only (`Prompt.scoped`), through the same client, limits and breaker."""
        scoped = dataclasses.replace(self, prompt=self.prompt.scoped(fields))
        scoped._in_flight, scoped._requests, scoped._tokens = self._in_flight, self._requests, self._tokens
        scoped._breaker = self._breaker
        return scoped

    @cached_property
    def answer_version(self) -> str:
        """What decides an answer besides the trial's text (it keys the answer cache, extract/cache.py):
        the prompt, the request's stable prefix as sent (system prompt, tool schema, model, max_tokens,
        temperature), the mode and how the criteria are cut into parts."""
        return canonical_sha256({"prompt_version": self.prompt_version, "prefix": self._prefix,
                                 "mode": self.settings.mode, "part_chars": self.part_chars})  # fmt: skip

    @classmethod
    def from_environment(cls, model: str | None = None) -> OpenAIBackend:
        """OPENAI_API_KEY and/or OPENAI_BASE_URL; model from the argument, ELIGEX_MODEL or the default."""
        api_key, base_url = os.environ.get("OPENAI_API_KEY"), os.environ.get("OPENAI_BASE_URL")
        if not api_key and not base_url:
            raise InputError("the openai backend needs OPENAI_API_KEY, or OPENAI_BASE_URL for a local server")
        if base_url:
            checked_url(base_url, "OPENAI_BASE_URL")
        settings = Settings(
            mode=os.environ.get("ELIGEX_LLM_MODE", "tools"),
            requests_per_minute=positive_env("ELIGEX_RPM", Settings.requests_per_minute),
            tokens_per_minute=positive_env("ELIGEX_TPM", Settings.tokens_per_minute),
            timeout_seconds=positive_env("ELIGEX_LLM_TIMEOUT", Settings.timeout_seconds),
            max_tokens=positive_env("ELIGEX_LLM_MAX_TOKENS", Settings.max_tokens),
            context_tokens=positive_env("ELIGEX_LLM_CONTEXT", Settings.context_tokens),
        )
        client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",  # local servers want a base URL only, the client wants a key
            base_url=base_url or None,
            timeout=settings.timeout_seconds,
            max_retries=0,  # one retry policy: ours
        )
        model = model or os.environ.get("ELIGEX_MODEL") or (served_model(client) if base_url else DEFAULT_MODEL)
        return cls(model=model, client=client, settings=settings)

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        return await self._extract(trial, criteria, Usage())

    async def _extract(self, trial: Trial, criteria: list[Criterion], usage: Usage) -> Draft:
        # One part after another: the pipeline's --concurrency is then the bound on requests in flight.
        answers = []
        try:
            for part in self.parts(criteria):
                answers += await self._ask_fitting(trial, part, usage)
        except Exception as error:
            raise self.billed(error, usage) from None
        return self.draft(merge(answers), usage)

    def billed(self, error: BaseException, usage: Usage, price_factor: float = 1.0) -> BaseException:
        """`error`, carrying what its trial was billed for (`extract.errors.billed` reads it)."""
        spent = self.draft({}, usage, price_factor)
        error.billed = Billed(spent.input_tokens, spent.output_tokens, spent.cost_usd if usage.input_tokens else None)
        return error

    def draft(self, answer: dict[str, Any], usage: Usage, price_factor: float = 1.0) -> Draft:
        """`price_factor` scales the list price (the Batch API charges half)."""
        cost = cost_usd(self.prices, self.model, usage)
        return Draft(
            eligibility=to_eligibility(answer),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=None if cost is None else round(cost * price_factor, 8),
            warnings=[NO_ITEMS] if empty(answer) else [],
        )

    def parts(self, criteria: list[Criterion]) -> list[list[Criterion]]:
        """The criteria as they are sent: one request per part."""
        return chunk(criteria, self.part_chars)

    @cached_property
    def part_chars(self) -> int:
        """Criteria text per request: what the context holds beside the prompt and the answer, and no
        more than the answer's bound, since an answer quotes the text it reads."""
        room = self.settings.context_tokens - self.settings.max_tokens - self._prefix_chars // CHARS_PER_TOKEN
        return max(1, min(room, self.settings.max_tokens)) * CHARS_PER_TOKEN

    def messages(self, trial: Trial | None = None, criteria: list[Criterion] = ()) -> list[dict[str, str]]:
        """The system prompt, then the trial's criteria when given."""
        system = {"role": "system", "content": self.prompt.system}
        if trial is None:
            return [system]
        return [system, {"role": "user", "content": self.prompt.user(trial, criteria, self._note(criteria))}]

    def _note(self, criteria: list[Criterion]) -> str:
        return self.note(criteria) if self.note is not None else ""

    def arguments(self, trial: Trial | None = None, criteria: list[Criterion] = ()) -> dict[str, Any]:
        """What instructor's `create` is given for a part of a trial (for the stable prefix alone,
        without one): the messages as literals (`literal`), the model and the parameters, and the
        validation context."""
        context = quote_context(trial, criteria) if trial is not None else {}
        return self._arguments(self.messages(trial, criteria), self.prompt.answer_model, context)

    def pack_arguments(self, asks: list[Ask], blocks: list[str]) -> dict[str, Any]:
        """`arguments` for a pack (`blocks`: each trial's `trial_block`): one message holding every
        trial, the pack's answer model, and each trial's quotes checked against its own criteria."""
        user = self.prompt.pack_user(asks, blocks)
        messages = [{"role": "system", "content": self.prompt.system}, {"role": "user", "content": user}]
        context = {"trials": {trial.nct_id: quote_context(trial, part) for trial, part in asks}}
        return self._arguments(messages, answer_model(self.prompt.fields, pack=True), context)

    def _arguments(self, messages: list[dict[str, str]], response_model: type, context: dict[str, Any]) -> dict[str, Any]:
        messages, variables = literal(messages)
        return {"response_model": response_model, "context": variables | context, "strict": False, "messages": messages,
                "model": self.model, "max_tokens": self.settings.max_tokens, "temperature": 0}  # fmt: skip

    def request(self, trial: Trial | None = None, criteria: list[Criterion] = ()) -> dict[str, Any]:
        """The chat completion first sent for a part of a trial, exactly as `_ask` sends it (the Batch API
        sends it as is): instructor prepares it from `arguments`, and an empty answer ends the attempt."""
        return self._prepared(self.arguments(trial, criteria))

    def pack_request(self, asks: list[Ask]) -> dict[str, Any]:
        """The chat completion first sent for a pack, exactly as `extract_pack` sends it."""
        return self._prepared(self.pack_arguments(asks, self.blocks(asks)))

    def _prepared(self, arguments: dict[str, Any]) -> dict[str, Any]:
        prepared: dict[str, Any] = {}
        hooks = Hooks()
        hooks.on("completion:kwargs", lambda **request: prepared.update(request))
        self._prepare(**arguments, max_retries=0, hooks=hooks)
        return prepared | {"messages": alternating(prepared["messages"])}

    def blocks(self, asks: list[Ask]) -> list[str]:
        """Each trial of a pack as its message holds it (`trial_block`)."""
        return [trial_block(trial, part, self._note(part)) for trial, part in asks]

    def _nothing(self, **request: Any) -> ChatCompletion:
        """An empty answer in the mode's shape: what `request` has instructor's preparation end with."""
        if self.settings.mode == "tools":
            message = {"role": "assistant", "tool_calls": [{"id": "none", "type": "function", "function": {
                "name": ExtractedEligibility.__name__, "arguments": "{}"}}]}  # fmt: skip
        else:
            message = {"role": "assistant", "content": "{}"}
        return ChatCompletion.model_validate({"id": "none", "object": "chat.completion", "created": 0, "model": self.model,
                                              "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})  # fmt: skip

    async def _ask_fitting(self, trial: Trial, criteria: list[Criterion], usage: Usage) -> list[dict[str, Any]]:
        """The answers for a part; halves of it, and so on, while the server finds it too long."""
        try:
            return [await self._ask(trial, criteria, usage)]
        except UpstreamError as error:
            if not (too_long(error.__cause__) and len(criteria) > 1):
                raise
        half = len(criteria) // 2
        return await self._ask_fitting(trial, criteria[:half], usage) + await self._ask_fitting(trial, criteria[half:], usage)

    async def _ask(self, trial: Trial, criteria: list[Criterion], usage: Usage, create: Any = None,
                   reasks: int | None = None) -> dict[str, Any]:  # fmt: skip
        """One validated answer for some of a trial's criteria (`_validated`)."""
        return await self._validated(self.arguments(trial, criteria), trial.nct_id, usage, create, reasks)

    async def _validated(self, arguments: dict[str, Any], about: str, usage: Usage, create: Any = None,
                         reasks: int | None = None) -> dict[str, Any]:  # fmt: skip
        """One validated answer to `arguments` (about the trials named `about`), re-asked while it fails
        validation (`reasks` times at most); `usage` counts every attempt's tokens, failed ones too.
        `create`: instructor's patched create (default: through our transport)."""
        hooks = Hooks()
        hooks.on("completion:response", usage.add)
        hooks.on("parse:error", self._reask_notice(about))
        reasks = self.settings.reasks if reasks is None else reasks
        try:
            answer = await (create or self._create)(**arguments, max_retries=reasks, hooks=hooks)
        except IncompleteOutputException:
            raise UpstreamError(CUT_OFF) from None
        except InstructorRetryException as failure:
            return self._last_try(failure, arguments["response_model"])
        return answer.model_dump(mode="json")

    def _reask_notice(self, about: str):
        """A `parse:error` hook: each re-ask is said (logger "eligex"), with the reason the model is given."""

        def notice(error: Exception, *, attempt_number: int = 0, is_last_attempt: bool = False, **_: Any) -> None:
            if not is_last_attempt:
                log.warning(one_line(f"re-asking the model ({self.model}) for {about} "
                                     f"(attempt {attempt_number + 1}): {_problem(error)}", 300))  # fmt: skip

        return notice

    def _last_try(self, failure: InstructorRetryException, response_model: type[Contract]) -> dict[str, Any]:
        """After the last attempt: an answer whose only faults are misquotes is kept (the aligner drops
        each misquoted item, with a warning); any other fault fails the part, and a transport failure
        is raised as it was."""
        problem = failure.__cause__
        if isinstance(problem, EligexError):
            raise problem
        if isinstance(problem, ValidationError) and failure.last_completion is not None and misquoted_only(problem):
            text = answer_text(failure.last_completion, self.settings.mode)
            return response_model.model_validate_json(text, strict=False).model_dump(mode="json")
        raise UpstreamError(f"no valid answer after {failure.n_attempts} attempt(s): {_problem(problem)}") from None

    async def extract_pack(self, asks: list[Ask], spent: list[Usage] | None = None) -> list[Draft | BaseException]:
        """For each of several trials asked in one request (extract/packing.py), its draft or its failure,
        each with its share of the usage (`shares`; `spent`: what each trial cost before), a failure
        of the request being every trial's. A pack the server finds too long, or whose answer is cut
        off, is asked again in halves; a trial alone is asked as `extract` asks it."""
        spent = spent or [Usage() for _ in asks]
        if len(asks) == 1:
            try:
                return [await self._extract(*asks[0], spent[0])]
            except Exception as error:
                return [error]
        usage = Usage()
        blocks = self.blocks(asks)
        weights = [len(block) for block in blocks]  # what each trial adds to the request
        try:
            answer = await self._validated(self.pack_arguments(asks, blocks), ", ".join(t.nct_id for t, _ in asks), usage)
        except Exception as error:
            spent = [before + share for before, share in zip(spent, shares(usage, weights))]
            if isinstance(error, UpstreamError) and (str(error) == CUT_OFF or too_long(error.__cause__)):
                half = len(asks) // 2
                return await self.extract_pack(asks[:half], spent[:half]) + await self.extract_pack(asks[half:], spent[half:])
            return [self.billed(copy.copy(error), each) for each in spent]  # the same failure, each billed its own
        by_trial: dict[str, list[dict[str, Any]]] = {}
        for one in answer.get("trials") or []:
            by_trial.setdefault(one.pop("nct_id"), []).append(one)
        return [self.draft(merge(by_trial.get(trial.nct_id, [])), before + share)
                for (trial, _), before, share in zip(asks, spent, shares(usage, weights))]  # fmt: skip

    async def answered(self, trial: Trial, criteria: list[Criterion], completion: ChatCompletion, usage: Usage) -> dict[str, Any]:
        """A completion obtained elsewhere (a Batch API result) read as `_ask` reads an answer: the same
        normalising, validation and last-try rule, without re-asks."""

        async def replay(**request: Any) -> ChatCompletion:
            return self._normalised(completion)

        return await self._ask(trial, criteria, usage, instructor.patch(create=replay, mode=MODES[self.settings.mode]), 0)

    async def _post(self, **request: Any) -> ChatCompletion:
        """What instructor's `create` calls for every attempt: re-ask turns as user turns, the request
        through the limits and the retry policy (`_send`), the answer made parseable (`_normalised`)."""
        request["messages"] = alternating(request["messages"])
        return self._normalised(await self._send(request))

    def _normalised(self, response: ChatCompletion) -> ChatCompletion:
        """The answer as instructor reads it: JSON with raw newlines in strings (grammar-constrained output
        allows them) rewritten as strict JSON, a Markdown fence around JSON content removed, and an
        answer that ran out of room marked `length` (servers may say `tool_calls` when the context ran
        out) so that instructor stops instead of re-asking. A tools-mode answer without a tool call is
        left alone: instructor re-asks it."""
        choice = response.choices[0] if response.choices else None
        if choice is None or choice.finish_reason == "length":
            return response
        message = choice.message
        call = message.tool_calls[0].function if self.settings.mode == "tools" and message.tool_calls else None
        if call is None and self.settings.mode == "tools":
            return response
        text = call.arguments if call is not None else answer_text(response, self.settings.mode)
        try:
            json.loads(text or "")
        except json.JSONDecodeError:
            try:
                text = json.dumps(json.loads(text or "", strict=False), ensure_ascii=False)
            except json.JSONDecodeError as error:
                if (text or "").strip() and (self._cut_off(response) or truncated(text, error)):
                    choice.finish_reason = "length"
        if call is not None:
            call.arguments = text
        else:
            message.content = text
        return response

    def _cut_off(self, response: Any) -> bool:
        """The answer used every token it was allowed, or prompt and answer filled the model's context."""
        usage = getattr(response, "usage", None)
        if usage is None:
            return False
        spent = (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
        return (usage.completion_tokens or 0) >= self.settings.max_tokens or spent >= self.settings.context_tokens

    async def _send(self, request: dict[str, Any]) -> Any:
        """One chat completion under the limits, retried on transport failures; UpstreamError after that."""
        estimate = min(self._tokens_estimate(request), self.settings.tokens_per_minute)
        errors: list[str] = []  # what each failed attempt was answered

        def retryable(state: RetryCallState) -> bool:
            """Transient, unless a 500 says the same thing again to the same request: a server
            rejecting what it is sent (a chat template refusing the messages) does so every time."""
            error = state.outcome.exception()
            if error is None or not transient(error):
                return False
            said = describe(error) if isinstance(error, openai.APIStatusError) and error.status_code == 500 else None
            repeated = said is not None and errors[-1:] == [said]
            errors.append(said)
            return not repeated

        retrying = AsyncRetrying(
            retry=retryable,
            stop=stop_after_attempt(self.settings.attempts),
            wait=self._wait,
            before_sleep=retry_notice(f"the LLM request ({self.model})"),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    self._breaker.check()
                    await self._requests.acquire()
                    await self._tokens.acquire(estimate)
                    async with self._in_flight:
                        response = await self._attempt(request)
                    return response
        except (openai.OpenAIError, TimeoutError) as error:
            attempts = retrying.statistics.get("attempt_number", 1)
            repeated = len(errors) >= 2 and errors[-1] is not None and errors[-1] == errors[-2]
            why = " (the same error twice for the same request: not transient)" if repeated else ""
            raise UpstreamError(redact(
                f"LLM request to {self.client.base_url} failed after {attempts} attempt(s): {describe(error)}{why}"
            )) from error

    def input_tokens_estimate(self, trial: Trial, criteria: list[Criterion], prefix_share: float = 1.0) -> int:
        """The input tokens the trial's requests will cost, roughly: for a cost estimate before a run.
        `prefix_share`: the part of the stable prefix (system prompt, tool) the trial pays a request
        (the trials of a pack share one)."""
        return sum(self._tokens_estimate({"messages": self.messages(trial, part)}, prefix_share) for part in self.parts(criteria))

    async def _attempt(self, request: dict[str, Any]) -> Any:
        """One request with a deadline for its whole answer (the client's timeout restarts with every
        byte); every outcome tells the breaker whether anybody answered."""
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                response = await self.client.chat.completions.create(**request)
        except TimeoutError:
            raise TimeoutError(f"no complete answer within {self.settings.timeout_seconds:g} s") from None
        except openai.APIStatusError:
            self._breaker.answered()
            raise
        except openai.APIConnectionError as error:
            self._breaker.failed(error, describe(error))
            raise
        self._breaker.answered()
        return response

    def _tokens_estimate(self, request: dict[str, Any], prefix_share: float = 1.0) -> int:
        """Roughly what the provider counts against tokens per minute: four characters a token."""
        added = request["messages"][len(self._prefix["messages"]) :]  # the trial's message, re-asks
        return (int(self._prefix_chars * prefix_share) + sum(len(message.get("content") or "") for message in added)) // 4

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After when the server sent one, else exponential backoff with jitter; capped either way."""
        delay = server_wait(state.outcome.exception() if state.outcome else None)
        if delay is None:
            delay = self.settings.backoff_seconds * 2 ** (state.attempt_number - 1) * random.uniform(1, 1.5)
        return min(delay, self.settings.max_wait_seconds)


def answer_text(response: Any, mode: str) -> str:
    """The answer's JSON as the model wrote it: the tool call's arguments, or the message's content
    (without a Markdown fence around it)."""
    message = response.choices[0].message if response.choices else None
    if message is None:
        return ""
    if mode == "tools" and message.tool_calls:
        return message.tool_calls[0].function.arguments or ""
    text = (message.content or "").strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*(?:```)?", text, re.S)
    return fenced[1] if fenced else text


def truncated(text: str, error: json.JSONDecodeError) -> bool:
    """JSON that stops mid-way, as an answer cut off at a limit does (not JSON that goes wrong)."""
    return error.msg.startswith("Unterminated string") or error.pos >= len(text.rstrip())


def literal(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The messages as instructor's templating leaves them intact, and the variables that hold them.

    Given a validation context, instructor renders every message as a Jinja template, so that braces in
    a criterion (`{{`, `{%`, `{#`) would be read as template syntax; each message's content becomes a
    variable of the context instead (`{{ eligex_message_0 }}`), which renders to its text unchanged (but
    for the `dedent` instructor applies: the first line is never indented, so only lines of white
    space alone change, to empty lines)."""
    variables = {f"eligex_message_{index}": message["content"] for index, message in enumerate(messages)}
    templated = [message | {"content": "{{ %s }}" % name} for message, name in zip(messages, variables)]
    return templated, variables


def alternating(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with instructor's tools-mode re-ask turns as chat templates that know only user and
    assistant turns accept them (Gemma's refuses a `tool` role with an HTTP 500): the assistant's tool
    call as its text, each tool result as a user turn, consecutive user turns joined."""
    plain: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            content = "\n".join(call["function"]["arguments"] or "" for call in message["tool_calls"])
            message = {"role": "assistant", "content": content}
        elif role == "tool":
            message = {"role": "user", "content": content}
        if plain and message["role"] == "user" == plain[-1]["role"]:
            plain[-1] = {"role": "user", "content": f"{plain[-1]['content']}\n\n{message['content']}"}
        else:
            plain.append(message)
    return plain


def quote_context(trial: Trial, criteria: list[Criterion]) -> dict[str, Any]:
    """The validation context in which `Quote` checks each quote: the trial's text and the criteria sent."""
    return {"text": trial.eligibility_text, "criteria": criteria}


def misquoted_only(error: ValidationError) -> bool:
    return all(problem["type"] == MISQUOTED for problem in error.errors())


def served_model(client: openai.AsyncOpenAI) -> str:
    """The model a local server serves (GET /v1/models), when it serves exactly one."""
    url = redact(str(client.base_url))
    try:
        models = openai.OpenAI(api_key=client.api_key, base_url=client.base_url, timeout=10, max_retries=0).models.list()
        names = [model.id for model in models.data]
    except openai.OpenAIError as error:
        raise InputError(f"no model named and {url}models did not say ({describe(error)}): "
                         "name one with --model or ELIGEX_MODEL") from None  # fmt: skip
    if len(names) != 1:
        raise InputError(f"{url} serves {len(names)} models ({', '.join(names[:10])}): "
                         "name one with --model or ELIGEX_MODEL")  # fmt: skip
    return names[0]


def _problem(error: BaseException) -> str:
    """The first thing wrong with an answer, on one line."""
    if isinstance(error, json.JSONDecodeError):
        return f"answer: Invalid JSON: {error}"
    if isinstance(error, ValidationError) and error.errors():
        first = error.errors()[0]
        return f"{'.'.join(map(str, first['loc'])) or 'answer'}: {first['msg']}"
    return one_line(str(error)) or type(error).__name__
