"""The Tool seam: a name, a JSON schema the model sees, a permission class, and `run`.

A tool never talks to the terminal; it returns a ToolResult whose `output` is the short text
the model reads and whose `data` carries tool-specific structured fields.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from agent.secrets import Redactor
from sandbox.base import Sandbox

if TYPE_CHECKING:
    from agent.tools.shell_jobs import Job


# The id of the model's tool call being run, set by the loop around each call: a tool whose work
# makes run events of its own (the task tool's subagents) names the call they belong to.
current_call_id: ContextVar[str] = ContextVar("current_call_id", default="")


class Permission(StrEnum):
    READ = "read"
    EDIT = "edit"
    EXECUTE = "execute"
    DESTRUCTIVE = "destructive"
    NETWORK = "network"  # reaches the internet from the agent itself: asks in every mode but full-auto


@dataclass
class ToolResult:
    ok: bool
    output: str
    data: dict[str, Any] = field(default_factory=dict)
    # Run events the call adds to the session after its result (todo_write's TodoUpdate).
    events: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "output": self.output, **self.data}


@dataclass
class ShellState:
    """What the shell tools remember between calls."""

    cwd: str | None = None  # where the last command left off (None: the workspace root)
    home: str | None = None  # $HOME as the sandbox's shell sees it, found once
    jobs: dict[str, Job] = field(default_factory=dict)  # background commands by id
    jobs_dir: str | None = None  # where background commands write their output


@dataclass
class ToolContext:
    """Per-session state shared by the tools of one agent session."""

    sandbox: Sandbox
    todos: list[dict[str, str]] = field(default_factory=list)  # the model's plan (todo_write)
    shell: ShellState = field(default_factory=ShellState)
    checkpoint_store: str | None = None  # the shadow store's path in the sandbox, found once
    rg_available: bool | None = None  # whether the sandbox has ripgrep (None: not asked yet)
    # A session's redactor (it knows the backend's key); without one, the environment's at each call.
    session_redactor: Redactor | None = None
    # Hosts or addresses web_fetch may reach though they are private or local (the user's config).
    web_fetch_allow_hosts: tuple[str, ...] = ()

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
    edits_files: bool  # a successful call changes files in the workspace (tests must run again)
    parallel_safe: bool  # may run at the same time as other parallel-safe calls of the same round
    manages_checkpoints: bool  # takes care of checkpoints itself: the registry takes none before it

    def command(self, args: dict[str, Any]) -> str | None:
        """The shell command line the call would run; None for tools that run none."""
        ...

    def runs_in_parallel(self, args: dict[str, Any]) -> bool:
        """Whether this call may run beside the round's other such calls (`parallel_safe`, unless
        the arguments decide)."""
        ...

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult: ...


class ToolBase:
    """The traits' defaults: a tool edits no file, runs no command, keeps no checkpoints of its own,
    and may run beside others when it only reads."""

    permission: Permission
    edits_files = False
    manages_checkpoints = False

    @property
    def parallel_safe(self) -> bool:
        return self.permission == Permission.READ

    def command(self, args: dict[str, Any]) -> str | None:
        return None

    def runs_in_parallel(self, args: dict[str, Any]) -> bool:
        return self.parallel_safe


def openai_tool(tool: Tool) -> dict[str, Any]:
    """The OpenAI function form the format layer renders into the prompt."""
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }
