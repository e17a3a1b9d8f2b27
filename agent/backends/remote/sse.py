"""Server-sent events: lines in, (event, data) out; and the JSON payloads inside them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class SseEvent:
    event: str  # "message" unless the server named it (Anthropic always does)
    data: str


def iter_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Events of an SSE stream, dispatched at each blank line (an unfinished event at EOF is dropped)."""
    event, data = "", []
    for line in lines:
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value


class MalformedChunk(ValueError):
    pass


def json_payloads(data: str) -> list[dict[str, Any]]:
    """The JSON object(s) of one event's data.

    Some servers forget the blank line between events, which joins several `data:` lines into one
    event; each line is then a JSON object of its own.
    """
    try:
        return [_object(json.loads(data))]
    except ValueError:
        pass
    lines = [line for line in data.split("\n") if line.strip()]
    if len(lines) > 1:
        try:
            return [_object(json.loads(line)) for line in lines]
        except ValueError:
            pass
    raise MalformedChunk(f"malformed stream chunk: {data[:200]!r}")


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
