"""Collecting one streamed round: what the model said, thought and called, as its last attempt left it.

Every consumer of `Backend.stream` (the agent loop, compaction's summary, `doctor`) goes through
`collect`, so a RoundRetry drops the failed attempt's output everywhere alike, and the stream is
always closed (an HTTP stream or a generation stops promptly when the consumer stops early).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from agent.backends.events import (
    BackendEvent,
    FormatError,
    ReasoningDelta,
    RoundRetry,
    StreamEnd,
    TextDelta,
    ToolCallEvent,
    Usage,
)


@dataclass
class Round:
    reasoning: str = ""
    text: str = ""
    # The calls in the order the model made them; a FormatError stands for a call that could not be
    # used (unknown tool, arguments cut off), to be answered with its message.
    calls: list[ToolCallEvent | FormatError] = field(default_factory=list)
    loose_errors: list[str] = field(default_factory=list)  # malformed output not tied to one call
    usage: Usage | None = None
    stop_reason: str = "stop"  # stop | tool_calls | length | error (StreamEnd)
    reasoning_details: list[dict[str, Any]] | None = None  # the endpoint's own reasoning items
    attempt: int = 1  # 2 and up: the backend retried the round from scratch

    @property
    def tool_calls(self) -> list[ToolCallEvent]:
        return [call for call in self.calls if isinstance(call, ToolCallEvent)]

    @property
    def errors(self) -> list[str]:
        """Every malformed-output message of the round, about one call or not."""
        return [c.message for c in self.calls if isinstance(c, FormatError)] + self.loose_errors


def collect(
    stream: Generator[BackendEvent, None, None], on_event: Callable[[BackendEvent], None] | None = None
) -> Round:
    """Reads the stream to its end; `on_event` sees every event as it arrives (to show deltas live)."""
    round_ = Round()
    try:
        for event in stream:
            if on_event is not None:
                on_event(event)
            if isinstance(event, RoundRetry):
                round_ = Round(attempt=event.attempt)
            elif isinstance(event, ReasoningDelta):
                round_.reasoning += event.text
            elif isinstance(event, TextDelta):
                round_.text += event.text
            elif isinstance(event, ToolCallEvent):
                round_.calls.append(event)
            elif isinstance(event, FormatError):
                if event.name:
                    round_.calls.append(event)
                else:
                    round_.loose_errors.append(event.message)
            elif isinstance(event, Usage):
                round_.usage = event
            elif isinstance(event, StreamEnd):
                round_.stop_reason = event.stop_reason
                round_.reasoning_details = event.reasoning_details
    finally:
        stream.close()
    return round_
