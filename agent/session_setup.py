"""Putting a session together from settings: backend, sandbox, tools, policy, session file, loop.

The CLI (interactive and -p) and the eval runner all start sessions through `start_session`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.backends.base import Backend, BackendError, GenerationParams
from agent.backends.messages import Message
from agent.config import Settings, user_config_dir
from agent.event_redaction import RedactedEvents
from agent.events import FinalResult, SessionStart, Status, TodoUpdate, messages_from_events
from agent.loop import AgentLoop
from agent.mcp.launch import header_secrets
from agent.mcp.servers import McpServers
from agent.mcp.tools import server_tools, startup_problems
from agent.permissions import PermissionPolicy, Rule
from agent.planner.compaction import ContextBudget
from agent.planner.final_answer import AnswerGate, AnswerRules
from agent.planner.hooks import Hooks
from agent.planner.limits import Limits
from agent.planner.prompt import PLAN_MODE_PROMPT, build_system_prompt
from agent.planner.structured_output import schema_instructions
from agent.planner.todo import TodoTool
from agent.planner.verification import detect_test_command
from agent.secrets import Redactor
from agent.subagent_runs import Subagents
from agent.tools.base import Permission, Tool, ToolContext
from agent.tools.registry import all_tools
from agent.tools.shell import COMMAND_ENV
from agent.tools.shell_jobs import kill_all_jobs
from agent.transcripts import SessionWriter, load_events, new_session_id
from sandbox.base import Sandbox, SandboxError


def make_backend(settings: Settings, progress: Callable[[str], None] | None = None) -> Backend:
    """The backend the settings name; BackendError when it cannot be set up (exit 5).

    `progress` receives one-line reports of slow work (the local model's rounds)."""
    kind = settings.backend
    if kind == "replay":
        from agent.backends.replay import ReplayBackend

        if not settings.replay:
            raise BackendError("--backend replay needs --replay FILE.jsonl")
        return ReplayBackend(settings.replay, context_window=settings.context_window or 196_608)
    if kind == "local":
        try:
            from agent.backends.local.backend import LocalBackend
        except ImportError as exc:
            raise BackendError(
                f"--backend local needs PyTorch ({exc}): pip install 'mmx-agent[local]'"
            ) from None

        if not settings.model:
            raise BackendError("--backend local needs --model DIR (a checkpoint directory)")
        try:
            return LocalBackend(settings.model, compile=settings.local_compile, progress=progress)
        except (OSError, ValueError) as exc:  # no such directory, a checkpoint the loader refuses
            raise BackendError(f"cannot load the local model {settings.model}: {exc}") from None
    from agent.backends.remote.presets import make_backend as make_remote

    return make_remote(
        kind,
        settings.base_url,
        settings.model,
        settings.api_key_env,
        prices=settings.prices or None,
        tokenizer=settings.tokenizer,
        context_window=settings.context_window,
    )


def make_sandbox(settings: Settings, workspace: Path) -> Sandbox:
    if settings.sandbox == "docker":
        from sandbox.docker import Limits
        from sandbox.workspace import open_workspace_sandbox

        limits = Limits(
            cpus=settings.docker_cpus,
            memory=settings.docker_memory,
            pids=settings.docker_pids,
            disk=settings.docker_disk,
        )
        return open_workspace_sandbox(
            workspace, settings.docker_mode, image=settings.docker_image, limits=limits
        )
    return make_host_sandbox(settings, workspace)


def make_host_sandbox(settings: Settings, workspace: Path) -> Sandbox:
    """The sandbox on this host: confined (the default), or unconfined with sandbox = local.

    Raises SandboxError (ConfinementUnavailable) when the confinement asked for cannot be had."""
    if settings.sandbox == "local":
        from sandbox.local import LocalSandbox

        return LocalSandbox(str(workspace))
    from sandbox.confinement.sandbox import ConfinedSandbox

    return ConfinedSandbox(str(workspace), mode=settings.confinement, network=settings.network or "host")


def describe_confinement(settings: Settings) -> tuple[str, str]:
    """(mode, detail) of what will confine the shell's commands: bwrap | landlock | none | docker.

    Raises SandboxError (ConfinementUnavailable) when the confinement the settings force cannot be had."""
    if settings.sandbox == "docker":
        return "docker", "commands run in a Docker container (--sandbox docker)"
    if settings.sandbox == "local":
        return "none", "sandbox = local: commands run unconfined"
    from sandbox.confinement.detect import choose

    chosen = choose(settings.confinement, settings.network or "host")
    detail = chosen.detail if chosen.mode != "none" else f"UNCONFINED: {chosen.detail}"
    return chosen.mode, f"{detail}; network {settings.network or 'host'}"


def permission_mode(settings: Settings, interactive: bool) -> str:
    if settings.permission_mode:
        return settings.permission_mode
    return settings.interactive_permission_mode if interactive else settings.ci_permission_mode


@dataclass
class AgentSession:
    session_id: str
    loop: AgentLoop
    backend: Backend
    sandbox: Sandbox
    writer: SessionWriter
    redactor: Redactor  # everything the session writes or returns passed through it
    owns_backend: bool = False  # made by start_session, so closed with the session
    mcp: McpServers | None = None  # the configured MCP servers, stopped with the session

    def sync_back(self) -> str | None:
        """With a copied Docker workspace: bring the run's changes back to the host workspace, and
        return the diff applied (made on the host), which is what the result reports."""
        try:
            diff = self.sandbox.sync_back()
        except SandboxError as exc:
            self.loop.emit(
                Status(f"the sandbox's changes could not be applied to the workspace: {exc}", "error")
            )
            return ""  # nothing reached the workspace
        if diff is not None and diff.strip():
            files = sum(1 for line in diff.splitlines() if line.startswith("diff --git "))
            self.loop.emit(Status(f"applied the sandbox's changes to the workspace ({files} files)"))
        return diff

    def leave_plan_mode(self, mode: str) -> None:
        """The user approved the plan: carry on in `mode`, with the plan-mode instructions gone."""
        self.loop.policy.mode = mode
        self.loop.system = Message.system(self.loop.system.text().replace("\n" + PLAN_MODE_PROMPT, ""))

    def run(self, task: str) -> FinalResult:
        """The run's result, redacted like everything else that leaves the session (the diff too)."""
        return self.redactor.redact_event(self.loop.run(task))

    def close(self) -> None:
        kill_all_jobs(self.loop.ctx)  # background commands do not outlive the session
        if self.mcp is not None:
            self.mcp.close()
        self.writer.close()
        self.sandbox.close()
        if self.owns_backend:
            self.backend.close()


def session_tools(settings: Settings) -> list[Tool]:
    """All tools, less web_fetch where the run has no network: the agent fetches outside the
    sandbox, so it would reach what the run's commands cannot."""
    offline = settings.network == "none" or (settings.network is None and settings.sandbox == "docker")
    return [tool for tool in all_tools() if not (offline and tool.permission == Permission.NETWORK)]


def start_session(
    settings: Settings,
    workspace: Path,
    *,
    interactive: bool,
    emit: Callable[[Any], None],
    ask: Callable[[str, dict[str, Any]], bool] | None = None,
    resume_id: str | None = None,
    backend: Backend | None = None,
    sandbox: Sandbox | None = None,
    progress: Callable[[str], None] | None = None,
    answer_rules: AnswerRules | None = None,
) -> AgentSession:
    """`answer_rules`: what a -p run's final answer must pass (its JSON schema, our verification); a
    verification command not given is detected now, from the repository as it is before the run."""
    owns_backend = backend is None
    backend = backend or make_backend(settings, progress)
    mode = permission_mode(settings, interactive)
    history, todos = [], []
    if resume_id:
        events = load_events(resume_id)
        history = messages_from_events(events)
        todos = next((e.items for e in reversed(events) if isinstance(e, TodoUpdate)), [])
    session_id = resume_id or new_session_id()
    writer = SessionWriter(session_id)
    sandbox = sandbox or make_sandbox(settings, workspace)
    # Credentials in our environment and the sandbox's, and the backend's own key by any name.
    # Header values MCP servers take from the environment are secrets whatever they are called.
    redactor = Redactor.for_environment(
        {**os.environ, **sandbox.env},
        extra={**backend.credentials(), **header_secrets(settings.mcp_servers)},
    )
    policy = PermissionPolicy(
        mode,
        [Rule.parse(r) for r in settings.allow],
        [Rule.parse(r) for r in settings.deny],
        ask,
        shell_isolated=settings.sandbox == "docker",
        redact=redactor.redact,
    )
    ctx = ToolContext(
        sandbox,
        todos=todos,
        session_redactor=redactor,
        web_fetch_allow_hosts=tuple(settings.web_fetch_allow_hosts),
    )

    def write_and_emit(event: Any) -> None:
        writer.write(event)
        emit(event)

    emit_all = RedactedEvents(redactor, write_and_emit)

    gate = None
    if answer_rules is not None:
        if answer_rules.verify is None:
            answer_rules.verify = detect_test_command(sandbox)
        gate = AnswerGate(answer_rules, sandbox, redactor, COMMAND_ENV, emit_all)
    system_prompt = build_system_prompt(
        workspace, datetime.date.today().isoformat(), user_config_dir(), shown_root=sandbox.root
    )
    if answer_rules is not None and answer_rules.schema is not None:
        system_prompt += "\n" + schema_instructions(answer_rules.schema)
    if mode == "plan":
        system_prompt += "\n" + PLAN_MODE_PROMPT
    window = settings.context_window or backend.context_window
    hooks = Hooks(
        settings.hooks, sandbox, session_id=session_id, emit=emit_all, redactor=redactor, env=COMMAND_ENV
    )
    subagents = Subagents()
    mcp = start_mcp_servers(settings, sandbox, workspace)
    loop = AgentLoop(
        backend,
        ctx,
        tools=[
            *session_tools(settings),
            TodoTool(),
            subagents.task_tool(),
            *(server_tools(mcp) if mcp else []),
        ],
        system_prompt=system_prompt,
        policy=policy,
        limits=Limits(settings.max_turns, settings.max_tokens, settings.max_cost, settings.max_wall_seconds),
        emit=emit_all,
        params=GenerationParams(
            settings.temperature, settings.top_p, settings.top_k, settings.max_output_tokens
        ),
        session_id=session_id,
        messages=history,
        budget=ContextBudget(
            window,
            reserve=8_192,
            live_window=None if settings.context_window else lambda: backend.context_window,
        ),
        test_commands=settings.test_commands,
        answer_gate=gate,
        hooks=hooks if settings.hooks else None,
    )
    subagents.owner = loop
    session = AgentSession(session_id, loop, backend, sandbox, writer, redactor, owns_backend, mcp)
    loop.before_result.append(session.sync_back)
    emit_all(SessionStart(session_id, str(workspace), backend.name, backend.model, mode, sandbox.confinement))
    for problem in startup_problems(mcp) if mcp else []:
        emit_all(problem)
    if hooks.has("session_start"):
        loop.hook_context = hooks.run("session_start", source="resume" if resume_id else "startup").context
    return session


def start_mcp_servers(settings: Settings, sandbox: Sandbox, workspace: Path) -> McpServers | None:
    """The configured MCP servers, started together (each running or failed when this returns).

    Local servers run confined like the shell (bwrap or Landlock); with a Docker sandbox they run on
    this host under the best confinement it has, without network (as the containers), and not at
    all when it has none: the model's reach must stay in the container. With the shell unconfined
    (`--sandbox local`) they run unconfined too."""
    if not settings.mcp_servers:
        return None
    confinement, network = sandbox.confinement, getattr(sandbox, "network", "host")
    if confinement == "docker":
        from sandbox.confinement.detect import choose

        try:
            confinement, network = choose(settings.confinement, "none").mode, "none"
        except SandboxError:
            confinement = "none"
        if confinement == "none":
            confinement = "refuse"
    elif confinement not in ("bwrap", "landlock"):
        confinement = "none"
    servers = McpServers(settings.mcp_servers, os.path.realpath(workspace), confinement, network)
    servers.start()
    return servers
