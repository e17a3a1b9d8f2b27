"""One request's generation, as the APIs consume it: engine tokens -> text -> parsed M2 events.

A `Run` reads its RequestStream, decodes the tokens, cuts at the first stop string, and (for chat)
feeds the text to our M2 CompletionParser, so reasoning, text and tool calls come out typed. `step`
blocks (the engine runs in its own thread), so the async routes call it through a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from agent.backends.events import FormatError, ReasoningDelta, StreamEnd, TextDelta, ToolCallEvent
from agent.backends.m2.parse import CompletionParser
from agent.serve.host import RequestStream

Piece = ReasoningDelta | TextDelta | ToolCallEvent
WAIT_SECONDS = 0.5  # how long one step waits for tokens before it returns, so a cancelled client is noticed


@dataclass
class Outcome:
    finish_reason: str = "stop"  # stop | length | tool_calls | cancelled | error
    stop_sequence: str | None = None  # the stop string that ended the text
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    token_ids: list[int] = field(default_factory=list)
    error: BaseException | None = None
    format_errors: list[str] = field(default_factory=list)


class Run:
    """`parse`: chat (M2 parser, reasoning first) or raw text (completions)."""

    def __init__(
        self,
        stream: RequestStream,
        tokenizer: Any,
        *,
        stop: list[str] | None = None,
        parse: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> None:
        self.stream = stream
        self.tokenizer = tokenizer
        self.decoder = tokenizer.stream()
        self.stops = [s for s in (stop or []) if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1  # text that may start a stop string
        self.parser = CompletionParser(tools or []) if parse else None
        self.tool_names = {t["function"]["name"] for t in tools or []}
        self.thinking = parse  # the M2 generation prompt opens <think>
        self.pending = ""  # decoded text not yet released (it may be the start of a stop string)
        self.outcome = Outcome(prompt_tokens=stream.prompt_tokens)
        self.done = False
        self._stopped = False

    # ------------------------------------------------------------------ driving
    def step(self, timeout: float | None = WAIT_SECONDS) -> list[Piece]:
        """The pieces that became certain; [] when nothing came in time. Sets `done` at the end."""
        if self.done:
            return []
        try:
            chunk = self.stream.next_chunk(timeout)
        except TimeoutError:  # nothing yet (an engine may also answer [] for that)
            return []
        if chunk is None:
            return self._finish()
        out: list[Piece] = []
        for tid in chunk:
            if self._stopped:
                break
            self.outcome.token_ids.append(tid)
            self.outcome.completion_tokens += 1
            if self.thinking:
                self.outcome.reasoning_tokens += 1
                self.thinking = tid != self.tokenizer.think_end_id
            self._take(self.decoder.push(tid), out)
        if self._stopped:
            self.stream.cancel()
            out += self._finish()
        return out

    def drain(self, seconds: float = WAIT_SECONDS) -> list[Piece]:
        """Every piece within `seconds`, or to the end, for a whole reply: the reader waits for the end
        and takes the tokens at once, not woken for each one (those wake-ups take the GIL from the
        engine's thread)."""
        self.stream.wait_ended(seconds)
        out = self.step(0)  # every token so far, in one chunk
        if self.stream.ended and not self.done:
            out += self.step(0)  # the end
        return out

    async def pieces(self):
        """Async iterator of lists of pieces; cancels the request if the consumer goes away."""
        try:
            while not self.done:
                got = await anyio.to_thread.run_sync(self.step, abandon_on_cancel=True)
                if got:
                    yield got
        finally:
            if not self.done:
                self.stream.cancel()

    async def gather(self, disconnected: Callable[[], Awaitable[bool]]) -> list[Piece]:
        """All the pieces (a whole reply); stops and cancels the request if the client goes away."""
        out: list[Piece] = []
        checked = time.monotonic()
        try:
            while not self.done:
                out += await anyio.to_thread.run_sync(self.drain, abandon_on_cancel=True)
                if time.monotonic() - checked >= WAIT_SECONDS:
                    checked = time.monotonic()
                    if await disconnected():
                        break
        finally:
            if not self.done:
                self.stream.cancel()
        return out

    def cancel(self) -> None:
        self.stream.cancel()

    # ------------------------------------------------------------------ text
    def _take(self, text: str, out: list[Piece]) -> None:
        if not text:
            return
        self.pending += text
        hits = [(at, s) for s in self.stops if (at := self.pending.find(s)) >= 0]
        if hits:
            at, s = min(hits)  # the earliest stop string wins
            self.pending = self.pending[:at]
            self.outcome.stop_sequence = s
            self._stopped = True
        if self._stopped:
            return  # released by _finish
        cut = len(self.pending) - self.hold if self.stops else len(self.pending)
        if cut > 0:
            self._emit(self.pending[:cut], out)
            self.pending = self.pending[cut:]

    def _emit(self, text: str, out: list[Piece]) -> None:
        if self.parser is None:
            out.append(TextDelta(text))
            return
        for event in self.parser.feed(text):
            self._keep(event, out)

    def _keep(self, event: Any, out: list[Piece]) -> None:
        if isinstance(event, ReasoningDelta | TextDelta | ToolCallEvent):
            out.append(event)
        elif isinstance(event, FormatError) and self._unknown_tool_call(event):
            # A client decides what to do with a call to a tool it did not list (as vLLM's parser does).
            call = ToolCallEvent(event.name or "", dict(event.arguments or {}))
            out.append(call)
            self.outcome.finish_reason = "tool_calls"
        elif isinstance(event, FormatError):
            self.outcome.format_errors.append(event.message)
        elif isinstance(event, StreamEnd) and event.stop_reason == "tool_calls":
            self.outcome.finish_reason = "tool_calls"

    def _unknown_tool_call(self, error: FormatError) -> bool:
        """A complete call to a tool the request did not list (not one cut off mid-parameter)."""
        return bool(error.name) and error.name not in self.tool_names and "cut off" not in error.message

    def _finish(self) -> list[Piece]:
        out: list[Piece] = []
        if not self._stopped:
            self.pending += self.decoder.flush()
        if self.pending:
            self._emit(self.pending, out)
            self.pending = ""
        if self.parser is not None:
            for event in self.parser.finish():
                self._keep(event, out)
        reason = self.stream.stop_reason
        o = self.outcome
        o.cached_tokens = self.stream.reused_tokens
        if self._stopped:
            o.finish_reason = "stop"
        elif reason == "length":
            o.finish_reason = "length"
        elif reason in ("cancelled", "error"):
            o.finish_reason, o.error = reason, self.stream.error
        self.done = True
        return out
