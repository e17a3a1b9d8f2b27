"""A minimal agent loop, as the real one drives a backend: stream a round, keep its reasoning and
calls in an assistant Message, answer the calls with tool Messages in order, stream again.

It is a stand-in for the lead's loop (tools answered from a table), not a mock of the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.backends.base import Backend, GenerationParams
from agent.backends.events import (
    FormatError,
    ReasoningDelta,
    RoundRetry,
    StreamEnd,
    TextDelta,
    ToolCallEvent,
    Usage,
)
from agent.backends.messages import Message, ToolCall

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Write a file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    },
]


def run_tool(name: str, arguments: dict[str, Any]) -> str:
    if name == "add":
        return str(arguments["a"] + arguments["b"])
    if name == "read_file":
        return f"contents of {arguments['path']}"
    return "ok"


@dataclass
class Round:
    reasoning: str = ""
    text: str = ""
    calls: list[ToolCallEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    usage: Usage | None = None
    stop_reason: str = ""
    reasoning_details: list[dict[str, Any]] | None = None


@dataclass
class Transcript:
    rounds: list[Round] = field(default_factory=list)
    retries: list[RoundRetry] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)  # what a terminal would show, retries undone
    messages: list[Message] = field(default_factory=list)


def run_exchange(
    backend: Backend,
    messages: list[Message],
    tools: list[dict[str, Any]] = TOOLS,
    max_rounds: int = 8,
    store_details: bool = False,
) -> Transcript:
    """Rounds until the model answers without calls. store_details: keep StreamEnd's reasoning
    items in each Message.reasoning_details (what the report proposes the real loop does)."""
    out = Transcript(messages=list(messages))
    for _ in range(max_rounds):
        current, shown_from = Round(), len(out.shown)
        for event in backend.stream(out.messages, tools, GenerationParams()):
            if isinstance(event, RoundRetry):
                out.retries.append(event)
                current = Round()
                del out.shown[shown_from:]  # drop what the failed attempt showed
            elif isinstance(event, ReasoningDelta):
                current.reasoning += event.text
                out.shown.append(event.text)
            elif isinstance(event, TextDelta):
                current.text += event.text
                out.shown.append(event.text)
            elif isinstance(event, ToolCallEvent):
                current.calls.append(event)
            elif isinstance(event, FormatError):
                current.errors.append(event.message)
            elif isinstance(event, Usage):
                current.usage = event
            elif isinstance(event, StreamEnd):
                current.stop_reason = event.stop_reason
                current.reasoning_details = getattr(event, "reasoning_details", None)
        out.rounds.append(current)
        assistant = Message.assistant(
            current.text,
            reasoning=current.reasoning or None,
            tool_calls=[ToolCall(c.name, c.arguments, c.id) for c in current.calls],
        )
        if store_details:
            assistant.reasoning_details = current.reasoning_details
        out.messages.append(assistant)
        if not current.calls:
            break
        for call in current.calls:
            out.messages.append(
                Message.tool(run_tool(call.name, call.arguments), tool_call_id=call.id, name=call.name)
            )
    return out
