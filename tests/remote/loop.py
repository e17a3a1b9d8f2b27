"""A minimal agent loop, as the real one drives a backend: collect a round, keep its reasoning and
calls in an assistant Message, answer the calls with tool Messages in order, stream again.

Tools are answered from a table, so the backend's wire behaviour is checked without the agent's
tools or sandbox; the backend itself is real.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.backends.base import Backend, GenerationParams
from agent.backends.events import BackendEvent, ReasoningDelta, RoundRetry, TextDelta
from agent.backends.messages import Message, ToolCall
from agent.backends.rounds import Round, collect

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
    items in each Message.reasoning_details, as the agent loop does."""
    out = Transcript(messages=list(messages))
    for _ in range(max_rounds):
        shown_from = len(out.shown)

        def show(event: BackendEvent, shown_from: int = shown_from) -> None:
            if isinstance(event, RoundRetry):
                out.retries.append(event)
                del out.shown[shown_from:]  # drop what the failed attempt showed
            elif isinstance(event, ReasoningDelta | TextDelta):
                out.shown.append(event.text)

        current = collect(backend.stream(out.messages, tools, GenerationParams()), show)
        out.rounds.append(current)
        assistant = Message.assistant(
            current.text,
            reasoning=current.reasoning or None,
            tool_calls=[ToolCall(c.name, c.arguments, c.id) for c in current.tool_calls],
        )
        if store_details:
            assistant.reasoning_details = current.reasoning_details
        out.messages.append(assistant)
        if not current.tool_calls:
            break
        for call in current.tool_calls:
            out.messages.append(
                Message.tool(run_tool(call.name, call.arguments), tool_call_id=call.id, name=call.name)
            )
    return out
