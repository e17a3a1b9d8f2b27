"""OpenAI-style chat completions (MiniMax's API, vLLM, SGLang, gateways), streamed over SSE.

Reasoning comes in one of three forms, detected from the reply and sent back in the same form:
- inline: `<think>...</think>` at the head of `content` (vLLM/SGLang append-think parsers, MiniMax
  without reasoning_split); the content goes through the M2 CompletionParser, which also catches
  raw `<minimax:tool_call>` XML from gateways that have no tool parser;
- reasoning_content: a separate field (split parsers; newer vLLM calls it `reasoning`);
- reasoning_details: MiniMax's list of items (request `reasoning_split: true`), streamed as increments.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from agent.backends.base import GenerationParams
from agent.backends.events import (
    BackendEvent,
    FormatError,
    ReasoningDelta,
    RoundRetry,
    StreamEnd,
    ToolCallEvent,
)
from agent.backends.m2.parse import CompletionParser
from agent.backends.messages import Message, tools_from_openai, visible_text
from agent.backends.remote.history import assign_call_ids
from agent.backends.remote.http import EndpointError, RemoteBackend, TokenCounts, json_error_message
from agent.backends.remote.reasoning_forms import (
    DETAILS,
    INLINE,
    THINK_INLINE,
    inline_prefix,
    items_for,
    merge_detail_increments,
    render_inline,
)
from agent.backends.remote.retry import RetryableError
from agent.backends.remote.sse import SseEvent, json_payloads
from agent.json_limits import UnusableJson, loads_limited

MODES = ("inline", "reasoning_content", "reasoning_details")
SPLIT_MODES = ("reasoning_content", "reasoning_details")

# MiniMax reports some errors in `base_resp` with HTTP 200: these codes are worth another try.
MINIMAX_RETRYABLE = {1000, 1001, 1002, 1024, 1033}
MINIMAX_AUTH = {1004, 2049}


class OpenAIChatBackend(RemoteBackend):
    kind = "openai-chat"

    def __init__(
        self,
        *,
        reasoning_mode: str = "auto",
        reasoning_split: bool = False,
        stream_usage: bool = True,
        max_tokens_field: str = "max_tokens",
        clamp_temperature: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if reasoning_mode not in ("auto", *MODES):
            raise ValueError(f"reasoning_mode must be auto, {', '.join(MODES)}; got {reasoning_mode!r}")
        self.forced_mode = None if reasoning_mode == "auto" else reasoning_mode
        self.reasoning_split = reasoning_split
        self.stream_usage = stream_usage
        self.max_tokens_field = max_tokens_field
        self.clamp_temperature = clamp_temperature

    def build_request(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.chat_messages(messages),
            "stream": True,
        }
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = tools_from_openai(tools)
        body.update(self.sampling_fields(params))
        max_tokens = self.max_tokens(params)
        if max_tokens is not None:
            body[self.max_tokens_field] = max_tokens
        if self.reasoning_split:
            body["reasoning_split"] = True
        return "chat/completions", body

    def new_decoder(self, tools: list[dict[str, Any]]) -> ChatStreamDecoder:
        return ChatStreamDecoder(tools, self.forced_mode, bare=self.bare_think)

    def _round_done(self, decoder: Any, reasoning: str) -> None:
        super()._round_done(decoder, reasoning)
        if decoder.split_field:
            self.split_field = decoder.split_field
        self.bare_think = self.bare_think or decoder.bare

    # ------------------------------------------------------------------ history
    def send_mode(self, messages: list[Message]) -> str:
        """The form to send reasoning in: forced, else as detected, else as the messages suggest."""
        if self.forced_mode:
            return self.forced_mode
        if self.reasoning_mode in MODES:
            return self.reasoning_mode
        if self.reasoning_split:
            return "reasoning_details"
        if any(m.role == "assistant" and items_for(m, DETAILS, self.memory) for m in messages if m.reasoning):
            return "reasoning_details"
        return "inline"  # every M2 chat template splits `<think>` out of the content

    def chat_messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        mode = self.send_mode(messages)
        ids = assign_call_ids(messages)
        out: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            if m.role == "assistant":
                out.append(self._assistant(m, mode, ids.calls[i]))
            elif m.role == "tool":
                out.append({"role": "tool", "tool_call_id": ids.results[i], "content": m.content})
            else:
                out.append({"role": m.role, "content": m.content})
        return out

    def _assistant(self, m: Message, mode: str, call_ids: list[str]) -> dict[str, Any]:
        content = visible_text(m.content)
        out: dict[str, Any] = {"role": "assistant", "content": content}
        if m.reasoning:
            if mode == "inline":
                items = items_for(m, INLINE, self.memory)
                out["content"] = (items[0]["text"] if items else render_inline(m.reasoning)) + content
            elif mode == "reasoning_details":
                items = items_for(m, DETAILS, self.memory)
                out["reasoning_details"] = copy.deepcopy(items) or [
                    {"type": "reasoning.text", "text": m.reasoning}
                ]
            else:
                out[self.split_field] = m.reasoning
                # The M2 chat template reads `reasoning_content`, whatever the stream called it.
                out["reasoning_content"] = m.reasoning
        if m.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": json.dumps(call.arguments, ensure_ascii=False),
                    },
                }
                for call, call_id in zip(m.tool_calls, call_ids, strict=True)
            ]
        return out


@dataclass
class _CallSlot:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def event(self) -> BackendEvent:
        text = "".join(self.arguments)
        if not self.name:
            return FormatError("A tool call came without a function name, so it was not run.", raw=text)
        try:
            arguments = loads_limited(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            return FormatError(
                f"The arguments of your call to '{self.name}' are not valid JSON ({exc.msg}), so the call "
                "was not run. Call it again with a JSON object of arguments.",
                raw=text[:2000],
            )
        except UnusableJson as exc:
            return FormatError(
                f"The arguments of your call to '{self.name}' cannot be used ({exc}), so the call was not run.",
                raw=text[:2000],
            )
        if not isinstance(arguments, dict):
            return FormatError(
                f"The arguments of your call to '{self.name}' must be a JSON object; the call was not run.",
                raw=text[:2000],
            )
        return ToolCallEvent(name=self.name, arguments=arguments, id=self.id)


class ChoiceDecoder:
    """What chat and raw completions share: OpenAI-style chunks (SSE `data:` lines ending with `[DONE]`, or
    one whole response) carry errors, usage and choice 0's finish reason; a subclass turns choice 0 into
    events and sets `stop_reason` from what it parsed."""

    def __init__(self) -> None:
        self._finish_reason: str | None = None
        self.counts = TokenCounts()
        self.done = False
        self.ended = False
        self.stop_reason = "stop"

    def feed(self, event: SseEvent) -> list[BackendEvent]:
        if event.data.strip() == "[DONE]":
            self.done = True
            return []
        out: list[BackendEvent] = []
        for chunk in json_payloads(event.data):
            out += self._chunk(chunk, whole=False)
        return out

    def feed_response(self, body: dict[str, Any]) -> list[BackendEvent]:
        out = self._chunk(body, whole=True)
        self.done = True
        return out

    def _chunk(self, chunk: dict[str, Any], whole: bool) -> list[BackendEvent]:
        raise_for_payload_error(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.counts = usage_counts(chunk["usage"])
        out: list[BackendEvent] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # we ask for one choice; ignore any other
            out += self._choice(choice, whole)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                self.ended = True
        return out

    def _choice(self, choice: dict[str, Any], whole: bool) -> list[BackendEvent]:
        raise NotImplementedError

    def _set_stop_reason(self, called_tools: bool) -> None:
        if called_tools:
            self.stop_reason = "tool_calls"
        elif self._finish_reason == "length":
            self.stop_reason = "length"


class ChatStreamDecoder(ChoiceDecoder):
    """One attempt's chat-completion chunks in, events out."""

    def __init__(
        self, tools: list[dict[str, Any]], forced_mode: str | None = None, bare: bool = False
    ) -> None:
        super().__init__()
        self._tools = tools or None  # no tools: do not reject XML calls by name
        self._forced = forced_mode
        self.bare = bare  # the server sends M2's raw text: reasoning first, with no <think> before it
        self._mode: str | None = None
        self.split_field: str | None = None
        self._details: list[dict[str, Any]] = []
        self._raw: list[str] = []  # content exactly as received
        self._head = ""  # content held until it shows whether it opens with <think>
        self._parser: CompletionParser | None = None
        self._calls: dict[int, _CallSlot] = {}
        self._last_index: int | None = None

    # ------------------------------------------------------------------ input
    def _choice(self, choice: dict[str, Any], whole: bool) -> list[BackendEvent]:
        delta = choice.get("message" if whole else "delta") or choice.get("delta") or {}
        return self._delta(delta, whole) if isinstance(delta, dict) else []

    def _delta(self, delta: dict[str, Any], whole: bool) -> list[BackendEvent]:
        out: list[BackendEvent] = []
        details = delta.get("reasoning_details")
        if details:
            self._note_mode("reasoning_details")
            added = merge_detail_increments(self._details, details)
            if added:
                out.append(ReasoningDelta(added))
        elif self._mode != "reasoning_details":
            for name in ("reasoning_content", "reasoning"):  # servers may send both: take one
                text = delta.get(name)
                if isinstance(text, str) and text:
                    self._note_mode("reasoning_content")
                    self.split_field = self.split_field or name
                    out.append(ReasoningDelta(text))
                    break
        content = delta.get("content")
        if isinstance(content, str) and content:
            out += self._content(content)
        elif isinstance(content, list):  # content parts: take the text ones
            out += self._content(visible_text(content))
        for position, call in enumerate(delta.get("tool_calls") or []):
            self._tool_call(call, position if whole else None)
        return out

    def _note_mode(self, mode: str) -> None:
        if self._mode is None:
            self._mode = mode

    def _content(self, text: str) -> list[BackendEvent]:
        if not text:
            return []
        self._raw.append(text)
        if self._parser is None:
            self._head += text
            head = self._head.lstrip()
            if not head:
                return []
            if self._mode in SPLIT_MODES or self._forced in SPLIT_MODES:
                in_reasoning = False
            elif self._forced == "inline" or self.bare or head.startswith("<think>"):
                in_reasoning = True
            elif "<think>".startswith(head):
                return []  # not decided yet
            else:
                in_reasoning = False
            self._start_parser(in_reasoning)
            text, self._head = self._head, ""
        assert self._parser is not None
        events = self._parser.feed(text)
        if self._mode is None and self._forced is None and "</think>" in self._raw_tail(len(text) + 8):
            return self._reread_as_bare() or events
        return events

    def _raw_tail(self, size: int) -> str:
        pieces, length = [], 0
        for piece in reversed(self._raw):
            pieces.append(piece)
            length += len(piece)
            if length >= size:
                break
        return "".join(reversed(pieces))[-size:]

    def _reread_as_bare(self) -> list[BackendEvent] | None:
        """A `</think>` with no `<think>` before it: all so far was reasoning (a server with no
        reasoning parser). Tell consumers to drop the round so far, and read it again."""
        raw = "".join(self._raw)
        if "<think>" in raw.split("</think>", 1)[0]:
            return None  # reasoning leaking into the content: the parser handles that
        self.bare = True
        self._calls.clear()
        self._start_parser(in_reasoning=True)
        assert self._parser is not None
        retry = RoundRetry("the endpoint sends M2's reasoning without <think>: reading the round again", 0)
        return [retry, *self._parser.feed(raw)]

    def _start_parser(self, in_reasoning: bool) -> None:
        self._parser = CompletionParser(self._tools)
        if in_reasoning:
            self._note_mode("inline")
        else:
            self._parser.feed("</think>")  # the parser starts inside reasoning: step out of it

    def _tool_call(self, call: Any, position: int | None) -> None:
        if not isinstance(call, dict):
            return
        index = call.get("index", position)
        if not isinstance(index, int):
            # No index: a new call when it brings a new id, else more of the last one.
            new_id = call.get("id") and all(s.id != call["id"] for s in self._calls.values())
            index = len(self._calls) if new_id or self._last_index is None else self._last_index
        slot = self._calls.setdefault(index, _CallSlot())
        self._last_index = index
        if call.get("id") and not slot.id:
            slot.id = call["id"]
        function = call.get("function") or {}
        if isinstance(function, dict):
            if function.get("name") and not slot.name:
                slot.name = function["name"]  # some servers repeat the name: keep the first
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                slot.arguments.append(arguments)
            elif isinstance(arguments, dict):
                slot.arguments.append(json.dumps(arguments, ensure_ascii=False))

    # ------------------------------------------------------------------ output
    def finish(self) -> list[BackendEvent]:
        out: list[BackendEvent] = []
        if self._parser is None and self._head:
            self._start_parser(in_reasoning=self._forced == "inline" or self.bare)
            assert self._parser is not None
            out += self._parser.feed(self._head)
        if self._parser is not None:
            out += [e for e in self._parser.finish() if not isinstance(e, StreamEnd)]
        out += [self._calls[i].event() for i in sorted(self._calls)]
        self._set_stop_reason(
            any(isinstance(e, ToolCallEvent) for e in out) or bool(self._parser and self._parser.tool_calls)
        )
        return out

    def reasoning_mode(self) -> str | None:
        return self._mode

    def reasoning_items(self) -> list[dict[str, Any]] | None:
        if self._mode == "reasoning_details":
            return copy.deepcopy(self._details)
        if self._mode == "inline":
            prefix = inline_prefix("".join(self._raw))
            return [{"type": THINK_INLINE, "text": prefix}] if prefix else None
        return None


