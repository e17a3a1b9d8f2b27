"""Messages + tools -> prompt string, byte-identical to the official chat templates.

The official templates (copied into tests/fixtures/m2/) are the specification; the tests render hundreds of
conversations through both and compare bytes. Where a template does something surprising, the
comment says which template line it mirrors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agent.backends.messages import Message, tools_from_openai, visible_text

DEFAULT_IDENTITY = "You are a helpful assistant."
M1_DEFAULT_SYSTEM = "You are a helpful assistant created by Minimax based on MiniMax-M1 model."
GENERATION_PROMPT = "]~b]ai\n<think>\n"
M1_GENERATION_PROMPT = "<beginning_of_sentence>ai name=assistant\n"

_TOOLS_HEADER = (
    "\n\n# Tools\nYou may call one or more tools to assist with the user query.\n"
    "Here are the tools available in JSONSchema format:\n\n<tools>\n"
)
_TOOLS_FOOTER = (
    "</tools>\n\nWhen making tool calls, use XML format to invoke tools and pass parameters:\n"
    "\n<minimax:tool_call>\n"
    '<invoke name="tool-name-1">\n'
    '<parameter name="param-key-1">param-value-1</parameter>\n'
    '<parameter name="param-key-2">param-value-2</parameter>\n'
    "...\n"
    "</invoke>\n"
    "</minimax:tool_call>"
)
_M1_TOOLS_FOOTER = (
    "</tools>\n\nIf you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and "
    "provide tool-name and json-object of arguments, following the format below:\n<tool_calls>\n"
    '{"name": <tool-name>, "arguments": <args-json-object>}\n...\n</tool_calls><end_of_sentence>\n'
)


class RenderError(ValueError):
    """A conversation the official template rejects."""


def to_json(value: Any) -> str:
    """The templates' `tojson`: key order kept, non-ASCII kept, `", "` and `": "` separators."""
    return json.dumps(value, ensure_ascii=False)


def _jinja_str(value: Any) -> str:
    # What `{{ value }}` prints in Jinja: str() of anything that is not already a string.
    return value if isinstance(value, str) else str(value)


