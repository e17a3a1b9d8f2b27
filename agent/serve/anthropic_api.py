"""Anthropic-style /v1/messages (and /v1/messages/count_tokens).

M2 always reasons; its reasoning comes back as a thinking block signed with an HMAC of the thinking
text under a per-server key, so a block the client sends back can be checked: edited, forged or from
another server, it is a 400. Tool calls are tool_use blocks; tool results come back as tool_result
blocks in a user message. Streams follow Anthropic's event order.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse

from agent.backends.events import ReasoningDelta, TextDelta, ToolCallEvent
from agent.backends.m2.render import RenderError, render_prompt
from agent.backends.messages import Message, ToolCall
from agent.serve import fields
from agent.serve.errors import APIError, anthropic_body, bad_request
from agent.serve.generation import Outcome, Run
from agent.serve.state import ServerState, open_request, start_run

STOP_REASONS = {"tool_calls": "tool_use", "length": "max_tokens", "stop": "end_turn"}


def _text_of(content: Any, where: str) -> str:
    """A string, or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for block in content:
            if (
                not isinstance(block, dict)
                or block.get("type") != "text"
                or not isinstance(block.get("text"), str)
            ):
                raise bad_request(
                    f"{where}: only text blocks are supported here (this model reads text only)"
                )
            texts.append(block["text"])
        return "".join(texts)
    raise bad_request(f"{where}: expected a string or a list of text blocks")


