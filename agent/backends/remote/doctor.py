"""`mmx-agent doctor`: does this endpoint keep M2's thinking between tool rounds?

Two rounds with a tiny `add` tool. Round 1 must come back with reasoning and a call; round 2 sends
round 1 back (reasoning included, in the endpoint's own form) with the tool's result. What can be
checked, and what each check proves:
- client side, always: the round-2 request carried round 1's reasoning byte for byte, in the form
  the endpoint uses (we read the request body we actually sent);
- server side, the endpoint accepted that request and answered;
- server side, where the server shows it: a vLLM-style `/tokenize` of the round-2 messages with and
  without the reasoning (equal counts: the server's template drops it), and the token accounting
  (the round-2 prompt should have grown by about everything round 1 wrote, reasoning included).
Whether the model attends to what it is shown cannot be observed from outside; the report says so.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.backends.base import BackendError, GenerationParams
from agent.backends.m2.parse import parse_completion
from agent.backends.messages import Message, ToolCall
from agent.backends.remote.anthropic import THINKING_BLOCKS
from agent.backends.remote.completions import RENDERED_PROMPT
from agent.backends.remote.http import RemoteBackend
from agent.backends.remote.reasoning_forms import details_reasoning, render_inline
from agent.backends.rounds import Round, collect
from agent.exit_codes import ExitCode

ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers and return their sum.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
SYSTEM = "You are checking that your tools work. Always use the add tool for arithmetic."
QUESTION = "What is 17 + 25? Use the add tool, then answer with the number only."
MIN_REASONING_TOKENS = 40  # below this, token counts cannot tell kept reasoning from dropped
MODE_NAMES = {
    "inline": "inline <think>...</think> in the content",
    "reasoning_content": "a separate reasoning_content field",
    "reasoning_details": "MiniMax reasoning_details items",
    RENDERED_PROMPT: "raw completions: this client renders the reasoning into the prompt",
    THINKING_BLOCKS: "Anthropic thinking blocks",
}


@dataclass
class Check:
    name: str
    status: str  # pass | fail | skip | info
    detail: str


@dataclass
class DoctorReport:
    backend: str
    base_url: str
    model: str
    reasoning_mode: str | None = None
    checks: list[Check] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    not_verified: list[str] = field(default_factory=list)
    unreachable: bool = False  # the endpoint could not be used at all (exit status 5)
    confinement: str | None = None  # bwrap | landlock | none | docker: what would confine the shell

    @property
    def ok(self) -> bool:
        return not self.unreachable and all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        if self.ok:
            return ExitCode.OK
        return ExitCode.BACKEND_UNAVAILABLE if self.unreachable else ExitCode.ERROR

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "exit_code": self.exit_code}

    def render(self) -> str:
        lines = [f"mmx-agent doctor: {self.backend} at {self.base_url}, model {self.model or '?'}"]
        width = max((len(c.name) for c in self.checks), default=0)
        lines += [f"  {c.status.upper():<4}  {c.name:<{width}}  {c.detail}" for c in self.checks]
        if self.verified:
            lines.append("verified:")
            lines += [f"  - {v}" for v in self.verified]
        if self.not_verified:
            lines.append("not verified:")
            lines += [f"  - {v}" for v in self.not_verified]
        if self.ok:
            lines.append("result: OK, the thinking round-trips through this endpoint")
        else:
            lines.append("result: FAILED, see the FAIL lines above")
        return "\n".join(lines)


def _collect(backend: RemoteBackend, messages: list[Message], tools: list[dict[str, Any]]) -> Round:
    return collect(backend.stream(messages, tools, GenerationParams(max_tokens=4096)))


def run_doctor(backend: RemoteBackend, strict: bool = False) -> DoctorReport:
    report = DoctorReport(backend.name, backend.base_url, backend.model)
    tools = [ADD_TOOL]
    messages = [Message.system(SYSTEM), Message.user(QUESTION)]
    first = None
    for _ in range(2):  # a model may answer in its head once; ask again before giving up
        try:
            first = _collect(backend, messages, tools)
        except BackendError as exc:
            report.model = backend.model
            report.unreachable = True
            report.add("connect", "fail", str(exc))
            return report
        if first.tool_calls:
            break
    assert first is not None
    report.model = backend.model
    mode = backend.last_round.mode
    report.reasoning_mode = mode
    report.add("connect", "pass", f"round 1 streamed ({_attempts(first.attempt)})")
    if not first.reasoning:
        report.add(
            "reasoning",
            "fail",
            "round 1 came back without any reasoning: this endpoint strips M2's thinking, so there is "
            "nothing to send back (vLLM/SGLang: serve M2 with its reasoning parser, or none; gateways: "
            "turn off reasoning stripping)",
        )
        return report
    form = MODE_NAMES.get(mode or "", mode)
    if backend.bare_think:
        form = "M2's raw text, reasoning without <think> (the server runs no reasoning parser)"
    report.add("reasoning", "pass", f"{len(first.reasoning)} characters, as {form}")
    call = next((c for c in first.tool_calls if c.name == "add"), None)
    if call is None:
        report.add(
            "tool call", "fail", "the model did not call the add tool, so no tool round could be tested"
        )
        return report
    report.add("tool call", "pass", f"add({json.dumps(call.arguments)})")

    items = backend.last_reasoning_details
    messages.append(
        Message(
            "assistant",
            first.text,
            reasoning=first.reasoning,
            tool_calls=[ToolCall(c.name, c.arguments, c.id) for c in first.tool_calls],
            reasoning_details=items,
        )
    )
    for c in first.tool_calls:
        messages.append(
            Message.tool(_run_add(c.arguments) if c.name == "add" else "unknown tool", c.id, c.name)
        )
    try:
        second = _collect(backend, messages, tools)
        accepted_error = None
    except BackendError as exc:
        second, accepted_error = None, str(exc)
    sent = copy.deepcopy(backend.last_request) or {}
    form_ok, form_detail = _reasoning_in_request(backend, sent, first.reasoning, items, mode)
    report.add("sent back", "pass" if form_ok else "fail", form_detail)
    if form_ok:
        report.verified.append(
            f"client: the round-2 request carried round 1's reasoning byte for byte ({form_detail})"
        )
    if accepted_error is not None:
        report.add(
            "accepted",
            "fail",
            f"the server rejected the request carrying round 1's reasoning: {accepted_error}",
        )
        return report
    assert second is not None
    answer = (second.text or "").strip()
    report.add("accepted", "pass", f"round 2 answered {answer[:60]!r} ({_attempts(second.attempt)})")
    report.verified.append("server: accepted that request and answered it")

    server_side = [_tokenize_check(backend, sent, mode), _usage_check(first, second)]
    for name, status, detail in server_side:
        report.add(name, status, detail)
        if status == "pass":
            report.verified.append(f"server: {detail}")
        elif status in ("skip", "info"):
            report.not_verified.append(f"{name}: {detail}")
    if mode == RENDERED_PROMPT:
        report.verified.append(
            "server: receives the prompt this client rendered, reasoning included, verbatim"
        )
    elif strict and not any(s == "pass" for _, s, _ in server_side):
        report.add(
            "strict", "fail", "--strict: nothing on the server side confirmed that the reasoning is used"
        )
    report.not_verified.append(
        "whether the model attends to the reasoning it is shown (not observable from outside)"
    )
    return report


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def _run_add(arguments: dict[str, Any]) -> str:
    try:
        return str(int(arguments["a"]) + int(arguments["b"]))
    except (KeyError, TypeError, ValueError):
        return "error: add needs integers a and b"


def _last_assistant(body: dict[str, Any]) -> dict[str, Any] | None:
    turns = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "assistant"]
    return turns[-1] if turns else None


def _reasoning_in_request(
    backend: RemoteBackend,
    body: dict[str, Any],
    reasoning: str,
    items: list[dict[str, Any]] | None,
    mode: str | None,
) -> tuple[bool, str]:
    """Whether the request body we sent holds `reasoning` exactly, in the endpoint's form."""
    if mode == RENDERED_PROMPT:
        ok = f"<think>\n{reasoning}\n</think>" in (body.get("prompt") or "")
        return ok, "inside the rendered prompt" if ok else "the rendered prompt lacks round 1's reasoning"
    turn = _last_assistant(body)
    if turn is None:
        return False, "the round-2 request has no assistant message"
    if mode == THINKING_BLOCKS:
        blocks = [b for b in turn.get("content") or [] if b.get("type") in ("thinking", "redacted_thinking")]
        ok = bool(items) and blocks == items
        signed = all("signature" in b for b in blocks if b.get("type") == "thinking")
        detail = (
            "as the thinking blocks received, signatures included"
            if signed
            else "as thinking blocks (unsigned)"
        )
        return ok, detail if ok else "the thinking blocks sent differ from those received"
    if mode == "reasoning_details":
        sent = turn.get("reasoning_details")
        ok = isinstance(sent, list) and details_reasoning(sent) == reasoning and (not items or sent == items)
        return ok, "as the reasoning_details received" if ok else "reasoning_details missing or altered"
    if mode == "reasoning_content":
        field_name = backend.split_field
        ok = turn.get(field_name) == reasoning
        return ok, f"in the {field_name} field" if ok else f"the {field_name} field is missing or altered"
    content = turn.get("content") if isinstance(turn.get("content"), str) else ""
    prefix = items[0]["text"] if items else render_inline(reasoning)
    ok = content.startswith(prefix) and parse_completion(content).reasoning == reasoning
    return (
        ok,
        "inline at the head of the content, as received" if ok else "the content lacks the <think> block",
    )


