"""The forms reasoning takes on the wire, and how to send it back exactly as it came.

Message.reasoning holds the text; Message.reasoning_details holds the endpoint's own items,
verbatim, when they are known:
- MiniMax `reasoning_details`: `{"type": "reasoning.text", "id": ..., "text": ...}` items, merged
  from the streamed increments;
- Anthropic: `{"type": "thinking", "thinking": ..., "signature": ...}` and `redacted_thinking` blocks;
- inline `<think>`: one `{"type": "think_inline", "text": PREFIX}` item, PREFIX being the content's
  exact bytes up to and including `</think>` and the newlines after it.
Items are used only while they still agree with Message.reasoning (a loop that edits or compacts
the reasoning gets a fresh rendering of its text, never stale bytes or a mismatched signature).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.backends.m2.parse import parse_completion
from agent.backends.messages import Message

THINK_INLINE = "think_inline"


def merge_detail_increments(items: list[dict[str, Any]], increments: Any) -> str:
    """Fold streamed `reasoning_details` increments into `items`; return the new text.

    MiniMax streams increments: each delta carries the next piece of `text` for the item at
    `index` (other keys repeat). Items without an index continue the last item of their id.
    """
    added = []
    for inc in increments if isinstance(increments, list) else [increments]:
        if not isinstance(inc, dict):
            continue
        target = _find_item(items, inc)
        text = inc.get("text")
        if target is None:
            target = {k: v for k, v in inc.items() if k != "text"}
            target["text"] = ""
            items.append(target)
        else:
            for key, value in inc.items():
                if key != "text" and key not in target:
                    target[key] = value
        if isinstance(text, str):
            target["text"] += text
            added.append(text)
    return "".join(added)


def _find_item(items: list[dict[str, Any]], inc: dict[str, Any]) -> dict[str, Any] | None:
    if "index" in inc:
        return next((it for it in items if it.get("index") == inc["index"]), None)
    if items and items[-1].get("id") == inc.get("id"):
        return items[-1]
    return None


def details_reasoning(items: list[dict[str, Any]]) -> str:
    return "".join(it["text"] for it in items if isinstance(it.get("text"), str))


def thinking_reasoning(items: list[dict[str, Any]]) -> str:
    return "".join(it.get("thinking", "") for it in items if it.get("type") == "thinking")


def inline_prefix(raw_content: str) -> str | None:
    """The exact bytes of inline reasoning at the head of `raw_content`: up to `</think>` and the
    blank line after it (a third newline belongs to what follows, e.g. a tool-call block)."""
    end = raw_content.find("</think>")
    if end < 0:
        return None
    end += len("</think>")
    for _ in range(2):
        if raw_content.startswith("\r\n", end):
            end += 2
        elif raw_content.startswith("\n", end):
            end += 1
    return raw_content[:end]


def inline_reasoning(items: list[dict[str, Any]]) -> str:
    return parse_completion(items[0]["text"]).reasoning if len(items) == 1 else "\0"


def render_inline(reasoning: str) -> str:
    """The canonical M2 layout, for reasoning whose received bytes are not known."""
    return "<think>\n" + reasoning + "\n</think>\n\n"


@dataclass(frozen=True)
class Form:
    name: str
    accepts: Callable[[dict[str, Any]], bool]  # which items belong to this form
    reasoning_of: Callable[[list[dict[str, Any]]], str]


DETAILS = Form(
    "reasoning_details",
    lambda it: str(it.get("type", "reasoning.text")).startswith("reasoning."),
    details_reasoning,
)
THINKING = Form(
    "thinking", lambda it: it.get("type") in ("thinking", "redacted_thinking"), thinking_reasoning
)
INLINE = Form(
    "inline", lambda it: it.get("type") == THINK_INLINE and isinstance(it.get("text"), str), inline_reasoning
)


class ReasoningMemory:
    """Items of recent rounds by reasoning text, for loops that keep only Message.reasoning.

    The backend remembers what each round's reasoning looked like on the wire, so a loop that
    builds its assistant Message from the deltas alone still gets the exact bytes sent back.
    """

    def __init__(self, size: int = 512) -> None:
        self._items: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._size = size

    def remember(self, reasoning: str, items: list[dict[str, Any]] | None) -> None:
        if not reasoning or not items:
            return
        self._items[reasoning] = copy.deepcopy(items)
        self._items.move_to_end(reasoning)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def recall(self, reasoning: str | None) -> list[dict[str, Any]] | None:
        return self._items.get(reasoning) if reasoning else None


def items_for(message: Message, form: Form, memory: ReasoningMemory) -> list[dict[str, Any]] | None:
    """The message's verbatim items in `form`, if known and still true to its reasoning."""
    reasoning = message.reasoning or ""
    for items in (message.reasoning_details, memory.recall(message.reasoning)):
        if not items or not all(isinstance(it, dict) and form.accepts(it) for it in items):
            continue
        if form.reasoning_of(items) == reasoning:
            return items
    return None
