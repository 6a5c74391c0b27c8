"""HTML forms derived from the contract's models, and form data back into validated values. Pure: no I/O.

No field is listed by hand: a form is read from a gold item model (schemas.gold), so a field added
to the contract gets its form. Literals become choices, numbers number inputs (with their lower
bound), lists of literals check boxes, lists of words one comma-separated input, nested models
fieldsets, and lists of models (a biomarker rule's alternatives) repeated fieldsets.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from schemas.fields import ITEM_FIELD, SCALAR_FIELDS
from schemas.gold import GoldEligibility

WidgetKind = Literal["select", "boolean", "number", "text", "words", "choices", "group", "rows", "evidence"]
EVIDENCE = "evidence"


@dataclass(frozen=True)
class Widget:
    """One input of a form (or a group of them), named by its dotted path (`any_of.0.marker`)."""

    name: str
    label: str
    kind: WidgetKind
    required: bool = False
    choices: tuple[str, ...] = ()
    step: str = "any"
    minimum: float | None = None
    help: str = ""
    children: tuple[Widget, ...] = ()  # a group's inputs; for rows, one row's inputs (names relative)


def _optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None was allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), len(args) < len(typing.get_args(annotation))
    return annotation, False


def _unannotated(annotation: Any, metadata: list[Any]) -> Any:
    """Strip `Annotated[...]`, collecting its constraints into `metadata`."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        for item in extra:
            metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def widget(name: str, annotation: Any, info: FieldInfo | None = None) -> Widget:
    """The input for a value of `annotation` (a model field's, with its FieldInfo)."""
    metadata = list(info.metadata) if info else []
    annotation, optional = _optional(_unannotated(annotation, metadata))
    annotation = _unannotated(annotation, metadata)
    required = info.is_required() if info else not optional
    label = name.rsplit(".", 1)[-1].replace("_", " ")
    common = {"name": name, "label": label, "required": required and not optional, "help": (info.description or "") if info else ""}
    origin = typing.get_origin(annotation)
    if name.rsplit(".", 1)[-1] == EVIDENCE:
        return Widget(kind="evidence", **common)
    if origin is Literal:
        return Widget(kind="select", choices=tuple(map(str, typing.get_args(annotation))), **common)
    if annotation is bool:
        return Widget(kind="boolean", **common)
    if annotation in (int, float):
        minimum = next((m.ge for m in metadata if getattr(m, "ge", None) is not None), None)
        return Widget(kind="number", step="1" if annotation is int else "any", minimum=minimum, **common)
    if annotation is str:
        return Widget(kind="text", **common)
    if origin is list:
        (inner,) = typing.get_args(annotation)
        inner = _unannotated(inner, [])
        if typing.get_origin(inner) is Literal:
            return Widget(kind="choices", choices=tuple(map(str, typing.get_args(inner))), **common)
        if inner is str:
            return Widget(kind="words", **common)
        if _is_model(inner):
            return Widget(kind="rows", children=model_widgets(inner), **common)
    if _is_model(annotation):
        return Widget(kind="group", children=model_widgets(annotation, f"{name}."), **common)
    raise TypeError(f"no form input for {name}: {annotation!r}")


def model_widgets(model: type[BaseModel], prefix: str = "") -> tuple[Widget, ...]:
    return tuple(widget(prefix + name, info.annotation, info) for name, info in model.model_fields.items())


@dataclass(frozen=True)
class FieldForm:
    """How one eligibility field is edited: its inputs, and how a value of it is validated."""

    field: str
    widgets: tuple[Widget, ...]
    adapter: TypeAdapter
    scalar: bool  # one plain value (sex, ages), no item and no evidence
    many: bool  # a list of items; else at most one

    def parse(self, form: Any, rows: dict[str, int]) -> Any:
        """The value the submitted form data describes (`form` has `get` and `getlist`), unvalidated."""
        values = _parse_group(self.widgets, form, "", rows)
        return values.get("value") if self.scalar else values

    def validate(self, value: Any) -> tuple[Any, dict[str, str]]:
        """(the value as plain data, {}) or (None, {input name: message}) for the first problems."""
        try:
            return self.adapter.dump_python(self.adapter.validate_python(value), mode="json"), {}
        except ValidationError as error:
            problems: dict[str, str] = {}
            for problem in error.errors():
                # an input's name, or for a rule across inputs ("a value or a multiple of ULN") the item's
                where = ".".join(map(str, problem["loc"])) or ("value" if self.scalar else "item")
                problems.setdefault(where, problem["msg"].removeprefix("Value error, "))
            return None, problems


