"""Everything a run does, as one stream of typed events.

The terminal UI, `--output-format stream-json`, the saved session (and so resume) and eval
trajectories all consume this stream. The JSON form of every event is documented in
docs/event-schema.json; keep the two in step.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.backends.events import FormatError, ReasoningDelta, RoundRetry, TextDelta, Usage
from agent.backends.messages import Message

__all__ = [
    "AssistantMessage",
    "ChildEvent",
    "Compaction",
    "FinalResult",
    "FormatError",
    "HookRun",
    "ReasoningDelta",
    "RoundRetry",
    "RunEvent",
    "SessionStart",
    "Status",
    "TextDelta",
    "TodoUpdate",
    "ToolCallStarted",
    "ToolResultEvent",
    "Usage",
    "UserMessage",
    "event_from_json",
    "event_to_json",
]


@dataclass
class SessionStart:
    session_id: str
    cwd: str
    backend: str
    model: str
    permission_mode: str
    confinement: str = "none"  # bwrap | landlock | none | docker: what confines the shell's commands
    started_at: float = field(default_factory=time.time)
    type: str = field(default="session_start", init=False)


@dataclass
class UserMessage:
    text: str
    type: str = field(default="user_message", init=False)


@dataclass
class AssistantMessage:
    """One complete model round, in OpenAI chat form (reasoning in `reasoning_content`)."""

    message: dict[str, Any]
    type: str = field(default="assistant_message", init=False)


@dataclass
class ToolCallStarted:
    id: str
    name: str
    arguments: dict[str, Any]
    type: str = field(default="tool_call", init=False)


@dataclass
class ToolResultEvent:
    id: str
    name: str
    ok: bool
    output: str
    data: dict[str, Any] = field(default_factory=dict)
    type: str = field(default="tool_result", init=False)


@dataclass
class TodoUpdate:
    items: list[dict[str, str]]
    type: str = field(default="todo_update", init=False)


@dataclass
class Compaction:
    """History was compacted; `messages` is the whole history from here on (OpenAI chat form)."""

    stage: str  # "trim" (old tool outputs shortened) or "summary" (older rounds summarised)
    tokens_before: int
    tokens_after: int
    messages: list[dict[str, Any]]
    type: str = field(default="compaction", init=False)


@dataclass
class Status:
    """Progress and warnings for people; never needed to rebuild the conversation."""

    message: str
    level: str = "info"  # info | warning | error
    type: str = field(default="status", init=False)


@dataclass
class HookRun:
    """A configured hook ran (agent/planner/hooks.py)."""

    event: str  # session_start | user_prompt_submit | pre_tool_use | post_tool_use | stop
    matcher: str
    command: str
    exit_code: int | None  # None: timed out or could not start
    outcome: str  # continue (exit 0) | block (exit 2) | warning (anything else)
    duration_ms: int
    tool_name: str | None = None
    type: str = field(default="hook", init=False)


@dataclass
class FinalResult:
    status: str  # done | error | usage_error | limit_reached | loop_detected | context_exhausted | blocked |
    # backend_unavailable | cancelled | unverified | invalid_output (docs/cli.md)
    result: Any  # the answer (the parsed JSON under --json-schema), or what ended the run
    diff: str
    turns: int
    usage: dict[str, int]
    cost: float | None
    session_id: str
    duration_ms: int
    verified: bool
    confinement: str = "none"  # bwrap | landlock | none | docker (none also when nothing ran)
    # Our own run of the project's tests at the end (agent/planner/verification.py); None: none ran.
    verification: dict[str, Any] | None = None
    type: str = field(default="final_result", init=False)


@dataclass
class ChildEvent:
    """An event of a subagent's run, in its parent's stream. In JSON it is the child's event with
    `parent_id` added: the id of the parent's task call that started the child. A child's
    session_start and final_result are never forwarded: the task call's tool_result carries its outcome."""

    parent_id: str
    event: Any
    type: str = field(default="child_event", init=False)


RunEvent = (
    SessionStart
    | UserMessage
    | ReasoningDelta
    | TextDelta
    | AssistantMessage
    | ToolCallStarted
    | ToolResultEvent
    | Usage
    | TodoUpdate
    | Compaction
    | Status
    | HookRun
    | RoundRetry
    | FormatError
    | FinalResult
    | ChildEvent
)

_BY_TYPE: dict[str, type] = {
    cls.__dataclass_fields__["type"].default: cls  # type: ignore[attr-defined]
    for cls in (
        SessionStart,
        UserMessage,
        ReasoningDelta,
        TextDelta,
        AssistantMessage,
        ToolCallStarted,
        ToolResultEvent,
        Usage,
        TodoUpdate,
        Compaction,
        Status,
        HookRun,
        RoundRetry,
        FormatError,
        FinalResult,
    )
}


def event_to_json(event: Any) -> dict[str, Any]:
    if isinstance(event, ChildEvent):
        return {**event_to_json(event.event), "parent_id": event.parent_id}
    return asdict(event)


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(data: Any, **options: Any) -> str:
    """`json.dumps(data, ensure_ascii=False)` that any UTF-8 writer accepts: a lone surrogate (a
    `\\ud800` in tool arguments, bytes decoded with surrogateescape) is written as its `\\u`
    escape, which reads back as the same string. In JSON text a surrogate can only stand inside a
    string, where the escape is valid."""
    text = json.dumps(data, ensure_ascii=False, **options)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def event_from_json(data: dict[str, Any]) -> Any:
    if "parent_id" in data:
        inner = {k: v for k, v in data.items() if k != "parent_id"}
        return ChildEvent(data["parent_id"], event_from_json(inner))
    cls = _BY_TYPE.get(data.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    return cls(**{k: v for k, v in data.items() if k != "type"})


def messages_from_events(events: list[Any]) -> list[Message]:
    """Rebuild the conversation (without the system prompt) from a session's events; subagents'
    events (ChildEvent) are not part of it."""
    messages: list[Message] = []
    for event in events:
        if isinstance(event, ChildEvent):
            continue
        if isinstance(event, Compaction):
            messages = [Message.from_openai(m) for m in event.messages]
        elif isinstance(event, UserMessage):
            messages.append(Message.user(event.text))
        elif isinstance(event, AssistantMessage):
            messages.append(Message.from_openai(event.message))
        elif isinstance(event, ToolResultEvent):
            messages.append(Message.tool(event.output, tool_call_id=event.id, name=event.name))
    return messages
