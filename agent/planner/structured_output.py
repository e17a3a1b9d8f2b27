"""`--json-schema`: the final answer is a JSON document that validates against the user's schema."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from agent.json_limits import loads_limited

# A model often wraps JSON in a fenced block even when told not to: the fence is not the answer.
FENCE = re.compile(r"^```(?:json)?\s*\n(?P<body>.*)\n```\s*$", re.DOTALL)
MAX_PROBLEMS = 8


class SchemaError(ValueError):
    """The schema itself is not a valid JSON Schema (bad usage)."""


def load_schema(text_or_path: str, read_file: Any) -> dict[str, Any]:
    """The schema given inline (JSON text) or as a file name; SchemaError when unusable."""
    source = text_or_path.strip()
    if not source.startswith(("{", "[")):
        try:
            source = read_file(text_or_path)
        except OSError as exc:
            raise SchemaError(f"--json-schema: cannot read {text_or_path}: {exc.strerror}") from None
    try:
        schema = json.loads(source)
    except ValueError as exc:
        raise SchemaError(f"--json-schema: not JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise SchemaError("--json-schema: a schema is a JSON object")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaError(f"--json-schema: not a valid JSON Schema: {exc.message}") from None
    return schema


def schema_instructions(schema: dict[str, Any]) -> str:
    """What the system prompt tells the model about its final answer."""
    return (
        "# Final answer format\n"
        "When you are done, your final message (the one without tool calls) must be exactly one JSON "
        "document, with nothing before or after it, that validates against this JSON Schema:\n"
        f"{json.dumps(schema, ensure_ascii=False, indent=2)}\n"
    )


def check_answer(answer: str, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    """(the parsed value, []) when the answer validates; (None, problems) when it does not."""
    text = answer.strip()
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group("body")
    try:
        value = loads_limited(text)  # JSONDecodeError and UnusableJson (too deep) are ValueErrors
    except ValueError as exc:
        return None, [f"the answer is not JSON we can use ({exc})"]
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [
        f"at {'/'.join(str(p) for p in error.absolute_path) or 'the top'}: {error.message}"
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        return None, problems[:MAX_PROBLEMS]
    return value, []
