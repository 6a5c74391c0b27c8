"""A field-by-field Markdown reference, written from a model's JSON Schema. Pure: no I/O.

The descriptions live on the Pydantic fields (one place); docs/record.md and docs/patient.md are this
function's output, committed so that the contract's documentation is in the repository and reads on
GitHub, and kept in sync by a test.
"""

from __future__ import annotations

from typing import Any

NOTE = "<!-- Written by `eligex schema --format markdown`{option}; edit the field descriptions in schemas/, not this file. -->"


def markdown_reference(schema: dict[str, Any], option: str = "") -> str:
    """The root model, then each model it refers to, in order of first mention: one table per model."""
    definitions = schema.get("$defs", {})
    order, queue = [], [("", schema)]
    seen = {""}
    while queue:
        name, model = queue.pop(0)
        order.append((name or schema.get("title", "Record"), model))
        for field in model.get("properties", {}).values():
            for ref in _refs(field):
                if ref not in seen:
                    seen.add(ref)
                    queue.append((ref, definitions[ref]))
    lines = [NOTE.format(option=option), "", f"# {schema.get('title', 'Record')}, field by field", ""]
    for name, model in order:
        lines += [f"## {name}", "", _one_line(model.get("description", "")), ""]
        if "enum" in model:
            lines += ["One of: " + ", ".join(f"`{value}`" for value in model["enum"]), ""]
            continue
        required = set(model.get("required", []))
        lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for field, spec in model.get("properties", {}).items():
            meaning = _one_line(spec.get("description", ""))
            examples = spec.get("examples")
            if examples:
                meaning += " (e.g. " + ", ".join(f"`{_cell(example)}`" for example in examples[:3]) + ")"
            lines.append(f"| `{field}` | {_type(spec)} | {'yes' if field in required else ''} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _refs(spec: Any) -> list[str]:
    """Names of the models a field refers to, however deep ($ref inside anyOf, items...)."""
    if isinstance(spec, dict):
        own = [spec["$ref"].rsplit("/", 1)[1]] if "$ref" in spec else []
        return own + [ref for value in spec.values() for ref in _refs(value)]
    if isinstance(spec, list):
        return [ref for value in spec for ref in _refs(value)]
    return []


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in spec:
        return " or ".join(_type(option) for option in spec["anyOf"])
    if "enum" in spec:
        return " \\| ".join(f"`{_cell(value)}`" for value in spec["enum"])
    if "const" in spec:
        return f"`{_cell(spec['const'])}`"
    kind = spec.get("type", "any")
    if kind == "array":
        return f"list of {_type(spec.get('items', {}))}"
    if kind == "string" and "pattern" in spec:
        return f"string `{_cell(spec['pattern'])}`"
    if kind == "string" and "format" in spec:
        return f"string ({spec['format']})"
    bounds = [f"{symbol} {spec[key]}" for key, symbol in (("minimum", ">="), ("maximum", "<=")) if key in spec]
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _one_line(text: str) -> str:
    return _cell(" ".join(text.split()))


def _cell(value: Any) -> str:
    """A value as table cell text: pipes escaped so that they do not split the cell."""
    return str(value).replace("|", "\\|")
