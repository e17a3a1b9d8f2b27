"""Limits on JSON-like values from outside (the model, `--args`): nesting depth and lone surrogates.

Python's json module accepts `"\\ud800"` (a lone surrogate: not text, cannot be encoded as UTF-8)
and nesting until the interpreter's recursion limit (a RecursionError at about 1,000 levels; a
value just under it still breaks every later json.dumps, deepcopy or schema check that recurses).
Tool arguments never need more than a few levels, so anything deeper than MAX_NESTING is refused
where it enters, and lone surrogates are refused in arguments and replaced in what goes back out.
All checks here are iterative, so they cannot hit the recursion limit themselves.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_NESTING = 64  # levels of lists and dicts; the tools' schemas use three
_SURROGATE = re.compile("[\ud800-\udfff]")


class UnusableJson(ValueError):
    """JSON that parses but cannot be used: nested too deeply or holding a lone surrogate."""


def loads_limited(text: str) -> Any:
    """json.loads that raises json.JSONDecodeError for bad syntax and UnusableJson for nesting
    deeper than MAX_NESTING or a lone surrogate anywhere in the value."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnusableJson(f"it nests deeper than {MAX_NESTING} levels") from None
    problem = value_problem(value)
    if problem:
        raise UnusableJson(problem)
    return value


def value_problem(value: Any) -> str | None:
    """Why a decoded value cannot be used (too deep, a lone surrogate), or None."""
    pending: list[tuple[Any, int, str]] = [(value, 1, "")]
    while pending:
        item, depth, where = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_NESTING:
                return f"it nests deeper than {MAX_NESTING} levels"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and _SURROGATE.search(key):
                    return f"a key{where} holds a lone surrogate ({_first_surrogate(key)}), which is not text"
                pending.append(
                    (child, depth + 1, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
                )
        elif isinstance(item, str) and _SURROGATE.search(item):
            place = f" at {where.lstrip('.')}" if where else ""
            return f"the value{place} holds a lone surrogate ({_first_surrogate(item)}), which is not text"
    return None


def _first_surrogate(text: str) -> str:
    found = _SURROGATE.search(text)
    return f"\\u{ord(found.group()):04x}" if found else ""


def without_lone_surrogates(value: Any) -> Any:
    """`value` with every lone surrogate in its strings replaced by U+FFFD (a copy where needed).

    For values going out (tool results): undecodable file bytes kept as surrogate escapes, file
    names that are not UTF-8. Nesting is whatever the caller built; results are shallow."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(without_lone_surrogates(v) for v in value)
    return value
