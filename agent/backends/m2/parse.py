"""Incremental parser for raw completions, M2 (and M1) dialect.

Fed the text the model writes after the generation prompt (`]~b]ai\\n<think>\\n` for M2), in chunks
of any size, it emits typed events: reasoning and text deltas as they become certain, a tool call
when its `</invoke>` arrives, and FormatError events worded for the model. After merging adjacent
deltas, the events do not depend on how the text was chunked. It never raises.

Layout rules mirror the renderer: reasoning and content lose their leading and trailing newlines
(the template writes `<think>\\n` + reasoning + `\\n</think>\\n\\n` + content + `\\n<minimax:tool_call>`).

Malformed output is repaired when that is safe and reported otherwise:
- a tool-call block left open at the end: complete calls stand; a call cut inside a parameter is
  reported and not run; a call whose parameters all closed but whose `</invoke>` is missing is run;
- tags missing their `<` inside a tool-call block (and `minimax:tool_call>` itself) are accepted;
- a literal `</parameter>` inside a value (an XML file, say) does not end the value unless what
  follows is another parameter, `</invoke>` or the end of the block;
- calls to tools that do not exist are reported with the list of real tools;
- `<think>...</think>` leaking into the content goes back to the reasoning; stray `</think>` dropped;
- tool-call XML inside the reasoning is reasoning, not a call; if the output ends still inside the
  reasoning with such XML in it, the model is told that nothing was run;
- garbage inside a tool-call block is reported; garbage outside one is just text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from agent.backends.events import (
    BackendEvent,
    FormatError,
    ReasoningDelta,
    StreamEnd,
    TextDelta,
    ToolCallEvent,
)
from agent.backends.m2.arguments import coerce_value, parameter_types, strip_value_newlines
from agent.backends.messages import MessageFormatError, tools_from_openai

_NAME = r"""\s*=\s*(?:"([^"\n]*)"|'([^'\n]*)'|([^\s>"']+))\s*>"""
_LONGEST_TAG = 256  # bytes of undecided text kept while waiting for a tag to complete


def _partial_re(tags: list[str]) -> re.Pattern[str]:
    """Matches a proper prefix of any tag at the very end of the text (what may still become a tag)."""
    prefixes = {tag[:k] for tag in tags for k in range(1, len(tag))}
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    return re.compile(f"(?:{alternatives})\\Z")


@dataclass
class _Dialect:
    end_marker: str
    content_tags: re.Pattern[str]  # what ends a stretch of visible text
    content_partial: re.Pattern[str]
    block_open: tuple[str, ...]  # content tags that open a tool-call block


M2 = _Dialect(
    end_marker="[e~[",
    content_tags=re.compile(
        r"<minimax:tool_call>|<?/minimax:tool_call>|(?<![</])minimax:tool_call>|<think>|</think>"
    ),
    content_partial=_partial_re(
        [
            "<minimax:tool_call>",
            "</minimax:tool_call>",
            "/minimax:tool_call>",
            "minimax:tool_call>",
            "<think>",
            "</think>",
        ]
    ),
    block_open=("<minimax:tool_call>", "minimax:tool_call>"),
)
M1 = _Dialect(
    end_marker="<end_of_sentence>",
    content_tags=re.compile(r"<tool_calls>|</tool_calls>|<think>|</think>"),
    content_partial=_partial_re(["<tool_calls>", "</tool_calls>", "<think>", "</think>"]),
    block_open=("<tool_calls>",),
)

_THINK_CLOSE = re.compile(r"</think>")
_THINK_CLOSE_PARTIAL = _partial_re(["</think>"])
_BLOCK_ITEM = re.compile(rf"<?invoke\s+name{_NAME}|<?/minimax:tool_call>|<minimax:tool_call>")
_INVOKE_ITEM = re.compile(
    rf"<?parameter\s+name{_NAME}|<?/invoke>|<?/minimax:tool_call>|(?P<next><?invoke\s+name{_NAME})"
)
_PARAM_CLOSE = re.compile(r"<?/parameter>")
_PARAM_CLOSE_LEN = len("</parameter>")
_AFTER_PARAM = re.compile(
    r"\s*(?:<?parameter\s+name\s*=|<?/invoke>|<?/minimax:tool_call>|<?invoke\s+name\s*=)"
)
_AFTER_PARAM_PREFIXES = (
    "<parameter name=",
    "parameter name=",
    "</invoke>",
    "/invoke>",
    "</minimax:tool_call>",
    "/minimax:tool_call>",
    "<invoke name=",
    "invoke name=",
)
_M1_BLOCK_CLOSE = re.compile(r"</tool_calls>")
_M1_BLOCK_CLOSE_PARTIAL = _partial_re(["</tool_calls>"])


