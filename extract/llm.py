"""The `openai` backend: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

The model sees the criteria with their ids and answers with items whose evidence is only a criterion
id and a verbatim quote; `extract.backend.assemble` grounds them with the one aligner. Each failure
has one retry policy: an answer that fails validation is re-asked (in instructor's words, as a user
message: strict chat templates refuse a `tool` role), tenacity retries transport failures (429, 5xx,
timeouts, lost connections) honouring Retry-After, and the openai client's own retries are off. A
request always bounds its answer (`max_tokens`) and asks for temperature 0; a trial's criteria are
cut into parts that fit the model's context, sent one after another, and a part the server finds
too long is split in two. Answers are cached per eligibility text in the workspace, so an unchanged
trial is never sent twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import openai
from aiolimiter import AsyncLimiter
from instructor.v2 import Mode, Provider, mode_registry
from pydantic import Field, ValidationError, create_model
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt

from extract.backend import Draft
from extract.errors import Billed, InputError, UpstreamError, one_line, positive_env, redact, retry_after, retry_notice
from extract.hashing import canonical_sha256
from extract.store import Workspace
from extract.text import SEGMENTER_VERSION
from extract.transport import Breaker, checked_url
from schemas import SCHEMA_VERSION, Criterion, Trial
from schemas.fields import ITEM_FIELDS, ItemField, with_evidence
from schemas.record import Contract, NonNegative

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
PROMPT_FILE = PROMPTS / "extract-v1.md"  # its version follows its text and ExtractedEligibility (prompt_version)
PRICES_FILE = PROMPTS / "prices.json"
DEFAULT_MODEL = "gpt-4.1-mini"  # with OpenAI itself; a local server is asked what it serves
CHARS_PER_TOKEN = 3  # for sizing parts: clinical text runs nearer 3 characters a token than 4
CUT_OFF = "the model's answer was cut off at its output token limit"
NO_ITEMS = "the model answered with no items at all: every criterion is left in `other`"
# How servers say a request is longer than the model's context (OpenAI, vLLM, llama.cpp, TGI).
_CONTEXT_ERROR = re.compile(r"context.length|context window|maximum context|too many tokens|prompt is too long", re.I)
MODES = {"tools": Mode.TOOLS, "json": Mode.JSON}

# Failures are reported once, per trial, by the pipeline; without a handler of its own instructor's
# log records would reach stderr through logging's last-resort handler.
logging.getLogger("instructor").addHandler(logging.NullHandler())


# -- what the model answers: the contract's items, with evidence reduced to what a model can know ----


class Quote(Contract):
    criterion_id: str = Field(pattern=r"^(inc|exc)-[1-9][0-9]*$", description="id of the criterion quoted")
    quote: str = Field(min_length=1, description="verbatim text of that criterion: the shortest span carrying the fact")


class AgeLimits(Contract):
    min_years: NonNegative | None = None
    max_years: NonNegative | None = None
    evidence: Quote


def _answer_field(field: ItemField) -> tuple[Any, Any]:
    """An item field of the contract as the model answers it: its evidence reduced to a quote."""
    quoted = with_evidence(field.model, Quote, "Quoted", required=True)
    return (list[quoted], Field(default_factory=list)) if field.many else (quoted | None, None)


ExtractedEligibility = create_model(
    "ExtractedEligibility",
    __base__=Contract,
    __doc__="What the eligibility criteria require; every item quotes the criterion it comes from.",
    age_limits=(AgeLimits | None, Field(default=None, description="only when the criteria state an age")),
    **{field.name: _answer_field(field) for field in ITEM_FIELDS},
)


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


def prompt_version(name: str, system: str, schema: dict[str, Any], segmenter: str = SEGMENTER_VERSION) -> str:
    """The version of what the model is asked: the prompt's text, the answer's schema (the tool) and
    the segmenter that numbers the criteria (cached answers name criterion ids). It keys the answer
    cache and says when a record is up to date, so an edit to any of them is asked afresh."""
    return f"{name}+{canonical_sha256({'system': system, 'schema': schema, 'segmenter': segmenter})[:12]}"


@dataclass(frozen=True)
class Prompt:
    name: str  # the file's name, for people: "extract-v1"
    system: str

    @cached_property
    def version(self) -> str:
        return prompt_version(self.name, self.system, ExtractedEligibility.model_json_schema())


def load_prompt(path: Path = PROMPT_FILE) -> Prompt:
    return Prompt(name=path.stem, system=path.read_text(encoding="utf-8").strip())


def trial_message(trial: Trial, criteria: list[Criterion]) -> str:
    """The trial-specific part, sent last so that everything before it is a cacheable prefix."""
    lines = [f"Trial {trial.nct_id}: {trial.trial.title or '(no title)'}"]
    if trial.trial.conditions:
        lines.append(f"Conditions: {'; '.join(trial.trial.conditions)}")
    lines += ["", "Criteria:"] + [f"[{c.id}] {c.text}" for c in criteria]
    return "\n".join(lines)


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

    def add(self, response: Any) -> None:
        usage = getattr(response, "usage", None)
        if usage is None:  # some local servers report none
            return
        self.input_tokens += usage.prompt_tokens or 0
        self.output_tokens += usage.completion_tokens or 0
        details = usage.prompt_tokens_details
        self.cached_tokens += (details.cached_tokens or 0) if details else 0


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
    workspace: Workspace | None = None
    settings: Settings = field(default_factory=Settings)
    prompt: Prompt = field(default_factory=load_prompt)
    prices: dict[str, dict[str, float]] = field(default_factory=load_prices)
    name: str = "openai"
    refresh: bool = False  # ask again instead of answering from the cache (the new answer replaces it)

    def __post_init__(self) -> None:
        if self.settings.mode not in MODES:
            raise InputError(f"unknown LLM mode {self.settings.mode!r}: use one of {', '.join(MODES)}")
        # instructor's handler for the mode shapes the request (the tool, or the schema in the system
        # prompt); parsing and re-asks are ours (`_ask`): lenient JSON, and re-asks as user messages.
        handlers = mode_registry.get_handlers(Provider.OPENAI, MODES[self.settings.mode])
        # The stable prefix (system prompt; the tool, or the schema in the system prompt) built once.
        _, self._prefix = handlers.request_handler(
            response_model=ExtractedEligibility, kwargs={"messages": self.messages()}
        )
        self._prefix_chars = len(json.dumps(self._prefix))
        self._in_flight = asyncio.Semaphore(self.settings.max_in_flight)
        self._requests = AsyncLimiter(self.settings.requests_per_minute, 60)
        self._tokens = AsyncLimiter(self.settings.tokens_per_minute, 60)
        self._breaker = Breaker(redact(f"the LLM endpoint at {self.client.base_url}"))

    @property
    def prompt_version(self) -> str:
        return self.prompt.version

    @classmethod
    def from_environment(cls, model: str | None = None, workspace: Workspace | None = None) -> OpenAIBackend:
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
        return cls(model=model, client=client, workspace=workspace, settings=settings)

    def cache_key(self, trial: Trial) -> str:
        """What decides the answer: model, prompt (with its tool schema), the request's parameters, text."""
        parameters = {"mode": self.settings.mode, "max_tokens": self.settings.max_tokens, "temperature": 0,
                      "part_chars": self.part_chars}  # fmt: skip
        return canonical_sha256({"model": self.model, "prompt_version": self.prompt_version, "parameters": parameters,
                                 "schema_version": SCHEMA_VERSION, "eligibility_text": trial.eligibility_text})  # fmt: skip

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        key = self.cache_key(trial)
        cached = await self.workspace.cache_lookup(key) if self.workspace and not self.refresh else None
        if cached is not None:
            return self.draft(cached["response"], Usage())  # no request, nothing spent
        usage = Usage()
        # One part after another: the pipeline's --concurrency is then the bound on requests in flight.
        answers = []
        try:
            for part in self.parts(criteria):
                answers += await self._ask_fitting(trial, part, usage)
        except Exception as error:
            raise self.billed(error, usage) from None
        answer = merge(answers)
        self.remember(key, answer, usage)
        return self.draft(answer, usage)

    def billed(self, error: BaseException, usage: Usage, price_factor: float = 1.0) -> BaseException:
        """`error`, carrying what its trial was billed for (`extract.errors.billed` reads it)."""
        spent = self.draft({}, usage, price_factor)
        error.billed = Billed(spent.input_tokens, spent.output_tokens, spent.cost_usd if usage.input_tokens else None)
        return error

    def remember(self, cache_key: str, answer: dict[str, Any], usage: Usage) -> None:
        """Cache a trial's merged answer (the Batch API path fills the same cache); written with its record."""
        if self.workspace:
            self.workspace.cache_put(cache_key, **self._cache_entry(answer, usage))

    def _cache_entry(self, answer: dict[str, Any], usage: Usage) -> dict[str, Any]:
        return {"model": self.model, "prompt_version": self.prompt_version, "schema_version": SCHEMA_VERSION,
                "response": answer, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}  # fmt: skip

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
        return [system] if trial is None else [system, {"role": "user", "content": trial_message(trial, criteria)}]

    async def _ask_fitting(self, trial: Trial, criteria: list[Criterion], usage: Usage) -> list[dict[str, Any]]:
        """The answers for a part; halves of it, and so on, while the server finds it too long."""
        try:
            return [await self._ask(trial, criteria, usage)]
        except UpstreamError as error:
            if not (too_long(error.__cause__) and len(criteria) > 1):
                raise
        half = len(criteria) // 2
        return await self._ask_fitting(trial, criteria[:half], usage) + await self._ask_fitting(trial, criteria[half:], usage)

    def request(self, trial: Trial, criteria: list[Criterion]) -> dict[str, Any]:
        """The chat completion asked for a part of a trial: the stable prefix, then its criteria."""
        user = self.messages(trial, criteria)[-1]
        return self._prefix | {"model": self.model, "messages": [*self._prefix["messages"], user],
                               "max_tokens": self.settings.max_tokens, "temperature": 0}  # fmt: skip

    async def _ask(self, trial: Trial, criteria: list[Criterion], usage: Usage) -> dict[str, Any]:
        """One validated answer for some of a trial's criteria, re-asked while it fails validation.

        `usage` counts every attempt."""
        request = self.request(trial, criteria)
        for attempt in range(1, self.settings.reasks + 2):
            response = await self._send(request)
            usage.add(response)
            text = answer_text(response, self.settings.mode)
            try:
                return parse_answer(text)
            except json.JSONDecodeError as error:
                if self._cut_off(response) or truncated(text, error):
                    raise UpstreamError(CUT_OFF) from None
                problem = error
            except ValidationError as error:
                if self._cut_off(response):
                    raise UpstreamError(CUT_OFF) from None
                problem = error
            request = request | {"messages": [*request["messages"], {"role": "assistant", "content": text},
                                              {"role": "user", "content": reask_message(problem)}]}  # fmt: skip
        raise UpstreamError(f"no valid answer after {attempt} attempt(s): {_problem(problem)}")

    def _cut_off(self, response: Any) -> bool:
        """The answer stopped at a limit: servers may say `tool_calls` even when the context ran out."""
        usage = getattr(response, "usage", None)
        reason = response.choices[0].finish_reason if response.choices else None
        if reason == "length" or usage is None:
            return reason == "length"
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

    def input_tokens_estimate(self, trial: Trial, criteria: list[Criterion]) -> int:
        """The input tokens the trial's requests will cost, roughly: for a cost estimate before a run."""
        return sum(self._tokens_estimate(self.request(trial, part)) for part in self.parts(criteria))

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

    def _tokens_estimate(self, request: dict[str, Any]) -> int:
        """Roughly what the provider counts against tokens per minute: four characters a token."""
        added = request["messages"][len(self._prefix["messages"]) :]  # the trial's message, re-asks
        return (self._prefix_chars + sum(len(message.get("content") or "") for message in added)) // 4

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


def parse_answer(text: str) -> dict[str, Any]:
    """The answer's JSON, validated, as plain data. Lenient JSON: grammar-constrained output may hold
    raw newlines inside strings; lenient values like the contract ("2" for 2 is not worth a re-ask)."""
    return ExtractedEligibility.model_validate(json.loads(text, strict=False)).model_dump(mode="json")


def truncated(text: str, error: json.JSONDecodeError) -> bool:
    """JSON that stops mid-way, as an answer cut off at a limit does (not JSON that goes wrong)."""
    return error.msg.startswith("Unterminated string") or error.pos >= len(text.rstrip())


def reask_message(problem: BaseException) -> str:
    """What was wrong with the answer, for the model to correct (instructor's wording)."""
    what = f"Invalid JSON: {problem}" if isinstance(problem, json.JSONDecodeError) else problem
    return f"Validation Error found:\n{what}\nRecall the function correctly, fix the errors"


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