def field_form(name: str) -> FieldForm:
    """The form of one eligibility field, read from the gold model of the contract."""
    info = GoldEligibility.model_fields[name]
    if name in SCALAR_FIELDS:
        return FieldForm(name, (widget("value", info.annotation, info),), TypeAdapter(info.annotation), True, False)
    item = ITEM_FIELD[name]
    model = _optional(typing.get_args(info.annotation)[0] if item.many else info.annotation)[0]
    return FieldForm(name, model_widgets(model), TypeAdapter(model), False, item.many)


# Every field a reviewer can correct, in the contract's order.
EDITABLE_FIELDS = tuple(name for name in GoldEligibility.model_fields if name in SCALAR_FIELDS or name in ITEM_FIELD)
FORMS = {name: field_form(name) for name in EDITABLE_FIELDS}


# -- form data to values ---------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or value == [] or (isinstance(value, dict) and all(_blank(v) for v in value.values()))


def _parse_group(widgets: tuple[Widget, ...], form: Any, prefix: str, rows: dict[str, int]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for w in widgets:
        key = w.name.rsplit(".", 1)[-1]
        value = _parse(w, form, prefix + key, rows)
        if value is None and w.required:
            continue  # left out, so that validation says "Field required"
        values[key] = value
    return values


def _parse(w: Widget, form: Any, name: str, rows: dict[str, int]) -> Any:
    if w.kind == "choices":
        return [v for v in form.getlist(name) if v in w.choices]
    if w.kind == "words":
        return [word.strip() for word in (form.get(name) or "").split(",") if word.strip()]
    if w.kind == "rows":
        parsed = [_parse_group(w.children, form, f"{name}.{i}.", rows) for i in range(rows.get(name, 0))]
        return [row for row in parsed if not _blank(row)]
    if w.kind == "group":
        group = _parse_group(w.children, form, f"{name}.", rows)
        return None if _blank(group) and not w.required else group
    if w.kind == "evidence":
        quote = (form.get(f"{name}.quote") or "").strip()
        return {"quote": quote, "criterion_id": form.get(f"{name}.criterion_id") or None} if quote else None
    text = (form.get(name) or "").strip()
    if not text:
        return None
    if w.kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    return text  # numbers stay text: validation converts them, or says why it cannot


def row_counts(form: Any) -> dict[str, int]:
    """How many rows of each repeated fieldset the form had (`<name>.rows` inputs), capped."""
    counts = {}
    for key in form.keys():
        if key.endswith(".rows"):
            try:
                counts[key.removesuffix(".rows")] = min(max(int(form.get(key)), 0), 50)
            except ValueError:
                continue
    return counts


# -- values to form inputs -------------------------------------------------------------------------


def value_at(value: Any, name: str) -> Any:
    """The part of a plain-data value a dotted input name points at (None where there is none)."""
    for part in name.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def shown(value: Any) -> str:
    """An input's text for a value: numbers without a trailing .0, lists comma-separated."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(map(shown, value))
    return str(value)


@dataclass
class FormState:
    """What a form shows: the values (as entered or stored), the problems, the rows of each fieldset."""

    values: Any = None
    problems: dict[str, str] = field(default_factory=dict)

    def rows(self, name: str) -> int:
        """Rows of a repeated fieldset: one per entry (at least one) and a blank one for another."""
        entries = value_at(self.values, name)
        return max(len(entries) if isinstance(entries, list) else 0, 1) + 1
