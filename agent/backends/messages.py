"""The conversation model every backend shares, and its OpenAI chat JSON form.

An assistant message keeps its reasoning apart from its visible content, because M2 must see its
own reasoning again within a user turn (interleaved thinking) and each endpoint wants it back in
its own form (inline `<think>`, `reasoning_content`, `reasoning_details`, thinking blocks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES = ("system", "user", "assistant", "tool")

# Content is plain text, or OpenAI's list of parts ({"type": "text", "text": ...} and others),
# kept as given so that rendering can follow the official template exactly.
Content = str | list[Any]


class MessageFormatError(ValueError):
    """A message (or tool list) that cannot be understood; the text says which field and why."""


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None

    def to_openai(self) -> dict[str, Any]:
        call: dict[str, Any] = {
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }
        if self.id is not None:
            call["id"] = self.id
        return call


@dataclass
class Message:
    role: Role
    content: Content = ""
    reasoning: str | None = None  # assistant only
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant only
    tool_call_id: str | None = None  # tool only
    name: str | None = None  # tool only: which tool produced this result
    # System-message extras the M2 template knows about.
    current_date: str | None = None
    current_location: str | None = None
    # Assistant only: the endpoint's own reasoning items, verbatim (MiniMax `reasoning_details`,
    # Anthropic thinking blocks with their signatures, the exact inline `<think>` prefix), so that
    # a remote backend can send the reasoning back exactly as it received it. None: not known.
    reasoning_details: list[dict[str, Any]] | None = None

    @classmethod
    def system(cls, text: Content, **extra: Any) -> Message:
        return cls("system", text, **extra)

    @classmethod
    def user(cls, text: Content) -> Message:
        return cls("user", text)

    @classmethod
    def assistant(
        cls, content: Content = "", reasoning: str | None = None, tool_calls: list[ToolCall] | None = None
    ) -> Message:
        return cls("assistant", content, reasoning=reasoning, tool_calls=list(tool_calls or []))

    @classmethod
    def tool(cls, content: Content, tool_call_id: str | None = None, name: str | None = None) -> Message:
        return cls("tool", content, tool_call_id=tool_call_id, name=name)

    def text(self) -> str:
        """The visible text: string content, or the text parts of a list joined."""
        return visible_text(self.content)

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning is not None:
            out["reasoning_content"] = self.reasoning
        if self.tool_calls:
            out["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        for key in ("tool_call_id", "name", "current_date", "current_location", "reasoning_details"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_openai(cls, data: Any, index: int | None = None) -> Message:
        where = f"message {index}" if index is not None else "message"
        if not isinstance(data, dict):
            raise MessageFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
        role = data.get("role")
        if role not in ROLES:
            raise MessageFormatError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
        content = data.get("content")
        if content is None:
            content = ""  # OpenAI sends null content on tool-call turns; it means "no text"
        if not isinstance(content, str | list):
            raise MessageFormatError(f"{where}: content must be a string or a list of parts")
        reasoning = data.get("reasoning_content", data.get("reasoning"))
        if reasoning is not None and not isinstance(reasoning, str):
            raise MessageFormatError(f"{where}: reasoning_content must be a string")
        calls = data.get("tool_calls") or []
        if not isinstance(calls, list):
            raise MessageFormatError(f"{where}: tool_calls must be a list")
        details = data.get("reasoning_details")
        if details is not None and not (
            isinstance(details, list) and all(isinstance(item, dict) for item in details)
        ):
            raise MessageFormatError(f"{where}: reasoning_details must be a list of JSON objects")
        return cls(
            role=role,
            content=content,
            reasoning=reasoning,
            tool_calls=[_tool_call_from_openai(c, f"{where}, tool call {i}") for i, c in enumerate(calls)],
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
            current_date=data.get("current_date"),
            current_location=data.get("current_location"),
            reasoning_details=details,
        )


def _tool_call_from_openai(data: Any, where: str) -> ToolCall:
    if not isinstance(data, dict):
        raise MessageFormatError(f"{where}: expected a JSON object")
    function = data.get("function", data)  # accept the flat {"name", "arguments"} form too
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise MessageFormatError(f"{where}: missing function name")
    arguments = function.get("arguments", {})
    if arguments is None or arguments == "":
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise MessageFormatError(f"{where} ({name}): arguments are not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise MessageFormatError(f"{where} ({name}): arguments must be a JSON object")
    return ToolCall(name=name, arguments=arguments, id=data.get("id"))


def visible_text(content: Any) -> str:
    """Text of a content value the way the M2 template reads it."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for item in content:
            if isinstance(item, dict) and item.get("type") == "text":
                parts.append(str(item.get("text", "")))
            elif isinstance(item, str):
                parts.append(item)
        return "".join(parts)
    return "" if content is None else str(content)


def messages_from_openai(data: Any) -> list[Message]:
    if not isinstance(data, list):
        raise MessageFormatError("messages must be a JSON list of chat messages")
    return [Message.from_openai(item, i) for i, item in enumerate(data)]


def messages_to_openai(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.to_openai() for m in messages]


def tools_from_openai(data: Any) -> list[dict[str, Any]]:
    """Validate a tools list; accepts OpenAI `{"type": "function", "function": {...}}` or bare functions."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise MessageFormatError("tools must be a JSON list of OpenAI tool definitions")
    tools = []
    for i, tool in enumerate(data):
        if not isinstance(tool, dict):
            raise MessageFormatError(f"tool {i}: expected a JSON object")
        if "function" not in tool:
            if not isinstance(tool.get("name"), str):
                raise MessageFormatError(f"tool {i}: expected {{'type': 'function', 'function': {{...}}}}")
            tool = {"type": "function", "function": tool}
        function = tool["function"]
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise MessageFormatError(f"tool {i}: function.name must be a string")
        tools.append(tool)
    return tools
