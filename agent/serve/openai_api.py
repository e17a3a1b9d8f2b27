"""OpenAI-style routes: /v1/models, /v1/chat/completions, /v1/completions, and vLLM's /tokenize.

Chat renders messages and tools with our M2 renderer and parses the completion back with our parser.
Reasoning comes back the way MiniMax's API returns it: with `reasoning_split: true` in the
`reasoning_content` field, otherwise inline, as `<think>...</think>` at the head of `content`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse

from agent.backends.events import ReasoningDelta, TextDelta, ToolCallEvent
from agent.backends.m2.render import RenderError, render_prompt
from agent.backends.messages import Message, MessageFormatError, tools_from_openai
from agent.backends.remote.reasoning_forms import render_inline
from agent.serve import fields
from agent.serve.errors import APIError, bad_request, openai_body
from agent.serve.generation import Outcome, Run
from agent.serve.state import ServerState, open_request, start_run

CHAT_ONLY_TEXT = "this model reads text only: content parts must be of type text"


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def usage_json(o: Outcome) -> dict[str, Any]:
    return {
        "prompt_tokens": o.prompt_tokens,
        "completion_tokens": o.completion_tokens,
        "total_tokens": o.prompt_tokens + o.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": o.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": o.reasoning_tokens},
    }


def _finish_reason(o: Outcome) -> str:
    return o.finish_reason if o.finish_reason in ("stop", "length", "tool_calls") else "stop"


def _engine_failure(o: Outcome) -> APIError | None:
    if o.finish_reason == "error":
        return APIError(500, f"generation failed: {o.error}")
    return None


# ---------------------------------------------------------------------- /v1/models
async def list_models(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    state.authorize(request)
    host = state.require_host()
    data = [
        {
            "id": name,
            "object": "model",
            "created": state.created,
            "owned_by": "mmx-agent",
            "max_model_len": host.context_window,
        }
        for name in state.served_names
    ]
    return JSONResponse({"object": "list", "data": data})


# ---------------------------------------------------------------------- chat
def chat_messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages must be a non-empty list", "messages")
    out = []
    for i, item in enumerate(raw):
        try:
            message = Message.from_openai(item, i)
        except MessageFormatError as exc:
            raise bad_request(str(exc), "messages") from None
        if isinstance(message.content, list) and any(
            isinstance(p, dict) and p.get("type") not in ("text", None) for p in message.content
        ):
            raise bad_request(f"message {i}: {CHAT_ONLY_TEXT}", "messages")
        if message.reasoning is None and message.reasoning_details:
            # MiniMax's reasoning_details items, sent back: their text is the reasoning.
            texts = [d.get("text") for d in message.reasoning_details if isinstance(d.get("text"), str)]
            message.reasoning = "".join(texts) or None
        out.append(message)
    return out


def chat_prompt(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(prompt text, tools) for a chat body."""
    messages = chat_messages(body.get("messages"))
    try:
        tools = tools_from_openai(body.get("tools"))
    except MessageFormatError as exc:
        raise bad_request(str(exc), "tools") from None
    if body.get("tool_choice") == "none":
        tools = []
    try:
        return render_prompt(messages, tools or None), tools
    except RenderError as exc:
        raise bad_request(str(exc), "messages") from None


async def chat_completions(request: Request):
    opened = await open_request(request)
    body, model, host = opened.body, opened.model, opened.host
    if fields.integer(body, "n", 1, 1) not in (None, 1):
        raise bad_request("n must be 1", "n")
    if body.get("logprobs"):
        raise bad_request("logprobs are not supported", "logprobs")
    prompt, tools = chat_prompt(body)
    asked = fields.integer(body, "max_completion_tokens", 1)
    if asked is None:
        asked = fields.integer(body, "max_tokens", 1)
    split = fields.flag(body, "reasoning_split")
    stream = fields.flag(body, "stream")
    include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))
    run = start_run(
        host,
        host.tokenizer.encode(prompt),
        asked,
        fields.sampling(body, host.defaults),
        stop=fields.stop_strings(body, "stop"),
        tools=tools,
    )
    meta = {"id": new_id("chatcmpl-"), "created": int(time.time()), "model": model}
    if stream:
        return EventSourceResponse(_chat_events(run, meta, split, include_usage), ping=15)
    pieces = await run.gather(request.is_disconnected)
    failure = _engine_failure(run.outcome)
    if failure is not None:
        raise failure
    reasoning = "".join(p.text for p in pieces if isinstance(p, ReasoningDelta))
    text = "".join(p.text for p in pieces if isinstance(p, TextDelta))
    calls = [p for p in pieces if isinstance(p, ToolCallEvent)]
    message: dict[str, Any] = {"role": "assistant"}
    if split:
        message["content"] = text if text or not calls else None
        message["reasoning_content"] = reasoning
    else:
        message["content"] = (render_inline(reasoning) if reasoning else "") + text
    if calls:
        message["tool_calls"] = [_tool_call_json(c) for c in calls]
    choice = {"index": 0, "message": message, "finish_reason": _finish_reason(run.outcome), "logprobs": None}
    return JSONResponse(
        {**meta, "object": "chat.completion", "choices": [choice], "usage": usage_json(run.outcome)}
    )