def render_prompt(
    messages: Sequence[Message | dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    dialect: str = "m2",
    add_generation_prompt: bool = True,
    model_identity: str = DEFAULT_IDENTITY,
) -> str:
    """Render a conversation (our Messages or OpenAI chat dicts) as the model's prompt."""
    msgs = [m if isinstance(m, Message) else Message.from_openai(m, i) for i, m in enumerate(messages)]
    tool_list = tools_from_openai(list(tools)) if tools is not None else None
    if dialect == "m2":
        return render_m2(msgs, tool_list, add_generation_prompt, model_identity)
    if dialect == "m1":
        return render_m1(msgs, tool_list, add_generation_prompt)
    raise ValueError(f"unknown dialect {dialect!r}: expected 'm2' or 'm1'")


def render_m2(
    messages: list[Message],
    tools: list[dict[str, Any]] | None,
    add_generation_prompt: bool = True,
    model_identity: str = DEFAULT_IDENTITY,
) -> str:
    system = messages[0] if messages and messages[0].role == "system" else None
    conversation = messages[1:] if system is not None else messages
    # Reasoning is shown only after the last user message (interleaved thinking, one turn deep).
    last_user = max((i for i, m in enumerate(conversation) if m.role == "user"), default=-1)

    out = ["]~!b[]~b]system\n"]
    out.append(visible_text(system.content) if system is not None and system.content else model_identity)
    if system is not None and system.current_date:
        out.append("\nCurrent date: " + system.current_date)
    if system is not None and system.current_location:
        out.append("\nCurrent location: " + system.current_location)
    if tools:
        out.append(_TOOLS_HEADER)
        out.extend(f"<tool>{to_json(tool['function'])}</tool>\n" for tool in tools)
        out.append(_TOOLS_FOOTER)
    out.append("[e~[\n")

    last_call_name: str | None = None
    for i, message in enumerate(conversation):
        if message.role == "assistant":
            out.append(_render_m2_assistant(message, show_reasoning=i > last_user))
            last_call_name = message.tool_calls[-1].name if message.tool_calls else None
        elif message.role == "tool":
            if last_call_name is None:
                raise RenderError(
                    f"message {i + (system is not None)}: a tool result with no preceding assistant "
                    "message carrying a tool call (the M2 template rejects this conversation)"
                )
            if i == 0 or conversation[i - 1].role != "tool":
                out.append("]~b]tool")  # consecutive results share one tool block
            out.append(_render_m2_tool_result(message.content))
            if i == len(conversation) - 1 or conversation[i + 1].role != "tool":
                out.append("[e~[\n")
        elif message.role == "user":
            out.append("]~b]user\n" + visible_text(message.content) + "[e~[\n")
        # Any later system message is dropped, as the official template does.
    if add_generation_prompt:
        out.append(GENERATION_PROMPT)
    return "".join(out)


def split_inline_reasoning(content: str) -> tuple[str, str] | None:
    """(reasoning, content) when the content carries `<think>...</think>` inline, else None."""
    if "</think>" not in content:
        return None
    reasoning = content.split("</think>")[0].strip("\n").split("<think>")[-1].strip("\n")
    return reasoning, content.split("</think>")[-1].strip("\n")


def _render_m2_assistant(message: Message, show_reasoning: bool) -> str:
    content = visible_text(message.content)
    reasoning = message.reasoning
    if reasoning is None:
        reasoning = ""
        inline = split_inline_reasoning(content)
        if inline is not None:
            reasoning, content = inline
    out = ["]~b]ai\n"]
    if reasoning and show_reasoning:
        out.append("<think>\n" + reasoning + "\n</think>\n\n")
    out.append(content)
    if message.tool_calls:
        out.append("\n<minimax:tool_call>\n")
        for call in message.tool_calls:
            out.append(f'<invoke name="{call.name}">\n')
            for key, value in call.arguments.items():
                text = value if isinstance(value, str) else to_json(value)
                out.append(f'<parameter name="{key}">{text}</parameter>\n')
            out.append("</invoke>\n")
        out.append("</minimax:tool_call>")
    out.append("[e~[\n")
    return "".join(out)


def _render_m2_tool_result(content: Any) -> str:
    if isinstance(content, str):
        return "\n<response>" + content + "</response>"
    # A list of result parts: note the template's extra newline before </response> here.
    parts = []
    for item in content:
        if isinstance(item, dict) and "output" in item:
            text = _jinja_str(item["output"])
        elif isinstance(item, dict) and item.get("type") == "text" and "text" in item:
            text = _jinja_str(item["text"])
        else:
            text = _jinja_str(item)
        parts.append("\n<response>" + text + "\n</response>")
    return "".join(parts)


def render_m1(
    messages: list[Message], tools: list[dict[str, Any]] | None, add_generation_prompt: bool = True
) -> str:
    """MiniMax-M1: `<beginning_of_sentence>` blocks, JSON-lines tools and `<tool_calls>` calls.

    The M1 template has no notion of separate reasoning: reasoning travels inline in the content,
    and an assistant turn with tool calls is rendered from its calls alone.
    """
    out = ["<begin_of_document>"]
    if messages and messages[0].role == "system":
        system_prompt = _m1_system_text(messages[0].content)
        messages = messages[1:]
    else:
        system_prompt = M1_DEFAULT_SYSTEM
    if system_prompt:
        out.append(
            "<beginning_of_sentence>system ai_setting=assistant\n" + system_prompt + "<end_of_sentence>\n"
        )
    if tools is not None:  # an empty list still renders the (empty) tools block, as the template does
        out.append(
            "<beginning_of_sentence>system tool_setting=tools\nYou are provided with these tools:\n<tools>\n"
        )
        out.extend(to_json(tool) + "\n" for tool in tools)
        out.append(_M1_TOOLS_FOOTER)
    for message in messages:
        if message.role == "tool":
            out.append("<beginning_of_sentence>tool name=tools\n" + _m1_tool_result(message.content))
            out.append("<end_of_sentence>\n")
        elif message.tool_calls:
            out.append("<beginning_of_sentence>ai name=assistant\n<tool_calls>\n")
            for call in message.tool_calls:
                out.append('{"name": "' + call.name + '", "arguments": ' + to_json(call.arguments) + "}\n")
            out.append("</tool_calls><end_of_sentence>\n")
        elif message.role in ("user", "assistant"):
            header = "user name=user" if message.role == "user" else "ai name=assistant"
            out.append(f"<beginning_of_sentence>{header}\n" + _m1_text(message.content))
            out.append("<end_of_sentence>\n")
    if add_generation_prompt:
        out.append(M1_GENERATION_PROMPT)
    return "".join(out)


def _m1_system_text(content: Any) -> str:
    if isinstance(content, str):
        return content.strip()
    try:
        return _jinja_str(content[0]["text"]).strip()  # the template reads part 0 only
    except (IndexError, KeyError, TypeError):
        raise RenderError("M1: a system message given as a list must start with a text part") from None


def _m1_text(content: Any) -> str:
    if isinstance(content, str):
        return content.strip()
    return "".join(
        _jinja_str(p.get("text")).strip() for p in content if isinstance(p, dict) and p.get("type") == "text"
    )


def _m1_tool_result(content: Any) -> str:
    if isinstance(content, str):
        return "tool result: " + content + "\n\n"
    out = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            out.append("tool result: " + _jinja_str(part.get("text")) + "\n\n")
        elif part.get("name"):
            out.append(
                "tool name: "
                + _jinja_str(part["name"])
                + "\ntool result: "
                + _jinja_str(part.get("text"))
                + "\n\n"
            )
    return "".join(out)
