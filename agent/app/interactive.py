"""`mmx-agent`: the interactive agent.

Ctrl-C while the agent works cancels the current round (a running shell command is killed) and
keeps the session; Ctrl-C at an empty prompt twice in a row exits. Esc then Enter inserts a newline;
pasted text keeps its newlines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console
from rich.text import Text

from agent.app.ui import ConsoleRenderer
from agent.backends.base import BackendError
from agent.config import Settings
from agent.custom_commands import CustomCommand, find_invocation, load_commands
from agent.exit_codes import ExitCode
from agent.permissions import PermissionRuleError, Rule
from agent.session_setup import AgentSession, start_session
from agent.tools.checkpoints import CheckpointError, undo
from agent.transcripts import list_sessions, state_dir

HELP = """\
/help              this list
/undo [N]          take back the last N file changes (default 1), shell changes included
/todo              show the plan
/compact           summarise older turns now to free context
/model [NAME]      show or switch the model
/sessions          list saved sessions (resume one with: mmx-agent --resume ID)
/expand            show the whole reasoning of the last round
/exit              leave (Ctrl-D does too)
Esc then Enter inserts a newline. Ctrl-C stops the agent's current round."""


PLAN_APPROVED = "The plan is approved. Carry it out now, then check the result."


class InteractiveApp:
    def __init__(self, settings: Settings, workspace: Path, resume_id: str | None) -> None:
        self.console = Console(highlight=False)
        self.renderer = ConsoleRenderer(self.console, settings.reasoning_display)
        self.settings = settings
        self.workspace = workspace
        self.session: AgentSession = start_session(
            settings, workspace, interactive=True, emit=self.renderer, ask=self.ask, resume_id=resume_id
        )
        history = state_dir() / "history"
        history.parent.mkdir(parents=True, exist_ok=True)
        bindings = KeyBindings()

        @bindings.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        self.prompt = PromptSession(history=FileHistory(str(history)), key_bindings=bindings)

    def ask(self, tool: str, args: dict[str, Any]) -> bool:
        shown = self.session.redactor.redact(
            str(args.get("command") or args.get("path") or args.get("url") or args)
        )
        self.renderer._end_stream()
        self.renderer.subagents.pause()
        answer = self.prompt.prompt(f"Allow {tool} {shown[:200]}? [y]es / [n]o / [a]lways for {tool}: ")
        answer = answer.strip().lower()
        if answer.startswith("a"):
            self.session.loop.policy.allow.append(Rule(tool))
            return True
        return answer.startswith("y")

    def run(self) -> int:
        loop = self.session.loop
        self.console.print(
            Text(
                f"mmx-agent · {self.session.backend.name} {self.session.backend.model} · "
                f"{loop.policy.mode} · shell confinement: {self.session.sandbox.confinement} · "
                f"session {self.session.session_id} · /help",
                style="dim",
            )
        )
        interrupted_at_prompt = False
        while True:
            try:
                text = self.prompt.prompt("> ", multiline=False)
            except KeyboardInterrupt:
                if interrupted_at_prompt:
                    return 0
                interrupted_at_prompt = True
                self.console.print(Text("(Ctrl-C again or /exit to leave)", style="dim"))
                continue
            except EOFError:
                return 0
            interrupted_at_prompt = False
            text = text.strip()
            if not text:
                continue
            if text.startswith("/"):
                if self.command(text) == "exit":
                    return 0
                continue
            self.send(text)

    def send(self, text: str) -> None:
        result = self.session.run(text)
        if result.status == "cancelled":
            self.console.print(Text("[cancelled; the session goes on]", style="yellow"))
        elif result.status == "done" and self.session.loop.policy.mode == "plan":
            self.review_plan()

    def run_custom(self, command: CustomCommand, arguments: str) -> None:
        """Sends the command's prompt; its allowed tools run without asking until the run ends."""
        try:
            extra = [Rule.parse(rule) for rule in command.allowed_tools]
        except PermissionRuleError as exc:
            self.console.print(Text(f"/{command.name} ({command.path}): {exc}", style="red"))
            return
        allow = self.session.loop.policy.allow
        before = list(allow)
        allow.extend(extra)
        try:
            self.send(command.prompt(arguments))
        finally:
            # Rules the user added with [a]lways during the run stay; the command's own go.
            allow[:] = before + [rule for rule in allow[len(before) + len(extra) :]]

    def review_plan(self) -> None:
        """Plan mode: the user approves the plan (the session carries on in the normal mode and
        carries it out), sends feedback (planning goes on), or declines (back to the prompt)."""
        loop = self.session.loop
        while loop.policy.mode == "plan":
            self.renderer.show_todos(loop.ctx.todos)
            try:
                answer = self.prompt.prompt("Approve the plan? [y]es / [n]o / or type feedback: ").strip()
            except (KeyboardInterrupt, EOFError):
                return
            if answer.lower() in ("", "n", "no"):
                return
            if answer.lower() in ("y", "yes"):
                mode = self.settings.interactive_permission_mode
                self.session.leave_plan_mode("ask" if mode == "plan" else mode)
                self.console.print(Text(f"plan approved; permission mode {loop.policy.mode}", style="green"))
                self.session.run(PLAN_APPROVED)
                return
            if self.session.run(answer).status != "done":
                return

    def command(self, line: str) -> str | None:
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        loop = self.session.loop
        if name in ("/exit", "/quit"):
            return "exit"
        if name == "/help":
            self.console.print(HELP)
            self.print_custom_commands()
        elif name == "/undo":
            try:
                done = undo(loop.ctx, int(rest or 1))
                changes = self.session.redactor.redact(", ".join(done.changes))
                self.console.print(f"undone {done.undone}: " + (changes or "no file changes"))
                for line in done.not_restored:
                    self.console.print(
                        Text(f"not brought back: {self.session.redactor.redact(line)}", style="yellow")
                    )
                for note in done.notes:
                    self.console.print(Text(f"note: {note}", style="yellow"))
            except (CheckpointError, ValueError) as exc:
                self.console.print(Text(f"cannot undo: {exc}", style="red"))
        elif name == "/todo":
            self.renderer.show_todos(loop.ctx.todos)
        elif name == "/compact":
            try:
                self.console.print(loop.compact_now())
            except BackendError as exc:
                self.console.print(Text(f"compaction failed: {exc}", style="red"))
        elif name == "/model":
            if rest:
                self.session.backend.model = rest
            self.console.print(f"model: {self.session.backend.model}")
        elif name == "/sessions":
            for info in list_sessions()[:20]:
                self.console.print(f"{info.session_id}  {info.status:<18} {info.first_message[:60]!r}")
        elif name == "/expand":
            self.console.print(Text(self.renderer.last_reasoning or "(no reasoning yet)", style="dim italic"))
        elif (invocation := find_invocation(line, self.workspace)) is not None:
            self.run_custom(*invocation)
        else:
            self.console.print(Text(f"unknown command {name}; /help lists them", style="yellow"))
        return None

    def print_custom_commands(self) -> None:
        commands = load_commands(self.workspace)
        if not commands:
            return
        self.console.print("\nCustom commands (.mmx-agent/commands/, ~/.config/mmx-agent/commands/):")
        for command in commands.values():
            about = command.description or (command.body.splitlines()[0][:60] if command.body else "")
            self.console.print(Text(f"/{command.name:<17} {about} ({command.scope})"))


def run_interactive(settings: Settings, workspace: Path, resume_id: str | None) -> int:
    try:
        app = InteractiveApp(settings, workspace, resume_id)
    except BackendError as exc:
        Console(stderr=True).print(f"error: backend unavailable: {exc}")
        return ExitCode.BACKEND_UNAVAILABLE
    except ValueError as exc:  # an unknown backend kind or option, a malformed URL
        Console(stderr=True).print(f"error: {exc}")
        return ExitCode.USAGE
    try:
        return app.run()
    finally:
        app.session.close()