class Conversation:
    """An Anthropic request's system, messages and tools, as our Messages and OpenAI-style tools."""

    def __init__(self, body: dict[str, Any], state: ServerState) -> None:
        self.state = state
        self.messages: list[Message] = []
        self.tool_names: dict[str, str] = {}  # tool_use id -> tool name
        system = body.get("system")
        if system is not None:
            text = _text_of(system, "system")
            if text:
                self.messages.append(Message.system(text))
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise bad_request("messages must be a non-empty list", "messages")
        for i, message in enumerate(raw):
            self._add(message, f"messages.{i}")
        if self.messages[-1].role == "assistant":
            raise bad_request(
                "the last message must be a user message (prefilling the reply is not supported)"
            )
        self.tools = self._tools(body.get("tools"))

    def _add(self, message: Any, where: str) -> None:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise bad_request(f"{where}: expected an object with role user or assistant")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise bad_request(f"{where}.content: expected a string or a list of blocks")
        if message["role"] == "assistant":
            self.messages.append(self._assistant(content, where))
        else:
            self._user(content, where)

    def _assistant(self, blocks: list[Any], where: str) -> Message:
        reasoning, texts, calls = [], [], []
        for j, block in enumerate(blocks):
            kind = block.get("type") if isinstance(block, dict) else None
            at = f"{where}.content.{j}"
            if kind == "thinking":
                thinking, signature = block.get("thinking"), block.get("signature")
                if not isinstance(thinking, str):
                    raise bad_request(f"{at}: thinking must be a string")
                if not isinstance(signature, str) or not signature:
                    raise bad_request(f"{at}: a thinking block needs the signature it was given")
                if not self.state.verify(thinking, signature):
                    raise bad_request(
                        f"{at}: the thinking block's signature does not match its text (edited, or from another server)"
                    )
                reasoning.append(thinking)
            elif kind == "redacted_thinking":
                raise bad_request(f"{at}: redacted_thinking blocks are not from this server")
            elif kind == "text":
                if not isinstance(block.get("text"), str):
                    raise bad_request(f"{at}: text must be a string")
                texts.append(block["text"])
            elif kind == "tool_use":
                name, call_id, arguments = block.get("name"), block.get("id"), block.get("input", {})
                if (
                    not isinstance(name, str)
                    or not isinstance(call_id, str)
                    or not isinstance(arguments, dict)
                ):
                    raise bad_request(f"{at}: tool_use needs a string id and name and an object input")
                self.tool_names[call_id] = name
                calls.append(ToolCall(name, arguments, call_id))
            else:
                raise bad_request(f"{at}: unsupported block type {kind!r} in an assistant message")
        return Message.assistant("".join(texts), reasoning="\n".join(reasoning) or None, tool_calls=calls)

    def _user(self, blocks: list[Any], where: str) -> None:
        texts = []
        for j, block in enumerate(blocks):
            kind = block.get("type") if isinstance(block, dict) else None
            at = f"{where}.content.{j}"
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise bad_request(f"{at}: text must be a string")
                texts.append(block["text"])
            elif kind == "tool_result":
                call_id = block.get("tool_use_id")
                if not isinstance(call_id, str):
                    raise bad_request(f"{at}: tool_result needs tool_use_id")
                result = _text_of(block.get("content", ""), f"{at}.content")
                if block.get("is_error"):
                    result = f"Error: {result}"
                self.messages.append(Message.tool(result, call_id, self.tool_names.get(call_id)))
            else:
                raise bad_request(f"{at}: unsupported block type {kind!r} (this model reads text only)")
        if texts:
            self.messages.append(Message.user("\n".join(texts)))

    @staticmethod
    def _tools(raw: Any) -> list[dict[str, Any]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise bad_request("tools must be a list", "tools")
        tools = []
        for i, tool in enumerate(raw):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise bad_request(f"tools.{i}: expected an object with a name", "tools")
            if tool.get("type") not in (None, "custom"):
                raise bad_request(f"tools.{i}: server tools ({tool['type']}) are not supported", "tools")
            function = {"name": tool["name"]}
            if tool.get("description"):
                function["description"] = tool["description"]
            function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
            tools.append({"type": "function", "function": function})
        return tools

    def prompt(self) -> str:
        try:
            return render_prompt(self.messages, self.tools or None)
        except RenderError as exc:
            raise bad_request(str(exc), "messages") from None


def _thinking_shown(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    if thinking is None:
        return True  # M2 always reasons; the blocks are returned so that clients can send them back
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        raise bad_request('thinking must be {"type": "enabled" | "disabled"}', "thinking")
    return thinking["type"] != "disabled"


def _usage(o: Outcome) -> dict[str, Any]:
    return {
        "input_tokens": o.prompt_tokens - o.cached_tokens,
        "cache_read_input_tokens": o.cached_tokens,
        "cache_creation_input_tokens": 0,
        "output_tokens": o.completion_tokens,
    }


def _stop_reason(o: Outcome) -> str:
    if o.stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(o.finish_reason, "end_turn")


def _tool_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


async def count_tokens(request: Request) -> JSONResponse:
    opened = await open_request(request)
    state, body, host = opened.state, opened.body, opened.host
    prompt = Conversation(body, state).prompt()
    return JSONResponse({"input_tokens": len(host.tokenizer.encode(prompt))})


async def messages(request: Request):
    opened = await open_request(request)
    state, body, model, host = opened.state, opened.body, opened.model, opened.host
    max_tokens = fields.integer(body, "max_tokens", 1)
    if max_tokens is None:
        raise bad_request("max_tokens is required", "max_tokens")
    conversation = Conversation(body, state)
    show_thinking = _thinking_shown(body)
    run = start_run(
        host,
        host.tokenizer.encode(conversation.prompt()),
        max_tokens,
        fields.sampling(body, host.defaults),
        stop=fields.stop_strings(body, "stop_sequences"),
        tools=conversation.tools,
    )
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    if fields.flag(body, "stream"):
        return EventSourceResponse(_events(run, state, message_id, model, show_thinking), ping=15)
    pieces = await run.gather(request.is_disconnected)
    o = run.outcome
    if o.finish_reason == "error":
        raise APIError(500, f"generation failed: {o.error}")
    content: list[dict[str, Any]] = []
    reasoning = "".join(p.text for p in pieces if isinstance(p, ReasoningDelta))
    if reasoning and show_thinking:
        content.append({"type": "thinking", "thinking": reasoning, "signature": state.sign(reasoning)})
    text = "".join(p.text for p in pieces if isinstance(p, TextDelta))
    if text:
        content.append({"type": "text", "text": text})
    for call in (p for p in pieces if isinstance(p, ToolCallEvent)):
        content.append({"type": "tool_use", "id": _tool_id(), "name": call.name, "input": call.arguments})
    return JSONResponse(
        {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": _stop_reason(o),
            "stop_sequence": o.stop_sequence,
            "usage": _usage(o),
        }
    )


def _event(name: str, data: dict[str, Any]) -> dict[str, str]:
    return {"event": name, "data": json.dumps({"type": name, **data})}


async def _events(run: Run, state: ServerState, message_id: str, model: str, show_thinking: bool):
    start = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**_usage(run.outcome), "output_tokens": 0},
    }
    yield _event("message_start", {"message": start})
    index = -1
    open_kind: str | None = None  # the block being streamed: thinking | text
    thinking: list[str] = []

    def close() -> list[dict[str, str]]:
        nonlocal open_kind
        out = []
        if open_kind == "thinking":
            signature = state.sign("".join(thinking))
            out.append(
                _event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "signature_delta", "signature": signature}},
                )
            )
        if open_kind is not None:
            out.append(_event("content_block_stop", {"index": index}))
        open_kind = None
        return out

    def open_block(kind: str, block: dict[str, Any]) -> list[dict[str, str]]:
        nonlocal index, open_kind
        out = close()
        index += 1
        open_kind = kind
        out.append(_event("content_block_start", {"index": index, "content_block": block}))
        return out

    async for pieces in run.pieces():
        for piece in pieces:
            if isinstance(piece, ReasoningDelta):
                if not show_thinking:
                    continue
                if open_kind != "thinking":
                    for e in open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""}):
                        yield e
                thinking.append(piece.text)
                delta = {"type": "thinking_delta", "thinking": piece.text}
            elif isinstance(piece, TextDelta):
                if open_kind != "text":
                    for e in open_block("text", {"type": "text", "text": ""}):
                        yield e
                delta = {"type": "text_delta", "text": piece.text}
            else:
                block = {"type": "tool_use", "id": _tool_id(), "name": piece.name, "input": {}}
                for e in open_block("tool_use", block):
                    yield e
                delta = {
                    "type": "input_json_delta",
                    "partial_json": json.dumps(piece.arguments, ensure_ascii=False),
                }
            yield _event("content_block_delta", {"index": index, "delta": delta})
    for e in close():
        yield e
    o = run.outcome
    if o.finish_reason == "error":
        yield {
            "event": "error",
            "data": json.dumps(anthropic_body(APIError(500, f"generation failed: {o.error}"))),
        }
        return
    delta = {"stop_reason": _stop_reason(o), "stop_sequence": o.stop_sequence}
    yield _event("message_delta", {"delta": delta, "usage": {"output_tokens": o.completion_tokens}})
    yield _event("message_stop", {})
