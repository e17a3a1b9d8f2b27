"""Typed events a backend stream (and the completion parser) emits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReasoningDelta:
    text: str
    type: str = field(default="reasoning_delta", init=False)


@dataclass
class TextDelta:
    text: str
    type: str = field(default="text_delta", init=False)


@dataclass
class ToolCallEvent:
    """A complete tool call: arguments already typed against the tool's schema."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None
    # Not "tool_call": that tag belongs to the run event that says a call started (agent/events.py).
    type: str = field(default="parsed_tool_call", init=False)


@dataclass
class FormatError:
    """Malformed model output, worded so that the model can act on it when fed back."""

    message: str
    raw: str = ""
    # Set when the error is about one call the model attempted (unknown tool, call cut off): the
    # agent loop then answers that call with the error, keeping the turn's reasoning in place.
    name: str | None = None
    arguments: dict[str, Any] | None = None
    type: str = field(default="format_error", init=False)


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None  # None when no price is known for the model
    type: str = field(default="usage", init=False)


@dataclass
class RoundRetry:
    """The backend is retrying this round from scratch: drop every event of the round so far."""

    reason: str
    attempt: int
    type: str = field(default="round_retry", init=False)


@dataclass
class StreamEnd:
    stop_reason: str = "stop"  # stop | tool_calls | length | error
    # The endpoint's own reasoning items for this round (Message.reasoning_details), when it has any.
    reasoning_details: list[dict[str, Any]] | None = None
    type: str = field(default="end", init=False)


BackendEvent = ReasoningDelta | TextDelta | ToolCallEvent | FormatError | Usage | RoundRetry | StreamEnd
