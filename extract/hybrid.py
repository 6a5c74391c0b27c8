"""The `hybrid` backend: the rules draft, confirmed, corrected or completed by the model.

The rules read every criterion first. A criterion is sent to the model when the rules' quotes cover
less than `COVERAGE` of its text (what is left could hold another fact) and the check below could take
a model item there that says something the rules' items of it do not (`extract.support.reach`: facts
the rules read in it or in one of its sentences, clauses or spans ending at a name, each alone, and
vocabulary names it holds where the rules' tests let them speak): a model item anywhere else would be
rejected or change nothing, so asking for it only costs tokens. The request (the openai
backend's one request path: its prompt, retries, re-asks, usage and cache) carries the rules' items
for those criteria as a draft, and asks only for the fields the check could take there: the system
prompt's sections and the tool schema of the others are not sent (`extract.llm.Prompt.scoped`). A
trial with no such criterion costs no request at all, and the trials in flight share requests: up to
`PACK_TRIALS` of them in one, each answered under its NCT id (extract/packing.py, `OpenAIBackend.extract_pack`).

The model's answer for a sent criterion is merged item by item (`combine`): an item is taken only when
its quote supports it (extract/support.py: the rules' parsers read its facts in the quote, or its
vocabulary names are there with the polarity the ConText layer reads); a change whose quote does not
support it is rejected with one warning line and the rules' items are kept. What the model adds is
grounded by `extract.backend.assemble` like any LLM item. A trial whose answer fails (cut off, never
valid, the server erring after retries) keeps the rules' items with one warning, and the answer
cache does not keep it: the hybrid is never below the rules. Pure but for the model's requests.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from extract.backend import Draft
from extract.errors import UpstreamError, UpstreamUnreachable, billed, one_line, positive_env, redact
from extract.grounding import locate
from extract.hashing import canonical_sha256
from extract.llm import ANSWER_FIELDS, NO_ITEMS, OpenAIBackend
from extract.packing import Packer
from extract.rules import RulesBackend, extract_eligibility
from extract.rules import _merge as merge_item  # the rules' own merge (not renamed: an edit there is a new rules version)
from extract.support import facts, identity, reach, restates, unsupported
from schemas import Criterion, Trial
from schemas.fields import LIST_FIELDS, RULE_KEY, SINGLE_FIELDS, STRICTER

COVERAGE = 0.5  # share of a criterion's characters the rules' quotes must cover for it not to be sent
AGE_FIELDS = tuple(STRICTER)  # min_age_years, max_age_years: evidence in `origins`
DRAFT_HEADING = ("Draft from deterministic rules for the criteria above (confirm, correct or complete it; "
                 "answer every item these criteria state, quoting them):")  # fmt: skip
# The draft's wording, the merge and what is sent (extract/support.py): a change redoes every hybrid record.
HYBRID_VERSION = "hybrid-v5"
PACK_TRIALS = 4  # trials asked in one request at most (ELIGEX_PACK_TRIALS; 1: each trial alone)
PACK_WAIT_SECONDS = 0.5  # how long a trial's ask waits for others to share its request
PackAsk = tuple[Trial, list[Criterion], tuple[str, ...]]  # a trial, the criteria sent, the fields asked


def items_of(eligibility: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every (field, item) of a draft, ages as {"value", "evidence"} items."""
    found = [(name, item) for name in LIST_FIELDS for item in eligibility.get(name) or []]
    found += [(name, eligibility[name]) for name in SINGLE_FIELDS if eligibility.get(name)]
    for name in AGE_FIELDS:
        origin = (eligibility.get("origins") or {}).get(name) or {}
        if eligibility.get(name) is not None and origin.get("evidence"):
            found.append((name, {"value": eligibility[name], "evidence": origin["evidence"]}))
    return found


def criterion_of(item: dict[str, Any]) -> str | None:
    return (item.get("evidence") or {}).get("criterion_id")


def covered(criterion: Criterion, said: list[tuple[str, dict[str, Any]]]) -> bool:
    """The rules' items quoting the criterion (`said`) cover `COVERAGE` of its text."""
    quoted = [False] * len(criterion.text)
    for _, item in said:
        span = locate(criterion.text, item["evidence"].get("quote") or "", [])
        if span:
            quoted[span[0] : span[1]] = [True] * (span[1] - span[0])
    return bool(said) and sum(quoted) >= COVERAGE * len(criterion.text.strip())


def answer_field(name: str) -> str:
    """A contract field as the model answers it: ages in `age_limits`."""
    return "age_limits" if name in AGE_FIELDS else name


def draft_note(criteria: list[Criterion]) -> str:
    """The rules' items for these criteria, as the model reads them (recomputed: the rules are pure)."""
    items = [{"field": name, **{key: value for key, value in item.items() if key != RULE_KEY}}
             for name, item in items_of(extract_eligibility(criteria))]  # fmt: skip
    if not items:
        return f"{DRAFT_HEADING}\n(nothing)"
    return DRAFT_HEADING + "\n" + "\n".join(json.dumps(item, ensure_ascii=False) for item in items)


def combine(rules: dict[str, Any], model: dict[str, Any], sent: list[Criterion]) -> tuple[dict[str, Any], list[str]]:
    """The rules draft with the model's answer for the `sent` criteria merged in (module docstring).

    A model item is taken only when its quote supports it (`extract.support.unsupported`): as an
    addition, or as a correction replacing the rules' items of the same identity in its criterion
    (same analyte, marker, therapy, scale; the field itself for a single one) when its quote does
    not also read the rules' item. One that says only what the rules said is a confirmation and
    changes nothing. Every other one is rejected with one warning line, and the rules' items stay.

    The model cannot delete a rules item by leaving it out. The rules' items are read by the rules'
    parsers from the text, so each is as supported as a model item can be; an omission carries no
    quote to check, and a small model omits most things (Gemma 3 270M mostly answers `{}`). Letting
    silence delete would make the hybrid's recall the model's, the opposite of "never below rules".
    """
    by_id = {c.id: c for c in sent}
    kept = items_of(rules)
    said: dict[str, set[tuple]] = {}
    for name, item in kept:
        said.setdefault(name, set()).update(facts(name, item))
    warnings: list[str] = []
    accepted: list[tuple[str, dict[str, Any]]] = []
    replaced: set[int] = set()
    for name, item in items_of(model):
        cid = criterion_of(item)
        criterion = by_id.get(cid)
        why = f"it names {cid}, a criterion it was not sent" if criterion is None else unsupported(name, item, criterion)
        rivals: list[dict[str, Any]] = []
        if why is None:
            if facts(name, item) <= said.get(name, set()) or any(
                n == name and criterion_of(rule) == cid and restates(name, item, rule) for n, rule in kept
            ):  # fmt: skip
                continue  # a confirmation: the rules' item stays
            quote = item["evidence"]["quote"]
            rivals = [r for n, r in kept if n == name and criterion_of(r) == cid and identity(name, r) == identity(name, item)]
            if any(unsupported(name, rival, criterion, quote=quote) is None for rival in rivals):
                why = "its quote reads the rules' item as well"
        if why is not None:
            warnings.append(f"hybrid: rejected the model's {name} for {cid}: {why}; kept the rules' reading")
            continue
        accepted.append((name, item))
        replaced.update(id(rival) for rival in rivals)
    eligibility: dict[str, Any] = {name: [] for name in LIST_FIELDS}
    eligibility.update({name: None for name in SINGLE_FIELDS}, origins={})
    for name, item in [(n, i) for n, i in kept if id(i) not in replaced] + accepted:
        merge_item(eligibility, name, item)  # as the rules merge their own: list facts once, stricter ages
    return eligibility, warnings


