"""Anthropic-style messages API (`/v1/messages`, e.g. MiniMax's `/anthropic` endpoint), streamed.

Reasoning is a list of thinking blocks, each with a signature the server checks when the block comes
back; the assistant's whole content list (thinking, text, tool_use) is sent back every round, and
tool results go back as tool_result blocks in a user message.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from agent.backends.base import BackendError, GenerationParams
from agent.backends.events import BackendEvent, FormatError, ReasoningDelta, TextDelta, ToolCallEvent
from agent.backends.messages import Message, tools_from_openai, visible_text
from agent.backends.remote.history import assign_call_ids
from agent.backends.remote.http import EndpointError, RemoteBackend, TokenCounts, json_error_message
from agent.backends.remote.reasoning_forms import THINKING, items_for
from agent.backends.remote.retry import RetryableError
from agent.backends.remote.sse import MalformedChunk, SseEvent, json_payloads
from agent.json_limits import UnusableJson, loads_limited

ANTHROPIC_VERSION = "2023-06-01"
THINKING_BLOCKS = "thinking_blocks"  # the reasoning mode's name
_RETRYABLE_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
}


class AnthropicBackend(RemoteBackend):
    kind = "anthropic"
    clamp_temperature = True  # Anthropic-style endpoints take temperature in (0, 1]
    default_max_tokens = 16384  # required by the API

    def __init__(self, *, anthropic_version: str = ANTHROPIC_VERSION, **common: Any) -> None:
        super().__init__(**common)
        self.anthropic_version = anthropic_version

    def url(self, path: str) -> str:
        # The base is the API root (`.../anthropic`) or its `/v1`; either way the path is /v1/...
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        return f"{root}/v1/{path.lstrip('/')}"

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.anthropic_version}
        if self._key is not None:
            headers["x-api-key"] = self._key.reveal()
        return headers

    def _ensure_model(self) -> None:
        if not self.model:
            raise BackendError(f"{self.name}: no model given; pass --model NAME")

    def build_request(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams
    ) -> tuple[str, dict[str, Any]]:
        system, history = self.anthropic_messages(messages)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens(params),
            "messages": history,
            "stream": True,
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [anthropic_tool(t["function"]) for t in tools_from_openai(tools)]
        body.update(self.sampling_fields(params))
        return "messages", body

    def new_decoder(self, tools: list[dict[str, Any]]) -> AnthropicDecoder:
        return AnthropicDecoder()

    def anthropic_messages(self, messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
        """(system text, messages): consecutive same-role turns merged, as the API requires."""
        ids = assign_call_ids(messages)
        system = ""
        out: list[dict[str, Any]] = []

        def push(role: str, blocks: list[dict[str, Any]]) -> None:
            if not blocks:
                return
            if out and out[-1]["role"] == role:
                out[-1]["content"].extend(blocks)
            else:
                out.append({"role": role, "content": blocks})

        for i, m in enumerate(messages):
            if m.role == "system":
                if i == 0:
                    system = visible_text(m.content)
                # later system messages are dropped, as the M2 template drops them
            elif m.role == "user":
                push("user", _user_blocks(m.content))
            elif m.role == "tool":
                push(
                    "user",
                    [{"type": "tool_result", "tool_use_id": ids.results[i], "content": _result(m.content)}],
                )
            else:
                push("assistant", self._assistant_blocks(m, ids.calls[i]))
        return system, out

    def _assistant_blocks(self, m: Message, call_ids: list[str]) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if m.reasoning:
            items = items_for(m, THINKING, self.memory)
            # Unknown signature (reasoning from elsewhere): an unsigned block; strict servers refuse it.
            blocks += copy.deepcopy(items) if items else [{"type": "thinking", "thinking": m.reasoning}]
        text = visible_text(m.content)
        if text:
            blocks.append({"type": "text", "text": text})
        for call, call_id in zip(m.tool_calls, call_ids, strict=True):
            blocks.append({"type": "tool_use", "id": call_id, "name": call.name, "input": call.arguments})
        return blocks


def anthropic_tool(function: dict[str, Any]) -> dict[str, Any]:
    tool = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or []:
        if isinstance(part, str) and part:
            blocks.append({"type": "text", "text": part})
        elif isinstance(part, dict) and part.get("type") == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": str(part["text"])})
        elif isinstance(part, dict):
            blocks.append(part)  # already an Anthropic block (image, document...)
    return blocks


def _result(content: Any) -> Any:
    return (
        content if isinstance(content, str) else [b for b in _user_blocks(content) if b.get("type") == "text"]
    )


class AnthropicDecoder:
    """One attempt's message events in, our events out."""

    def __init__(self) -> None:
        self._blocks: dict[int, dict[str, Any]] = {}
        self._emitted: set[int] = set()  # tool_use blocks already turned into events
        self._stop: str | None = None
        self._any_call = False
        self.counts = TokenCounts()
        self.done = False
        self.ended = False
        self.stop_reason = "stop"

    def feed(self, event: SseEvent) -> list[BackendEvent]:
        out: list[BackendEvent] = []
        for data in json_payloads(event.data):
            out += self._event(str(data.get("type") or event.event), data)
        return out

    def feed_response(self, body: dict[str, Any]) -> list[BackendEvent]:
        """A whole (non-streamed) message: replay it as the events it would have streamed."""
        if body.get("type") == "error":
            return self._event("error", body)
        out = self._event("message_start", {"message": body})
        for index, block in enumerate(body.get("content") or []):
            out += self._event("content_block_start", {"index": index, "content_block": block})
            if block.get("type") == "tool_use":
                self._blocks[index]["json"] = [json.dumps(block.get("input") or {})]
            out += self._event("content_block_stop", {"index": index})
        out += self._event("message_delta", {"delta": {"stop_reason": body.get("stop_reason")}})
        return out + self._event("message_stop", {})

    def _event(self, kind: str, data: dict[str, Any]) -> list[BackendEvent]:
        handler = getattr(self, "_on_" + kind, None)
        return handler(data) if handler else []  # ping and future event types

    def _on_message_start(self, data: dict[str, Any]) -> list[BackendEvent]:
        message = data.get("message") or {}
        self._add_usage(message.get("usage") or {})
        return []

    def _on_content_block_start(self, data: dict[str, Any]) -> list[BackendEvent]:
        index, block = data.get("index"), data.get("content_block") or {}
        if not isinstance(index, int) or not isinstance(block, dict):
            raise MalformedChunk(f"content_block_start without index or block: {data!r:.200}")
        kind = block.get("type")
        if kind == "thinking":
            self._blocks[index] = {"type": "thinking", "thinking": ""}
            if "signature" in block:
                self._blocks[index]["signature"] = block["signature"] or ""
            return self._thinking(index, block.get("thinking") or "")
        if kind == "text":
            self._blocks[index] = {"type": "text", "text": ""}
            return self._text(index, block.get("text") or "")
        if kind == "tool_use":
            initial = block.get("input")
            self._blocks[index] = {
                "type": "tool_use",
                "id": block.get("id"),
                "name": block.get("name") or "",
                "json": [json.dumps(initial)] if initial else [],
            }
            return []
        self._blocks[index] = copy.deepcopy(block)  # redacted_thinking and others: kept verbatim
        return []

    def _on_content_block_delta(self, data: dict[str, Any]) -> list[BackendEvent]:
        index, delta = data.get("index"), data.get("delta") or {}
        if index not in self._blocks:
            raise MalformedChunk(f"content_block_delta for a block that never started: {data!r:.200}")
        kind = delta.get("type")
        if kind == "thinking_delta":
            return self._thinking(index, delta.get("thinking") or "")
        if kind == "signature_delta":
            block = self._blocks[index]
            block["signature"] = block.get("signature", "") + (delta.get("signature") or "")
        elif kind == "text_delta":
            return self._text(index, delta.get("text") or "")
        elif kind == "input_json_delta":
            self._blocks[index].setdefault("json", []).append(delta.get("partial_json") or "")
        return []

    def _on_content_block_stop(self, data: dict[str, Any]) -> list[BackendEvent]:
        index = data.get("index")
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None or block.get("type") != "tool_use" or index in self._emitted:
            return []
        self._emitted.add(index)
        return [self._call(block)]

    def _on_message_delta(self, data: dict[str, Any]) -> list[BackendEvent]:
        self._stop = (data.get("delta") or {}).get("stop_reason") or self._stop
        self.ended = self._stop is not None
        self._add_usage(data.get("usage") or {})
        return []

    def _on_message_stop(self, data: dict[str, Any]) -> list[BackendEvent]:
        self.done = True
        return []

    def _on_error(self, data: dict[str, Any]) -> list[BackendEvent]:
        error = data.get("error") or {}
        message = json_error_message(data) or "error event"
        if isinstance(error, dict) and error.get("type") in _RETRYABLE_ERRORS:
            raise RetryableError(f"error in the stream: {message}")
        raise EndpointError(
            message, auth=isinstance(error, dict) and error.get("type") == "authentication_error"
        )

    # ------------------------------------------------------------------ helpers
    def _thinking(self, index: int, text: str) -> list[BackendEvent]:
        if not text:
            return []
        self._blocks[index]["thinking"] += text
        return [ReasoningDelta(text)]

    def _text(self, index: int, text: str) -> list[BackendEvent]:
        if not text:
            return []
        self._blocks[index]["text"] += text
        return [TextDelta(text)]

    def _call(self, block: dict[str, Any]) -> BackendEvent:
        text = "".join(block.get("json") or [])
        name = block.get("name") or ""
        try:
            arguments = loads_limited(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            return FormatError(
                f"The input of your call to '{name}' is not valid JSON ({exc.msg}), so the call was not run. "
                "Call it again with a JSON object as input.",
                raw=text[:2000],
            )
        except UnusableJson as exc:
            return FormatError(
                f"The input of your call to '{name}' cannot be used ({exc}), so the call was not run.",
                raw=text[:2000],
            )
        if not isinstance(arguments, dict) or not name:
            return FormatError(f"A tool call to '{name}' had no name or a non-object input; it was not run.")
        self._any_call = True
        return ToolCallEvent(name=name, arguments=arguments, id=block.get("id"))

    def _add_usage(self, usage: dict[str, Any]) -> None:
        def number(key: str) -> int | None:
            value = usage.get(key)
            return value if isinstance(value, int) and value >= 0 else None

        fresh, read, written = (
            number("input_tokens"),
            number("cache_read_input_tokens"),
            number("cache_creation_input_tokens"),
        )
        if fresh is not None or read is not None:
            # Anthropic counts cached input apart from input_tokens; we report the whole prompt.
            self.counts.input = (fresh or 0) + (read or 0) + (written or 0)
            self.counts.cached = read or 0
            self.counts.reported = True
        output = number("output_tokens")
        if output is not None:
            self.counts.output = output  # message_delta carries the running total
            self.counts.reported = True

    def finish(self) -> list[BackendEvent]:
        out = [self._on_content_block_stop({"index": i}) for i in sorted(self._blocks)]
        events = [e for group in out for e in group]
        if self._any_call:
            self.stop_reason = "tool_calls"
        else:
            self.stop_reason = _STOP_REASONS.get(self._stop or "", "stop")
        return events

    def reasoning_mode(self) -> str | None:
        return THINKING_BLOCKS if any(b.get("type") == "thinking" for b in self._blocks.values()) else None

    def reasoning_items(self) -> list[dict[str, Any]] | None:
        items = [
            copy.deepcopy(self._blocks[i]) for i in sorted(self._blocks) if THINKING.accepts(self._blocks[i])
        ]
        return items or None
