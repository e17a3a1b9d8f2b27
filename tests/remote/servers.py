"""Protocol servers for the remote-backend tests: real HTTP on 127.0.0.1 (port 0), one thread each.

A ScriptedServer speaks one dialect faithfully and replies from a script of M2 turns, choosing the
turn by the conversation it receives (the number of assistant messages, or of `]~b]ai` blocks in a
raw prompt), so a retried round gets the same reply. It records every request, keeps what it sent
in each round's reasoning form (`sent`), checks what comes back the way real servers do (Anthropic
signatures, tool-call ids, role order), and injects faults queued in `faults`, one per request.

Styles: inline (vLLM append-think: `<think>` + raw text in content), split (reasoning_content, or
`reasoning` with reasoning_field="reasoning"), minimax (MiniMax API: reasoning_details when the
request says reasoning_split, else inline `<think>\\n`), xml (a gateway with no tool parser: inline
reasoning and raw `<minimax:tool_call>` XML in content), bare (vLLM with neither parser: M2's raw text,
reasoning without `<think>`), completions (raw /v1/completions), anthropic.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.backends.m2.render import render_prompt
from agent.backends.messages import Message, ToolCall

CHAT_STYLES = ("inline", "split", "minimax", "xml", "bare")
SIZES = (1, 4, 2, 9, 3, 17, 5)  # delta sizes: tags, escapes and characters get cut everywhere


def pieces(text: str, sizes: tuple[int, ...] = SIZES) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(text):
        out.append(text[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return out


def count_tokens(text: str) -> int:
    """The test servers' tokenizer: words and single punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


@dataclass
class Reply:
    reasoning: str = ""
    content: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def xml_calls(calls: list[tuple[str, dict[str, Any]]]) -> str:
    out = ["<minimax:tool_call>\n"]
    for name, arguments in calls:
        out.append(f'<invoke name="{name}">\n')
        for key, value in arguments.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            out.append(f'<parameter name="{key}">{text}</parameter>\n')
        out.append("</invoke>\n")
    out.append("</minimax:tool_call>")
    return "".join(out)


def raw_completion(reply: Reply) -> str:
    """What M2 writes after `]~b]ai\\n<think>\\n`, laid out as the chat template renders it back."""
    text = reply.reasoning + "\n</think>\n\n" + reply.content
    if reply.calls:
        text += "\n" + xml_calls(reply.calls)
    return text


@dataclass
class Fault:
    status: int | None = None  # answer with this HTTP status and an error body
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    drop_after: int | None = None  # cut the connection after this many events (chunked body unfinished)
    close_after: int | None = None  # close cleanly after this many events (close-delimited body)
    malformed_at: int | None = None  # this event is replaced by broken JSON
    error_at: int | None = None  # an error event here, then a proper end of stream
    stall: bool = False  # send nothing until the client gives up
    endless: bool = False  # keep streaming until the client hangs up


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class Reject(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return (
        head + "data: " + (data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)) + "\n\n"
    )