def _strip_reasoning(messages: list[dict[str, Any]], mode: str | None) -> list[dict[str, Any]]:
    out = copy.deepcopy(messages)
    for m in out:
        if m.get("role") != "assistant":
            continue
        for key in ("reasoning_content", "reasoning", "reasoning_details"):
            m.pop(key, None)
        if mode == "inline" and isinstance(m.get("content"), str) and "</think>" in m["content"]:
            m["content"] = m["content"].split("</think>", 1)[1].lstrip("\n")
    return out


def _tokenize_check(backend: RemoteBackend, body: dict[str, Any], mode: str | None) -> tuple[str, str, str]:
    """vLLM's /tokenize renders messages with the server's own chat template: compare the counts."""
    name = "server template"
    if backend.kind != "openai-chat" or not body.get("messages"):
        return name, "skip", "no /tokenize probe for this kind of endpoint"
    root = backend.base_url[: -len("/v1")] if backend.base_url.endswith("/v1") else backend.base_url
    counts = []
    for messages in (body["messages"], _strip_reasoning(body["messages"], mode)):
        try:
            status, data = backend.post_json(
                f"{root}/tokenize", {"model": backend.model, "messages": messages}
            )
        except BackendError:
            status, data = 0, None
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("count"), int):
            return name, "skip", "the server has no vLLM-style /tokenize to show how it renders messages"
        counts.append(data["count"])
    with_it, without = counts
    if with_it > without:
        return (
            name,
            "pass",
            f"its chat template renders the reasoning (/tokenize: {with_it} tokens with it, {without} without)",
        )
    return (
        name,
        "fail",
        f"its chat template drops the reasoning it is sent (/tokenize: {with_it} tokens with it and without)",
    )


def _usage_check(first: Round, second: Round) -> tuple[str, str, str]:
    """The round-2 prompt should grow by about all that round 1 wrote; dropped reasoning shows as a gap."""
    name = "token accounting"
    u1, u2 = first.usage, second.usage
    if u1 is None or u2 is None or not u1.input_tokens or not u2.input_tokens or not u1.output_tokens:
        return name, "skip", "the server reported no token usage"
    reasoning = u1.reasoning_tokens or len(first.reasoning) // 4
    growth, written = u2.input_tokens - u1.input_tokens, u1.output_tokens
    summary = f"the round-2 prompt grew by {growth} tokens; round 1 wrote {written}, about {reasoning} of them reasoning"
    if reasoning < MIN_REASONING_TOKENS:
        return name, "info", f"inconclusive: {summary} (too little reasoning to tell)"
    if written - growth > reasoning / 2:
        return name, "fail", f"{summary}: the server seems to drop the reasoning from the prompt"
    return name, "pass", f"the token counts fit the reasoning being kept ({summary})"