class HybridBackend:
    """A RulesBackend and an OpenAIBackend composed (module docstring)."""

    name = "hybrid"

    def __init__(self, rules: RulesBackend, llm: OpenAIBackend, pack_trials: int = PACK_TRIALS,
                 pack_wait: float | None = None) -> None:  # fmt: skip
        self.rules, self.llm = rules, llm
        llm.note = draft_note
        self._asking: dict[tuple[str, ...], OpenAIBackend] = {}
        self._last_plan: tuple[tuple, tuple[list[Criterion], OpenAIBackend]] | None = None
        # The trials in flight share requests (extract/packing.py): an ask is a trial, the criteria sent
        # and the fields asked; a pack asks every field one of its trials is asked for.
        self.pack_trials = pack_trials
        self._packer = self.packer(self._ask_pack, PACK_WAIT_SECONDS if pack_wait is None else pack_wait)

    def packer(self, send: Callable[[list[PackAsk]], Awaitable[list[Any]]], wait: float) -> Packer[PackAsk]:
        """A packer of this backend's asks: at most `pack_trials` of them, and the part's characters of
        criteria sent."""
        return Packer(send, size=self.pack_trials, chars=self.llm.part_chars, wait=wait,
                      weight=lambda ask: sum(len(c.text) for c in ask[1]))  # fmt: skip

    @classmethod
    def from_environment(cls, rules: RulesBackend, llm: OpenAIBackend) -> HybridBackend:
        return cls(rules, llm, pack_trials=int(positive_env("ELIGEX_PACK_TRIALS", PACK_TRIALS)))

    def asking(self, fields: tuple[str, ...]) -> OpenAIBackend:
        """The model's backend scoped to `fields` (their conventions and schema only), one per set."""
        if fields not in self._asking:
            self._asking[fields] = self.llm.scoped(fields)
        return self._asking[fields]

    @property
    def model(self) -> str | None:
        return self.llm.model

    @property
    def client(self) -> Any:
        return self.llm.client

    @property
    def prompt_version(self) -> str:
        """Both versions: a record redoes when the rules or the model's prompt change."""
        return f"{HYBRID_VERSION}+{self.rules.prompt_version}+{self.llm.prompt_version}"

    @property
    def answer_version(self) -> str:
        return canonical_sha256({"hybrid": HYBRID_VERSION, "coverage": COVERAGE, "rules": self.rules.prompt_version,
                                 "llm": self.llm.answer_version, "pack_trials": self.pack_trials})  # fmt: skip

    @property
    def prices(self) -> dict[str, dict[str, float]]:
        return self.llm.prices

    def plan(self, eligibility: dict[str, Any], criteria: list[Criterion]) -> tuple[list[Criterion], OpenAIBackend]:
        """The criteria to send, and the backend asking for what the model may say of them: a criterion
        the rules' quotes do not cover, where the check could take a model item saying something the
        rules' items of it do not (`extract.support.reach`), asking for the fields it could take there
        and those of the rules' items quoting it."""
        said: dict[str | None, list[tuple[str, dict[str, Any]]]] = {}
        for name, item in items_of(eligibility):
            said.setdefault(criterion_of(item), []).append((name, item))
        reached = {c.id: reach(c, said.get(c.id, [])) for c in criteria if not covered(c, said.get(c.id, []))}
        sent = [c for c in criteria if reached.get(c.id)]
        fields = {answer_field(name) for c in sent for name in [*reached[c.id], *(n for n, _ in said.get(c.id, []))]}
        return sent, self.asking(tuple(name for name in ANSWER_FIELDS if name in fields))

    def _rules_plan(self, criteria: list[Criterion]) -> tuple[list[Criterion], OpenAIBackend]:
        """`plan` from the rules' reading, for the estimate before a run, which asks a trial's parts and
        then its tokens: the last trial's plan is kept for the second (a plan costs some rules readings
        of each criterion's spans)."""
        key = tuple((c.id, c.kind, c.text) for c in criteria)
        if self._last_plan is None or self._last_plan[0] != key:
            self._last_plan = (key, self.plan(extract_eligibility(criteria), criteria))
        return self._last_plan[1]

    def parts(self, criteria: list[Criterion]) -> list[list[Criterion]]:
        """The requests a trial costs alone (for the estimate before a run, which counts `pack_trials` of
        them a request): none when the rules account for it."""
        sent, llm = self._rules_plan(criteria)
        return llm.parts(sent) if sent else []

    def input_tokens_estimate(self, trial: Trial, criteria: list[Criterion]) -> int:
        """Its criteria, draft and examples, and its share of a pack's prompt and tool."""
        sent, llm = self._rules_plan(criteria)
        return llm.input_tokens_estimate(trial, sent, prefix_share=1 / self.pack_trials) if sent else 0

    async def extract(self, trial: Trial, criteria: list[Criterion]) -> Draft:
        rules = (await self.rules.extract(trial, criteria)).eligibility
        sent, llm = self.plan(rules, criteria)
        if not sent:
            return Draft(eligibility=rules, cost_usd=0.0)
        try:
            answer = await self._packer.ask((trial, sent, llm.prompt.fields))
        except UpstreamUnreachable:
            raise  # every trial would fail alike: the run stops
        except UpstreamError as error:  # this trial's answer failed: the rules' reading stands, not cached
            spent = billed(error)
            warning = one_line(redact(f"hybrid: the model gave no answer ({error}); kept the rules' items only "
                                      "(a rerun asks again)"), 500)  # fmt: skip
            return Draft(eligibility=rules, input_tokens=spent.input_tokens, output_tokens=spent.output_tokens,
                         cost_usd=spent.cost_usd, warnings=[warning], complete=False)  # fmt: skip
        return merged(rules, answer, sent)

    async def _ask_pack(self, asks: list[PackAsk]) -> list[Draft | BaseException]:
        """The trials of a pack asked in one request."""
        return await self.pack_asking(asks).extract_pack([(trial, sent) for trial, sent, _ in asks])

    def pack_asking(self, asks: list[PackAsk]) -> OpenAIBackend:
        """The backend asking a pack: for every field one of its trials is asked for."""
        return self.asking(tuple(name for name in ANSWER_FIELDS if any(name in asked for *_, asked in asks)))


def merged(rules: dict[str, Any], answer: Draft, sent: list[Criterion]) -> Draft:
    """The model's draft for the `sent` criteria merged into the rules' (`combine`), its usage kept."""
    eligibility, warnings = combine(rules, answer.eligibility, sent)
    return Draft(eligibility=eligibility, input_tokens=answer.input_tokens, output_tokens=answer.output_tokens,
                 cost_usd=answer.cost_usd, warnings=[w for w in answer.warnings if w != NO_ITEMS] + warnings)  # fmt: skip