class ScriptedServer:
    def __init__(
        self,
        style: str,
        script: list[Reply],
        *,
        model: str = "MiniMax-M2",
        reasoning_field: str = "reasoning_content",
        strip_reasoning: bool = False,  # replies carry no reasoning at all
        ignore_reasoning: bool = False,  # history reasoning accepted but dropped from the prompt
        reject_reasoning: bool = False,  # history reasoning refused with a 400
        tokenize: bool = True,  # serve vLLM's /tokenize
        usage: bool = True,
        context: int | None = None,  # refuse longer prompts as vLLM does (HTTP 400)
        by_order: bool = False,  # reply with the script's next turn, not the conversation's round
    ) -> None:
        self.style, self.script, self.model = style, script, model
        self.reasoning_field = reasoning_field
        self.strip_reasoning, self.ignore_reasoning, self.reject_reasoning = (
            strip_reasoning,
            ignore_reasoning,
            reject_reasoning,
        )
        self.tokenize, self.usage = tokenize, usage
        self.context, self.by_order, self.served = context, by_order, 0
        self.refused: list[int] = []  # prompt sizes refused as over the context
        self.faults: list[Fault | None] = []
        self.received: list[Received] = []
        self.sent: dict[int, Any] = {}  # round -> its reasoning as this server sent it
        self.disconnected = threading.Event()
        self._lock = threading.Lock()
        self.server_errors: list[BaseException] = []  # handler crashes other than hang-ups
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.scripted = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def generation_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.received if not r.path.endswith(("/tokenize", "/models"))]

    def next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.pop(0) if self.faults else None

    # ------------------------------------------------------------------ the server's view
    def to_messages(self, body: dict[str, Any]) -> tuple[list[Message], list[dict[str, Any]] | None]:
        if self.style == "anthropic":
            return self._anthropic_to_messages(body)
        messages = []
        for d in body.get("messages", []):
            d = dict(d)
            if d.get("role") == "assistant":
                reasoning = d.pop("reasoning_content", None) or d.pop("reasoning", None)
                details = d.pop("reasoning_details", None)
                if details:
                    reasoning = "".join(item["text"] for item in details)
                content = d.get("content") or ""
                if self.ignore_reasoning:
                    reasoning = None
                    d["content"] = content.split("</think>")[-1].lstrip("\n")
                d["reasoning_content"] = reasoning
            messages.append(Message.from_openai(d))
        return messages, body.get("tools")

    def _anthropic_to_messages(
        self, body: dict[str, Any]
    ) -> tuple[list[Message], list[dict[str, Any]] | None]:
        messages = [Message.system(body["system"])] if body.get("system") else []
        for turn in body.get("messages", []):
            blocks = (
                turn["content"]
                if isinstance(turn["content"], list)
                else [{"type": "text", "text": turn["content"]}]
            )
            if turn["role"] == "user":
                for b in blocks:
                    if b["type"] == "tool_result":
                        messages.append(Message.tool(b["content"], tool_call_id=b["tool_use_id"]))
                    elif b["type"] == "text":
                        messages.append(Message.user(b["text"]))
            else:
                reasoning = "".join(b["thinking"] for b in blocks if b["type"] == "thinking")
                text = "".join(b["text"] for b in blocks if b["type"] == "text")
                calls = [ToolCall(b["name"], b["input"], b["id"]) for b in blocks if b["type"] == "tool_use"]
                messages.append(
                    Message.assistant(text, None if self.ignore_reasoning else reasoning or None, calls)
                )
        tools = [{"name": t["name"], "parameters": t["input_schema"]} for t in body.get("tools") or []]
        return messages, tools or None

    def prompt(self, body: dict[str, Any]) -> str:
        if "prompt" in body:
            return body["prompt"]
        messages, tools = self.to_messages(body)
        return render_prompt(messages, tools)

    def round_of(self, body: dict[str, Any]) -> int:
        if "prompt" in body:
            return body["prompt"].count("]~b]ai\n") - 1
        return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")

    def sign(self, thinking: str) -> str:
        return base64.b64encode(hashlib.sha256(b"test-secret" + thinking.encode()).digest()).decode()

    # ------------------------------------------------------------------ checks real servers make
    def check(self, body: dict[str, Any]) -> None:
        if self.style == "anthropic":
            return self._check_anthropic(body)
        if "messages" not in body:
            return
        ids: set[str] = set()
        for i, m in enumerate(body["messages"]):
            if m.get("role") == "assistant":
                has_reasoning = any(m.get(k) for k in ("reasoning_content", "reasoning", "reasoning_details"))
                if self.reject_reasoning and (has_reasoning or "<think>" in (m.get("content") or "")):
                    raise Reject(400, f"messages[{i}]: reasoning is not supported in input messages")
                details = m.get("reasoning_details")
                if details is not None and not all(
                    isinstance(d, dict) and isinstance(d.get("text"), str) for d in details
                ):
                    raise Reject(400, f"messages[{i}].reasoning_details: invalid items")
                ids = {c["id"] for c in m.get("tool_calls") or []}
            elif m.get("role") == "tool" and m.get("tool_call_id") not in ids:
                raise Reject(
                    400, f"messages[{i}]: tool_call_id {m.get('tool_call_id')!r} answers no tool call"
                )

    def _check_anthropic(self, body: dict[str, Any]) -> None:
        turns = body.get("messages", [])
        if not turns or turns[0]["role"] != "user":
            raise Reject(400, "messages: first message must use the user role")
        for i, turn in enumerate(turns):
            if i and turn["role"] == turns[i - 1]["role"]:
                raise Reject(400, "messages: roles must alternate between user and assistant")
            if turn["role"] != "assistant":
                continue
            uses = {b["id"] for b in turn["content"] if b["type"] == "tool_use"}
            for j, b in enumerate(turn["content"]):
                if b["type"] != "thinking":
                    continue
                if self.reject_reasoning:
                    raise Reject(400, f"messages.{i}.content.{j}: thinking blocks are not accepted")
                if b.get("signature") != self.sign(b["thinking"]):
                    raise Reject(400, f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
            if uses:
                following = turns[i + 1]["content"] if i + 1 < len(turns) else []
                answered = {b["tool_use_id"] for b in following if b["type"] == "tool_result"}
                if not uses <= answered:
                    raise Reject(
                        400, f"messages.{i + 1}: tool_use ids {sorted(uses - answered)} have no tool_result"
                    )

    # ------------------------------------------------------------------ replies
    def frames(self, path: str, body: dict[str, Any]) -> list[str]:
        self.check(body)
        prompt_tokens = count_tokens(self.prompt(body))
        if self.context is not None:
            wanted = body.get("max_tokens") or 0
            if prompt_tokens + wanted > self.context:
                self.refused.append(prompt_tokens)
                raise Reject(
                    400,
                    f"This model's maximum context length is {self.context} tokens. However, you requested "
                    f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the messages, {wanted} in the "
                    "completion). Please reduce the length of the messages or completion.",
                    "BadRequestError",
                )
        round_ = self.served if self.by_order else self.round_of(body)
        if round_ >= len(self.script):
            raise Reject(400, f"the test script has no round {round_}")
        self.served += 1
        reply = self.script[round_]
        if self.strip_reasoning:
            reply = Reply("", reply.content, reply.calls)
        raw = raw_completion(reply)
        usage = (prompt_tokens, count_tokens(raw), count_tokens(reply.reasoning))
        if path.endswith("/messages") and self.style == "anthropic":
            return self._anthropic(reply, round_, usage)
        if path.endswith("/chat/completions") and self.style in CHAT_STYLES:
            return self._chat(reply, round_, usage, body)
        if path.endswith("/completions") and self.style == "completions":
            return self._completions(reply, round_, usage, body)
        raise Reject(404, f"no route {path} on this {self.style} server", "not_found_error")

    def _chat(
        self, reply: Reply, round_: int, usage: tuple[int, int, int], body: dict[str, Any]
    ) -> list[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return sse(
                {
                    "id": f"chatcmpl-{round_}",
                    "object": "chat.completion.chunk",
                    "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        frames = [chunk({"role": "assistant", "content": ""})]
        style, reasoning, content = self.style, reply.reasoning, reply.content
        details_mode = style == "minimax" and body.get("reasoning_split")
        if style == "bare":
            head = raw_completion(reply)  # no parsers at all: M2's raw text, calls included
        elif not reasoning:
            head = content
        elif style == "inline":
            head = "<think>" + reasoning + "\n</think>\n\n" + content  # vLLM: "<think>" + raw output
        elif style in ("minimax", "xml") and not details_mode:
            head = "<think>\n" + reasoning + "\n</think>\n\n" + content
        else:
            head = ("\n\n" if style == "split" else "") + content
        if style == "xml" and reply.calls:  # a tool parser would have taken these out
            head += "\n" + xml_calls(reply.calls)
        if reasoning and style == "split":
            frames += [chunk({self.reasoning_field: p}) for p in pieces(reasoning)]
            self.sent[round_] = reasoning
        elif reasoning and details_mode:
            item = {
                "type": "reasoning.text",
                "id": "reasoning-text-1",
                "format": "MiniMax-response-v1",
                "index": 0,
            }
            frames += [chunk({"reasoning_details": [{**item, "text": p}]}) for p in pieces(reasoning)]
            self.sent[round_] = [{**item, "text": reasoning}]
        elif reasoning:
            self.sent[round_] = head[: head.index("</think>") + len("</think>\n\n")]
        frames += [chunk({"content": p}) for p in pieces(head)]
        if style not in ("xml", "bare"):
            for index, (name, arguments) in enumerate(reply.calls):
                call_id = f"call_{round_}_{index}"
                first = {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                frames.append(chunk({"tool_calls": [first]}))
                for p in pieces(json.dumps(arguments), (3, 1, 7, 2)):
                    frames.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]}))
        frames.append(chunk({}, "tool_calls" if reply.calls else "stop"))
        if self.usage and (body.get("stream_options") or {}).get("include_usage"):
            frames.append(sse({"id": f"chatcmpl-{round_}", "choices": [], "usage": _openai_usage(*usage)}))
        return frames + ["data: [DONE]\n\n"]

    def _completions(
        self, reply: Reply, round_: int, usage: tuple[int, int, int], body: dict[str, Any]
    ) -> list[str]:
        raw = raw_completion(reply)
        self.sent[round_] = raw

        def chunk(text: str, finish: str | None = None) -> str:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            return sse(
                {
                    "id": f"cmpl-{round_}",
                    "object": "text_completion",
                    "model": self.model,
                    "choices": [choice],
                }
            )

        frames = [chunk(p) for p in pieces(raw)] + [chunk("", "stop")]
        if self.usage and (body.get("stream_options") or {}).get("include_usage"):
            frames.append(sse({"id": f"cmpl-{round_}", "choices": [], "usage": _openai_usage(*usage)}))
        return frames + ["data: [DONE]\n\n"]

    def _anthropic(self, reply: Reply, round_: int, usage: tuple[int, int, int]) -> list[str]:
        prompt_tokens, output_tokens, _ = usage
        message = {
            "id": f"msg_{round_}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
        }
        frames = [
            sse({"type": "message_start", "message": message}, "message_start"),
            sse({"type": "ping"}, "ping"),
        ]
        index = 0

        def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
            nonlocal index
            frames.append(
                sse(
                    {"type": "content_block_start", "index": index, "content_block": start},
                    "content_block_start",
                )
            )
            for d in deltas:
                frames.append(
                    sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta")
                )
            frames.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
            index += 1

        if reply.reasoning:
            signature = self.sign(reply.reasoning)
            self.sent[round_] = {"type": "thinking", "thinking": reply.reasoning, "signature": signature}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(reply.reasoning)]
            half = len(signature) // 2
            deltas += [
                {"type": "signature_delta", "signature": s} for s in (signature[:half], signature[half:])
            ]
            block({"type": "thinking", "thinking": ""}, deltas)
        if reply.content:
            block(
                {"type": "text", "text": ""},
                [{"type": "text_delta", "text": p} for p in pieces(reply.content)],
            )
        for i, (name, arguments) in enumerate(reply.calls):
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [
                {"type": "input_json_delta", "partial_json": p}
                for p in pieces(json.dumps(arguments), (2, 5, 1))
            ]
            block({"type": "tool_use", "id": f"toolu_{round_}_{i}", "name": name, "input": {}}, deltas)
        stop = "tool_use" if reply.calls else "end_turn"
        delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}}
        if self.usage:
            delta["usage"] = {"output_tokens": output_tokens}
        frames.append(sse(delta, "message_delta"))
        return frames + [sse({"type": "message_stop"}, "message_stop")]

    def error_frame(self) -> str:
        if self.style == "anthropic":
            return sse(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"
            )
        return sse({"error": {"message": "The server is overloaded", "type": "server_error", "code": 503}})


def _openai_usage(prompt: int, completion: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a client hanging up is what some tests do
            self.scripted.server_errors.append(error)  # type: ignore[attr-defined]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    @property
    def scripted(self) -> ScriptedServer:
        return self.server.scripted

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": self.scripted.model, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found_error"}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            return self._json(
                400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}}
            )
        server = self.scripted
        with server._lock:
            server.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path == "/tokenize":
            return self._tokenize(body)
        fault = server.next_fault() or Fault()
        if fault.status:
            error = {
                "message": f"injected HTTP {fault.status}",
                "type": "overloaded_error",
                "code": fault.status,
            }
            return self._json(
                fault.status, fault.body if fault.body is not None else {"error": error}, fault.headers
            )
        if fault.stall:
            return self._stall()
        try:
            frames = server.frames(self.path, body)
        except Reject as exc:
            return self._json(
                exc.status, {"type": "error", "error": {"type": exc.kind, "message": exc.message}}
            )
        self._stream(frames, fault)

    def _tokenize(self, body: dict[str, Any]) -> None:
        server = self.scripted
        if not server.tokenize or server.style == "anthropic":
            return self._json(404, {"detail": "Not Found"})
        prompt = server.prompt(body)
        window = server.context or 196608
        self._json(200, {"count": count_tokens(prompt), "max_model_len": window, "tokens": []})

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, frames: list[str], fault: Fault) -> None:
        close_delimited = fault.close_after is not None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        if close_delimited:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if fault.endless:
                return self._endless(frames)
            for i, frame in enumerate(frames):
                if i == fault.drop_after:
                    return self._cut()
                if i == fault.close_after:
                    return
                if i == fault.error_at:
                    frame = self.scripted.error_frame()
                elif i == fault.malformed_at:
                    frame = 'data: {"choices": [{"index": 0, "delta": {"content": "lost\n\n'
                self._write(frame.encode(), raw=close_delimited)
                if i == fault.error_at:
                    break
            if not close_delimited:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def _write(self, data: bytes, raw: bool) -> None:
        # Each event goes out in two writes cut mid-way (maybe inside a UTF-8 character).
        cut = len(data) // 2
        for part in (data[:cut], data[cut:]):
            self.wfile.write(part if raw else b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()

    def _cut(self) -> None:
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _endless(self, frames: list[str]) -> None:
        deadline = time.monotonic() + 30
        try:
            for frame in frames[:4]:
                self._write(frame.encode(), raw=False)
            while time.monotonic() < deadline:
                self._write(frames[3].encode(), raw=False)
                time.sleep(0.01)
        except OSError:
            self.scripted.disconnected.set()
        self.close_connection = True

    def _stall(self) -> None:
        """Say nothing until the client hangs up (its read timeout)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        break
                except OSError:
                    break
        self.scripted.disconnected.set()
        self.close_connection = True