def usage_counts(usage: dict[str, Any]) -> TokenCounts:
    def number(value: Any) -> int:
        return value if isinstance(value, int) and value >= 0 else 0

    completion = usage.get("completion_tokens_details") or {}
    prompt = usage.get("prompt_tokens_details") or {}
    return TokenCounts(
        input=number(usage.get("prompt_tokens")),
        output=number(usage.get("completion_tokens")),
        reasoning=number(completion.get("reasoning_tokens")) if isinstance(completion, dict) else 0,
        cached=number(prompt.get("cached_tokens")) if isinstance(prompt, dict) else 0,
        reported=True,
    )


def raise_for_payload_error(chunk: dict[str, Any]) -> None:
    """An error reported inside a 200 stream (vLLM, gateways) or in MiniMax's `base_resp`."""
    error = chunk.get("error")
    if error:
        message = json_error_message(chunk) or str(error)
        code = error.get("code") if isinstance(error, dict) else None
        kind = str(error.get("type", "")) if isinstance(error, dict) else ""
        if (
            code in (408, 409, 429)
            or (isinstance(code, int) and code >= 500)
            or any(
                word in (kind + message).lower()
                for word in ("overload", "rate_limit", "rate limit", "server_error", "timeout")
            )
        ):
            raise RetryableError(f"error in the stream: {message}")
        raise EndpointError(message)
    base = chunk.get("base_resp")
    if isinstance(base, dict) and base.get("status_code") not in (None, 0):
        status = base.get("status_code")
        message = f"{base.get('status_msg', '')} (MiniMax status {status})"
        if status in MINIMAX_RETRYABLE:
            raise RetryableError(message)
        if status in MINIMAX_AUTH:
            raise EndpointError(message, auth=True)
        raise EndpointError(message)