def _tool_call_json(call: ToolCallEvent, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {} if index is None else {"index": index}
    out.update(
        {
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
        }
    )
    return out


async def _chat_events(run: Run, meta: dict[str, Any], split: bool, include_usage: bool):
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, str]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"data": json.dumps({**meta, "object": "chat.completion.chunk", "choices": [choice]})}

    yield chunk({"role": "assistant", "content": ""})
    in_think = False  # inline mode: inside the <think> block written into the content
    calls = 0
    async for pieces in run.pieces():
        for piece in pieces:
            if isinstance(piece, ReasoningDelta):
                if split:
                    yield chunk({"reasoning_content": piece.text})
                    continue
                if not in_think:
                    in_think = True
                    yield chunk({"content": "<think>\n"})
                yield chunk({"content": piece.text})
                continue
            if in_think:
                in_think = False
                yield chunk({"content": "\n</think>\n\n"})
            if isinstance(piece, TextDelta):
                yield chunk({"content": piece.text})
            else:
                yield chunk({"tool_calls": [_tool_call_json(piece, calls)]})
                calls += 1
    if in_think:
        yield chunk({"content": "\n</think>\n\n"})
    failure = _engine_failure(run.outcome)
    if failure is not None:
        yield {"data": json.dumps(openai_body(failure))}
        return
    yield chunk({}, _finish_reason(run.outcome))
    if include_usage:
        usage = {**meta, "object": "chat.completion.chunk", "choices": [], "usage": usage_json(run.outcome)}
        yield {"data": json.dumps(usage)}
    yield {"data": "[DONE]"}


# ---------------------------------------------------------------------- raw completions
def prompt_ids(body: dict[str, Any], tokenizer: Any, vocab_size: int) -> list[int]:
    """A prompt string, or a list of token ids (a one-item list of either is accepted too)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise bad_request("prompt is empty", "prompt")
        return tokenizer.encode(prompt)
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        bad = [t for t in prompt if not 0 <= t < vocab_size]
        if bad:
            raise bad_request(f"token ids out of the vocabulary (0..{vocab_size - 1}): {bad[:10]}", "prompt")
        return list(prompt)
    raise bad_request("prompt must be a string or a list of token ids (one prompt per request)", "prompt")


async def completions(request: Request):
    opened = await open_request(request)
    body, model, host = opened.body, opened.model, opened.host
    for unsupported in ("echo", "logprobs", "suffix", "best_of"):
        if body.get(unsupported) not in (None, False, 0, 1) or (unsupported == "echo" and body.get("echo")):
            raise bad_request(f"{unsupported} is not supported", unsupported)
    if fields.integer(body, "n", 1, 1) not in (None, 1):
        raise bad_request("n must be 1", "n")
    ids = prompt_ids(body, host.tokenizer, host.model.args.vocab_size)
    asked = fields.integer(body, "max_tokens", 1)
    with_ids = fields.flag(body, "return_token_ids")
    run = start_run(
        host,
        ids,
        16 if asked is None else asked,  # OpenAI's default for this endpoint
        fields.sampling(body, host.defaults),
        stop=fields.stop_strings(body, "stop"),
        parse=False,
        ignore_eos=fields.flag(body, "ignore_eos"),
    )
    meta = {"id": new_id("cmpl-"), "created": int(time.time()), "model": model}
    stream = fields.flag(body, "stream")
    include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))
    if stream:
        return EventSourceResponse(_completion_events(run, meta, include_usage, with_ids), ping=15)
    pieces = await run.gather(request.is_disconnected)
    failure = _engine_failure(run.outcome)
    if failure is not None:
        raise failure
    choice: dict[str, Any] = {
        "index": 0,
        "text": "".join(p.text for p in pieces if isinstance(p, TextDelta)),
        "finish_reason": _finish_reason(run.outcome),
        "logprobs": None,
    }
    if with_ids:
        choice["prompt_token_ids"] = ids
        choice["token_ids"] = run.outcome.token_ids
    return JSONResponse(
        {**meta, "object": "text_completion", "choices": [choice], "usage": usage_json(run.outcome)}
    )


async def _completion_events(run: Run, meta: dict[str, Any], include_usage: bool, with_ids: bool):
    def chunk(text: str, finish: str | None = None, ids: list[int] | None = None) -> dict[str, str]:
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        if with_ids and ids is not None:
            choice["token_ids"] = ids
        return {"data": json.dumps({**meta, "object": "text_completion", "choices": [choice]})}

    sent = 0
    async for pieces in run.pieces():
        ids = run.outcome.token_ids
        yield chunk("".join(p.text for p in pieces if isinstance(p, TextDelta)), ids=ids[sent:])
        sent = len(ids)
    failure = _engine_failure(run.outcome)
    if failure is not None:
        yield {"data": json.dumps(openai_body(failure))}
        return
    yield chunk("", _finish_reason(run.outcome), ids=run.outcome.token_ids[sent:])
    if include_usage:
        usage = {**meta, "object": "text_completion", "choices": [], "usage": usage_json(run.outcome)}
        yield {"data": json.dumps(usage)}
    yield {"data": "[DONE]"}


# ---------------------------------------------------------------------- /tokenize (vLLM's shape)
async def tokenize(request: Request) -> JSONResponse:
    opened = await open_request(request)
    body, host = opened.body, opened.host
    if "messages" in body:
        messages = chat_messages(body.get("messages"))
        try:
            tools = tools_from_openai(body.get("tools"))
            text = render_prompt(
                messages,
                tools or None,
                add_generation_prompt=fields.flag(body, "add_generation_prompt", True),
            )
        except (MessageFormatError, RenderError) as exc:
            raise bad_request(str(exc)) from None
        ids = host.tokenizer.encode(text)
    else:
        ids = prompt_ids(body, host.tokenizer, host.model.args.vocab_size)
    return JSONResponse({"count": len(ids), "max_model_len": host.context_window, "tokens": ids})
