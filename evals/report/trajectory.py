"""A saved trajectory (the agent's event stream, docs/event-schema.json) as steps to show.

The streamed deltas are left out: each assistant_message repeats them whole. A tool call is shown
with its result (matched by id). Long texts are cut, so one runaway tool output cannot make the
report unreadable; the full text stays in the job's trajectory.jsonl.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_TEXT = 20_000
SKIPPED = {"reasoning_delta", "text_delta", "usage", "session_start"}


@dataclass
class Step:
    kind: str  # user | assistant | tool | note | final
    text: str = ""
    reasoning: str = ""
    tool: str = ""
    arguments: str = ""
    result: str | None = None
    ok: bool | None = None
    subagent: bool = False
    level: str = "info"
    facts: dict[str, Any] = field(default_factory=dict)


def clip(text: str, limit: int = MAX_TEXT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit} more characters in trajectory.jsonl]"


def _text(content: Any) -> str:
    """Message content: a string, or a list of parts of which the text ones are shown."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def read_steps(path: Path) -> list[Step]:
    steps: list[Step] = []
    calls: dict[str, Step] = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                steps.append(Step("note", f"line {number} is not JSON", level="warning"))
                continue
            if isinstance(event, dict):
                step = _step(event, calls)
                if step is not None:
                    step.subagent = bool(event.get("parent_id"))
                    steps.append(step)
    return steps


def _step(event: dict[str, Any], calls: dict[str, Step]) -> Step | None:
    kind = event.get("type")
    if kind in SKIPPED:
        return None
    if kind == "user_message":
        return Step("user", clip(_text(event.get("text"))))
    if kind == "assistant_message":
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        reasoning = message.get("reasoning_content")
        return Step(
            "assistant",
            clip(_text(message.get("content"))),
            reasoning=clip(reasoning) if isinstance(reasoning, str) else "",
        )
    if kind == "tool_call":
        arguments = json.dumps(event.get("arguments"), indent=2, ensure_ascii=False)
        step = Step("tool", tool=str(event.get("name", "")), arguments=clip(arguments))
        calls[str(event.get("id"))] = step
        return step
    if kind == "tool_result":
        call = calls.get(str(event.get("id")))
        output = clip(_text(event.get("output")))
        if call is not None and call.result is None:
            call.result, call.ok = output, bool(event.get("ok"))
            return None
        return Step("tool", tool=str(event.get("name", "")), result=output, ok=bool(event.get("ok")))
    if kind == "final_result":
        facts = {k: event.get(k) for k in ("status", "turns", "cost", "duration_ms", "verified")}
        return Step("final", clip(_text(event.get("result"))), facts=facts)
    if kind in ("status", "round_retry", "format_error", "compaction", "hook", "todo_update"):
        return Step("note", clip(_note(kind, event), 2_000), level=str(event.get("level") or "info"))
    return Step("note", f"{kind}: " + clip(json.dumps(event, ensure_ascii=False), 2_000))


def _note(kind: str, event: dict[str, Any]) -> str:
    if kind == "status":
        return str(event.get("message", ""))
    if kind == "round_retry":
        return f"retry {event.get('attempt')}: {event.get('reason')}"
    if kind == "format_error":
        return f"malformed tool call: {event.get('message')}\n{event.get('raw', '')}"
    if kind == "compaction":
        return (
            f"context {event.get('stage')}: {event.get('tokens_before')} → {event.get('tokens_after')} tokens"
        )
    if kind == "hook":
        return f"hook {event.get('event')} `{event.get('command')}`: {event.get('outcome')}"
    items = event.get("items") if isinstance(event.get("items"), list) else []
    return "todo: " + "; ".join(str(i.get("content", i)) if isinstance(i, dict) else str(i) for i in items)
