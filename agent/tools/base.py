"""The Tool seam: a name, a JSON schema the model sees, a permission class, and `run`.

A tool never talks to the terminal; it returns a ToolResult whose `output` is the short text
the model reads and whose `data` carries tool-specific structured fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from sandbox.base import Sandbox


class Permission(StrEnum):
    READ = "read"
    EDIT = "edit"
    EXECUTE = "execute"
    DESTRUCTIVE = "destructive"


@dataclass
class ToolResult:
    ok: bool
    output: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "output": self.output, **self.data}


@dataclass
class ToolContext:
    """Per-session state shared by the tools of one agent session."""

    sandbox: Sandbox
    state: dict[str, Any] = field(default_factory=dict)  # e.g. persistent cwd, background jobs

    @property
    def root(self) -> str:
        return self.sandbox.root


class Tool(Protocol):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema (type: object) of the arguments
    permission: Permission

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult: ...


def openai_tool(tool: Tool) -> dict[str, Any]:
    """The OpenAI function form the format layer renders into the prompt."""
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }
