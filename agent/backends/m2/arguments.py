"""Typing raw `<parameter>` text against a tool's JSON schema.

M2 writes parameter values raw: strings as they are, everything else as JSON. The schema says
which is which. A value that does not convert stays a string, so that argument validation (not
the parser) tells the model what was wrong with it.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from agent.json_limits import value_problem

_JSON_TYPES = ("null", "boolean", "integer", "number", "object", "array", "string")


def schema_types(schema: Any) -> tuple[str, ...]:
    """The JSON types a (sub)schema admits, in a fixed order; () when it does not say."""
    if not isinstance(schema, dict):
        return ()
    found: set[str] = set()
    declared = schema.get("type")
    if isinstance(declared, str):
        found.add(declared)
    elif isinstance(declared, list):
        found.update(t for t in declared if isinstance(t, str))
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key) or []:
            found.update(schema_types(sub))
    if not found and isinstance(schema.get("enum"), list):
        found.update(_type_of(v) for v in schema["enum"])
    if not found and "properties" in schema:
        found.add("object")
    return tuple(t for t in _JSON_TYPES if t in found)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def parameter_types(function: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    """name -> admitted types for every declared parameter of an OpenAI function object."""
    parameters = (function or {}).get("parameters") or {}
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict):
        return {}
    return {name: schema_types(schema) for name, schema in properties.items()}


def coerce_value(raw: str, types: tuple[str, ...]) -> Any:
    """Convert one raw value; unknown or untyped parameters stay strings."""
    if not types or types == ("string",):
        return raw
    text = raw.strip()
    if text == "null" and ("null" in types or "string" not in types):
        return None
    for kind in types:
        converted = _CONVERTERS.get(kind, _no_conversion)(text)
        if converted is not _FAILED:
            return converted
    return raw


_FAILED = object()


def _no_conversion(text: str) -> Any:
    return _FAILED


def _to_bool(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    return _FAILED


def _to_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    number = _to_number(text)
    if isinstance(number, float) and number.is_integer():
        return int(number)
    return _FAILED


def _to_number(text: str) -> Any:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return _FAILED
    return value if isinstance(value, int | float) and not isinstance(value, bool) else _FAILED


def _structured(expected: type) -> Any:
    def convert(text: str) -> Any:
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            # Models sometimes write Python literals ({'a': True}); accept those, never eval.
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return _FAILED
        # Too deep to handle safely downstream, or a lone surrogate: leave it to validation as text.
        if not isinstance(value, expected) or value_problem(value):
            return _FAILED
        return value

    return convert


_CONVERTERS = {
    "boolean": _to_bool,
    "integer": _to_int,
    "number": _to_number,
    "object": _structured(dict),
    "array": _structured(list),
    "string": lambda text: _FAILED,  # handled by the caller: strings keep the raw, unstripped text
}


def strip_value_newlines(value: str) -> str:
    """One leading and one trailing newline around a value are layout, not part of it."""
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value
