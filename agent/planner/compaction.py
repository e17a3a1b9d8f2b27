"""Keeping the prompt inside the context window.

Before a round, if the rendered prompt would pass the budget:
1. trim large tool outputs of earlier turns (head and tail kept);
2. if that is not enough, have the model summarise the earlier turns and replace them with the
   summary.
Never touched: the system prompt (with the project instructions), the latest user message, and
the current turn's chain (reasoning, calls and results since that message), because M2 needs its
own reasoning of the current turn to keep working. If the current turn alone does not fit, the run
stops with ContextExhausted rather than cut into it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.backends.base import Backend, ContextWindowExceeded, GenerationParams
from agent.backends.events import BackendEvent, Usage
from agent.backends.m2.render import render_prompt
from agent.backends.messages import Message
from agent.backends.rounds import collect
from agent.backends.token_estimate import CHARS_PER_TOKEN

TRIM_ABOVE_CHARS = 2_000
TRIM_HEAD_CHARS = 800
TRIM_TAIL_CHARS = 400
SUMMARY_PREFIX = (
    "[Summary of the earlier conversation, written before older messages were dropped to fit the context]\n"
)
SUMMARY_SYSTEM = (
    "You write compact, faithful summaries of coding-agent sessions so that the work can continue "
    "without the full history."
)
SUMMARY_REQUEST = (
    "Summarise the conversation below for your own later use. Keep: what the user asked for, decisions "
    "made, files read and changed (with paths), commands run and their outcomes, open problems and "
    "next steps. Be concise; do not invent anything.\n\n<conversation>\n{transcript}\n</conversation>"
)


class ContextExhausted(ContextWindowExceeded):
    """The current turn alone does not fit the context window."""


@dataclass
class ContextBudget:
    window: int
    reserve: int = 8_192  # room for the model's answer (at most a quarter of the window)
    fill: float = 0.9  # compact when the prompt passes this share of (window - reserve)
    # The backend's current idea of its window, when the user did not fix one: a remote server can
    # tell its real window only once asked (/tokenize), after the session started.
    live_window: Callable[[], int] | None = None

    @property
    def effective_window(self) -> int:
        return min(self.window, self.live_window()) if self.live_window else self.window

    @property
    def answer_room(self) -> int:
        return min(self.reserve, self.effective_window // 4)

    @property
    def limit(self) -> int:
        return int((self.effective_window - self.answer_room) * self.fill)


def latest_user_index(messages: list[Message]) -> int:
    return max((i for i, m in enumerate(messages) if m.role == "user"), default=0)


class Compactor:
    def __init__(self, backend: Backend, budget: ContextBudget, on_usage: Callable[[Usage], None]) -> None:
        self.backend = backend
        self.budget = budget
        self.on_usage = on_usage

    def prompt_tokens(self, system: Message, messages: list[Message], tools: list[dict[str, Any]]) -> int:
        return self.backend.count_tokens(render_prompt([system, *messages], tools))

    def fit(
        self, system: Message, messages: list[Message], tools: list[dict[str, Any]], force: bool = False
    ) -> tuple[str, int, int, list[Message]] | None:
        """None when the prompt fits (or, forced, when there is nothing older to summarise);
        else (stage, tokens_before, tokens_after, new_messages)."""
        before = self.prompt_tokens(system, messages, tools)
        if before <= self.budget.limit and not force:
            return None
        turn = latest_user_index(messages)
        trimmed = [_trim(m) if i < turn and m.role == "tool" else m for i, m in enumerate(messages)]
        after = self.prompt_tokens(system, trimmed, tools)
        if after <= self.budget.limit and not force:
            return "trim", before, after, trimmed
        if turn == 0 and force:
            return None
        if turn == 0:
            raise ContextExhausted(
                f"the current turn alone needs about {after} tokens, over the budget of {self.budget.limit}"
            )
        summary = self._summarise(trimmed[:turn])
        compacted = [Message.user(SUMMARY_PREFIX + summary), *trimmed[turn:]]
        after = self.prompt_tokens(system, compacted, tools)
        if after > self.budget.limit:
            raise ContextExhausted(
                f"even after summarising, the prompt needs about {after} tokens, over the budget of "
                f"{self.budget.limit}"
            )
        return "summary", before, after, compacted

    def _count_usage(self, event: BackendEvent) -> None:
        if isinstance(event, Usage):
            self.on_usage(event)

    def _summarise(self, older: list[Message]) -> str:
        overhead = self.backend.count_tokens(SUMMARY_SYSTEM + SUMMARY_REQUEST) + 64
        room_chars = int((self.budget.limit - overhead) * CHARS_PER_TOKEN * 0.9)
        transcript = _fit_chars(transcript_of(older), max(room_chars, 1_000))
        request = [
            Message.system(SUMMARY_SYSTEM),
            Message.user(SUMMARY_REQUEST.format(transcript=transcript)),
        ]
        stream = self.backend.stream(request, [], GenerationParams(max_tokens=self.budget.answer_room))
        summary = collect(stream, self._count_usage).text.strip()
        if summary:
            return summary
        asks = [m.text() for m in older if m.role == "user"]
        return "(no summary was produced) Earlier requests:\n" + "\n".join(f"- {a[:500]}" for a in asks)


def transcript_of(messages: list[Message]) -> str:
    lines = []
    for message in messages:
        if message.role == "assistant":
            text = message.text()
            calls = "; ".join(
                f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)[:300]})" for c in message.tool_calls
            )
            lines.append(f"assistant: {text}" + (f"\n  calls: {calls}" if calls else ""))
        else:
            lines.append(f"{message.role}: {message.text()}")
    return "\n".join(lines)


def _trim(message: Message) -> Message:
    text = message.text()
    if len(text) <= TRIM_ABOVE_CHARS:
        return message
    dropped = len(text) - TRIM_HEAD_CHARS - TRIM_TAIL_CHARS
    short = (
        text[:TRIM_HEAD_CHARS]
        + f"\n[... {dropped} characters of this old tool output were trimmed to save context ...]\n"
        + text[-TRIM_TAIL_CHARS:]
    )
    return Message.tool(short, tool_call_id=message.tool_call_id, name=message.name)


def _fit_chars(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return text[:head] + f"\n[... {len(text) - limit} characters omitted ...]\n" + text[-tail:]
