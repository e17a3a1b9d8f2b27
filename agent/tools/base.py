"""The Tool seam: a name, a JSON schema the model sees, a permission class, and `run`.

A tool never talks to the terminal; it returns a ToolResult whose `output` is the short text
the model reads and whose `data` carries tool-specific structured fields.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from agent.tools.secrets import Redactor
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
    # A session's redactor (it knows the backend's key); without one, the environment's at each call.
    session_redactor: Redactor | None = None

    @property
    def redactor(self) -> Redactor:
        """Hides secrets in what the tools return."""
        if self.session_redactor is not None:
            return self.session_redactor
        return Redactor.for_environment({**os.environ, **self.sandbox.env})

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