def _group_name(match: re.Match[str], first_group: int) -> str:
    return next((g for g in match.groups()[first_group : first_group + 3] if g is not None), "")


@dataclass
class _Section:
    """One stream of visible deltas (reasoning or content) with newline trimming at its edges."""

    kind: type  # ReasoningDelta or TextDelta
    parts: list[str] = field(default_factory=list)
    started: bool = False  # emitted any non-newline text in the current stretch
    pending: str = ""  # trailing newlines held back until we know more text follows

    def open_stretch(self) -> None:
        """A new stretch (after a tool-call block, or a leaked think block) starts fresh."""
        self.started = False
        self.pending = ""

    def emit(self, text: str, out: list[BackendEvent]) -> None:
        if not text:
            return
        if not self.started:
            text = text.lstrip("\n")
            if not text:
                return
            if self.parts:  # joining a new stretch onto earlier text of the same kind
                text = "\n" + text
        body = text.rstrip("\n")
        if not body:
            self.pending += text
            return
        delta = self.pending + body
        self.pending = text[len(body) :]
        self.started = True
        self.parts.append(delta)
        out.append(self.kind(delta))

    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class _PendingCall:
    name: str
    raw: dict[str, str] = field(default_factory=dict)
    raw_text: list[str] = field(default_factory=list)


class CompletionParser:
    """Feed raw completion text with `feed`; call `finish` once at the end."""

    def __init__(self, tools: list[dict[str, Any]] | None = None, *, dialect: str = "m2") -> None:
        if dialect not in ("m2", "m1"):
            raise ValueError(f"unknown dialect {dialect!r}: expected 'm2' or 'm1'")
        self._dialect = M2 if dialect == "m2" else M1
        try:
            functions = [t["function"] for t in tools_from_openai(tools)]
        except MessageFormatError:
            functions, tools = [], None  # unusable tool list: parse without checking names
        self._known_tools = None if tools is None else [f["name"] for f in functions]
        self._param_types = {f["name"]: parameter_types(f) for f in functions}
        self._buf = ""
        self._stopped = False  # the end marker was seen: ignore the rest
        self._finished = False
        self._state = "reasoning" if dialect == "m2" else "start"
        self._reasoning = _Section(ReasoningDelta)
        self._content = _Section(TextDelta)
        self._leaked_think = False  # inside <think> that appeared in the content
        self._think_prefix_checked = False
        self._call: _PendingCall | None = None
        self._param_name = ""
        self._param_parts: list[str] = []
        self._param_scan = 0  # where to look for the next `</parameter>` in the buffer
        self._garbage: list[str] = []
        self._calls: list[ToolCallEvent] = []
        self._errors: list[str] = []

    # ----------------------------------------------------------------- public API
    def feed(self, chunk: str) -> list[BackendEvent]:
        out: list[BackendEvent] = []
        if self._stopped or self._finished or not chunk:
            return out
        try:
            if self._fast_path(chunk, out):
                return out
            self._buf += chunk
            self._cut_at_end_marker()
            self._run(out, eof=False)
        except Exception as exc:  # the contract is: never raise on any input
            self._internal_error(exc, out)
        return out

    def finish(self) -> list[BackendEvent]:
        out: list[BackendEvent] = []
        if self._finished:
            return out
        self._finished = True
        try:
            self._run(out, eof=True)
            self._finish_state(out)
        except Exception as exc:
            self._internal_error(exc, out)
        out.append(StreamEnd("tool_calls" if self._calls else "stop"))
        return out

    @property
    def reasoning(self) -> str:
        return self._reasoning.text()

    @property
    def content(self) -> str:
        return self._content.text()

    @property
    def tool_calls(self) -> list[ToolCallEvent]:
        return list(self._calls)

    @property
    def errors(self) -> list[str]:
        return list(self._errors)

    # ----------------------------------------------------------------- driving
    def _cut_at_end_marker(self) -> None:
        marker = self._dialect.end_marker
        at = self._buf.find(marker)
        if at >= 0:
            self._buf = self._buf[:at]
            self._stopped = True

    def _held_for_end_marker(self) -> int:
        """Chars at the end that may be the start of the end marker (held back until known)."""
        if self._stopped:
            return 0
        marker = self._dialect.end_marker
        if marker[0] not in self._buf[-(len(marker) - 1) :]:
            return 0  # the common case, checked cheaply
        for k in range(min(len(marker) - 1, len(self._buf)), 0, -1):
            if self._buf.endswith(marker[:k]):
                return k
        return 0

    def _fast_path(self, chunk: str, out: list[BackendEvent]) -> bool:
        """Most chunks (inside a long value or long reasoning) cannot touch a tag: skip the scanner."""
        marker_start = self._dialect.end_marker[0]
        if self._state == "param":
            if "/" in chunk or marker_start in chunk or chunk.endswith("<"):
                return False
            if "/" in self._buf or marker_start in self._buf:
                return False
            self._param_parts.append(self._buf + chunk)
            self._buf = ""
            self._param_scan = 0
            return True
        if self._state == "reasoning" and not self._buf and self._think_prefix_checked:
            if "<" in chunk or marker_start in chunk:
                return False
            self._reasoning.emit(chunk, out)
            return True
        return False

    def _run(self, out: list[BackendEvent], eof: bool) -> None:
        eof = eof or self._stopped
        held = 0 if eof else self._held_for_end_marker()
        if held:
            tail, self._buf = self._buf[-held:], self._buf[:-held]
        else:
            tail = ""
        step = getattr(self, f"_step_{self._state}")
        while step(out, eof):
            step = getattr(self, f"_step_{self._state}")
        self._buf += tail

    def _internal_error(self, exc: Exception, out: list[BackendEvent]) -> None:
        message = f"internal parser error ({type(exc).__name__}: {exc}); the rest of the output was ignored"
        self._errors.append(message)
        out.append(FormatError(message))
        self._buf = ""
        self._stopped = True

    def _error(
        self, message: str, out: list[BackendEvent], raw: str = "", call: _PendingCall | None = None
    ) -> None:
        self._errors.append(message)
        name, arguments = (call.name, dict(call.raw)) if call is not None else (None, None)
        out.append(FormatError(message, raw=raw[:2000], name=name, arguments=arguments))

    # ----------------------------------------------------------------- reasoning / content
    def _step_start(self, out: list[BackendEvent], eof: bool) -> bool:
        """M1 only: the reply may or may not open with <think>."""
        head = self._buf.lstrip()
        if head.startswith("<think>"):
            self._buf = head[len("<think>") :]
            self._state = "reasoning"
            return True
        if not eof and "<think>".startswith(head):
            return False
        self._state = "content"
        return True

    def _step_reasoning(self, out: list[BackendEvent], eof: bool) -> bool:
        if not self._think_prefix_checked:
            # Some servers echo the opening <think>; it is not part of the reasoning.
            head = self._buf.lstrip("\n")
            if head.startswith("<think>"):
                self._buf = head[len("<think>") :]
            elif not eof and "<think>".startswith(head):
                return False
            self._think_prefix_checked = True
        return self._scan_text(self._reasoning, _THINK_CLOSE, _THINK_CLOSE_PARTIAL, out, eof)

    def _step_content(self, out: list[BackendEvent], eof: bool) -> bool:
        if self._leaked_think:
            return self._scan_text(self._reasoning, _THINK_CLOSE, _THINK_CLOSE_PARTIAL, out, eof)
        return self._scan_text(
            self._content, self._dialect.content_tags, self._dialect.content_partial, out, eof
        )

    def _scan_text(
        self,
        section: _Section,
        tags: re.Pattern[str],
        partial: re.Pattern[str],
        out: list[BackendEvent],
        eof: bool,
    ) -> bool:
        buf = self._buf
        match = tags.search(buf)
        if match is None:
            hold = len(buf)
            if not eof:
                tail = partial.search(buf, max(0, len(buf) - _LONGEST_TAG))
                hold = tail.start() if tail else len(buf)
            section.emit(buf[:hold], out)
            self._buf = buf[hold:]
            return False
        section.emit(buf[: match.start()], out)
        self._buf = buf[match.end() :]
        self._on_tag(match.group(0), out)
        return True

    def _on_tag(self, tag: str, out: list[BackendEvent]) -> None:
        if tag == "</think>":
            if self._state == "reasoning":
                self._state = "content"
            elif self._leaked_think:
                self._leaked_think = False
            # a stray </think> in the content is dropped
        elif tag == "<think>":
            # Reasoning leaking into the visible text: route it back to the reasoning.
            self._leaked_think = True
            self._reasoning.open_stretch()
        elif tag in self._dialect.block_open:
            self._content.pending = ""  # the newline before a block is layout
            self._state = "block" if self._dialect is M2 else "m1_block"
            self._garbage = []
        # stray closing tags of a tool-call block are dropped

    # ----------------------------------------------------------------- M2 tool-call blocks
    def _step_block(self, out: list[BackendEvent], eof: bool) -> bool:
        match = self._next_item(_BLOCK_ITEM, eof)
        if match is None:
            return False
        tag = match.group(0)
        if tag.endswith("/minimax:tool_call>"):
            self._close_block(out)
        elif tag != "<minimax:tool_call>":  # a repeated opener is ignored
            self._call = _PendingCall(_group_name(match, 0))
            self._state = "invoke"
        return True

    def _step_invoke(self, out: list[BackendEvent], eof: bool) -> bool:
        match = self._next_item(_INVOKE_ITEM, eof)
        if match is None:
            return False
        tag = match.group(0)
        if match.group("next") is not None:  # a new <invoke> before </invoke>: close the open one
            self._finish_call(out)
            self._call = _PendingCall(_group_name(match, 4))
        elif tag.endswith("/invoke>"):
            self._finish_call(out)
            self._state = "block"
        elif tag.endswith("/minimax:tool_call>"):
            self._finish_call(out)
            self._close_block(out)
        else:
            self._param_name = _group_name(match, 0)
            self._param_parts = []
            self._param_scan = 0
            self._state = "param"
        return True

    def _next_item(self, pattern: re.Pattern[str], eof: bool) -> re.Match[str] | None:
        """The next structural tag; text before it inside a block is garbage."""
        match = pattern.search(self._buf)
        if match is None:
            keep = 0 if eof else min(len(self._buf), _LONGEST_TAG)
            self._add_garbage(self._buf[: len(self._buf) - keep])
            self._buf = self._buf[len(self._buf) - keep :]
            return None
        self._add_garbage(self._buf[: match.start()])
        self._buf = self._buf[match.end() :]
        return match

    def _add_garbage(self, text: str) -> None:
        if text.strip():
            self._garbage.append(text)
            if self._call is not None:
                self._call.raw_text.append(text)

    def _step_param(self, out: list[BackendEvent], eof: bool) -> bool:
        buf = self._buf
        while True:
            match = _PARAM_CLOSE.search(buf, self._param_scan)
            if match is None:
                break
            rest = buf[match.end() :]
            if _AFTER_PARAM.match(rest) or (eof and not rest.strip()):
                self._param_parts.append(buf[: match.start()])
                self._buf = rest
                self._close_param()
                return True
            head = rest.lstrip()
            if not eof and any(p.startswith(head) for p in _AFTER_PARAM_PREFIXES):
                self._param_scan = match.start()
                return False  # cannot tell yet whether this </parameter> is literal
            self._param_scan = match.end()  # literal </parameter> inside the value
        if eof:
            return False
        # Move the certain part of the value out of the buffer, keeping room for a split tag.
        safe = max(self._param_scan, len(buf) - (_PARAM_CLOSE_LEN - 1))
        if safe > 0:
            self._param_parts.append(buf[:safe])
            self._buf = buf[safe:]
            self._param_scan = max(0, self._param_scan - safe)
        return False

    def _close_param(self) -> None:
        assert self._call is not None
        self._call.raw[self._param_name] = strip_value_newlines("".join(self._param_parts))
        self._param_parts = []
        self._state = "invoke"

    def _finish_call(self, out: list[BackendEvent]) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        self._emit_call(call.name, call.raw, out, typed=False)

    def _emit_call(self, name: str, arguments: dict[str, Any], out: list[BackendEvent], typed: bool) -> None:
        if not name:
            self._error('A tool call had no tool name; write <invoke name="TOOL_NAME">. It was not run.', out)
            return
        if self._known_tools is not None and name not in self._known_tools:
            available = ", ".join(self._known_tools) or "none"
            attempted = _PendingCall(name, {key: str(value) for key, value in arguments.items()})
            self._error(
                f"Unknown tool '{name}'; the call was not run. Available tools: {available}.",
                out,
                call=attempted,
            )
            return
        if not typed:
            types = self._param_types.get(name, {})
            arguments = {key: coerce_value(value, types.get(key, ())) for key, value in arguments.items()}
        event = ToolCallEvent(name=name, arguments=arguments)
        self._calls.append(event)
        out.append(event)

    def _close_block(self, out: list[BackendEvent]) -> None:
        self._report_garbage(out)
        self._state = "content"
        self._content.open_stretch()

    def _report_garbage(self, out: list[BackendEvent]) -> None:
        if self._garbage:
            text = "".join(self._garbage).strip()
            self._error(
                "Text inside the tool-call block that is not an <invoke> or <parameter> element was ignored: "
                f'{_snippet(text)}. Write each call as <invoke name="TOOL"><parameter name="ARG">value'
                "</parameter></invoke> inside <minimax:tool_call>...</minimax:tool_call>.",
                out,
                raw=text,
            )
            self._garbage = []

    # ----------------------------------------------------------------- M1 tool-call blocks
    def _step_m1_block(self, out: list[BackendEvent], eof: bool) -> bool:
        buf = self._buf
        match = _M1_BLOCK_CLOSE.search(buf)
        end = match.start() if match else len(buf)
        lines = buf[:end].split("\n")
        if match is None and not eof:
            lines, last = lines[:-1], lines[-1]  # the last line may still be growing
            self._buf = last
        else:
            self._buf = buf[match.end() :] if match else ""
        for line in lines:
            self._m1_call(line, out)
        if match is not None:
            self._state = "content"
            self._content.open_stretch()
            return True
        return False

    def _m1_call(self, line: str, out: list[BackendEvent]) -> None:
        line = line.strip()
        if not line:
            return
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            self._error(
                f"A line in <tool_calls> is not valid JSON ({exc.msg}): {_snippet(line)}. "
                'Write one {"name": ..., "arguments": {...}} object per line.',
                out,
                raw=line,
            )
            return
        arguments = data.get("arguments", {}) if isinstance(data, dict) else None
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except (json.JSONDecodeError, RecursionError):
                arguments = None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("name"), str)
            or not isinstance(arguments, dict)
        ):
            self._error(
                f'A tool call must be {{"name": "TOOL", "arguments": {{...}}}}; got {_snippet(line)}.',
                out,
                raw=line,
            )
            return
        self._emit_call(data["name"], arguments, out, typed=True)

    # ----------------------------------------------------------------- end of output
    def _finish_state(self, out: list[BackendEvent]) -> None:
        state = self._state
        if state == "reasoning":
            reasoning = self._reasoning.text()
            if (
                "<minimax:tool_call>" in reasoning
                or "<invoke name=" in reasoning
                or "<tool_calls>" in reasoning
            ):
                self._error(
                    "Your output ended inside your reasoning, so the tool call written there was not run. "
                    "Close the reasoning with </think> first, then write the tool call.",
                    out,
                )
        elif state == "param" and self._call is not None:
            self._error(
                f"The call to '{self._call.name}' was cut off inside parameter '{self._param_name}' "
                "(no </parameter>), so it was not run. Send the complete call again.",
                out,
                call=self._call,
            )
            self._call = None
            self._report_garbage(out)
        elif state == "invoke":
            self._finish_call(out)  # every parameter closed: only </invoke> was missing
            self._report_garbage(out)
        elif state in ("block", "m1_block"):
            self._report_garbage(out)


def _snippet(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass
class ParsedCompletion:
    reasoning: str
    content: str
    tool_calls: list[ToolCallEvent]
    errors: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "reasoning": self.reasoning,
            "content": self.content,
            "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in self.tool_calls],
            "errors": self.errors,
        }


def parse_completion(
    text: str, tools: list[dict[str, Any]] | None = None, *, dialect: str = "m2"
) -> ParsedCompletion:
    parser = CompletionParser(tools, dialect=dialect)
    parser.feed(text)
    parser.finish()
    return ParsedCompletion(parser.reasoning, parser.content, parser.tool_calls, parser.errors)
