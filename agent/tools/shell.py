"""Shell tools: bash (foreground or background), bash_output, bash_kill.

Every command is screened by the firewall first. A foreground command runs in its own process
group (the sandbox kills the whole group on timeout and returns the partial output); its output
is capped to a head and a tail. The working directory persists across calls within a session:
the script ends by printing a unique marker and `$PWD`, which is read back and stripped.
Environment changes (export, source) do not persist. Background jobs: see shell_jobs.py.
"""

from __future__ import annotations

import shlex
import uuid
from typing import Any

from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult
from agent.tools.firewall.git_probe import SandboxGitProbe
from agent.tools.firewall.paths import is_within
from agent.tools.firewall.screen import check_command
from agent.tools.shell_jobs import BashKill, BashOutput, start_job

OUTPUT_LIMIT = 30_000  # bytes of command output the model gets (head + tail)
DEFAULT_TIMEOUT = 120
MAX_TIMEOUT = 600
# Non-interactive defaults: no pager, no credential prompts.
COMMAND_ENV = {
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "GIT_TERMINAL_PROMPT": "0",
    "DEBIAN_FRONTEND": "noninteractive",
}

q = shlex.quote


def session_cwd(ctx: ToolContext) -> str:
    return ctx.shell.cwd or ctx.root


def session_home(ctx: ToolContext) -> str:
    """$HOME as the sandbox's shell sees it (the firewall expands ~ with it)."""
    if ctx.shell.home is None:
        found = ctx.sandbox.exec('printf %s "$HOME"', timeout=30)
        ctx.shell.home = found.output.strip() or "/"
    return ctx.shell.home


def _screen(command: str, ctx: ToolContext) -> ToolResult | None:
    """The firewall's refusal as a ToolResult, or None when the command may run."""
    verdict = check_command(
        command,
        cwd=session_cwd(ctx),
        root=ctx.root,
        home=session_home(ctx),
        realpath=ctx.sandbox.realpath,
        git_probe=SandboxGitProbe(ctx.sandbox),
    )
    if verdict.allowed:
        return None
    return ToolResult(False, verdict.message, {"refused": True, "reasons": verdict.reasons})


def _valid_cwd(ctx: ToolContext) -> tuple[str, str]:
    """The directory to run in, and a note when it had to be reset to the workspace root."""
    cwd = session_cwd(ctx)
    info = ctx.sandbox.stat(cwd)
    if info is None or not info.is_dir:
        ctx.shell.cwd = ctx.root
        return (
            ctx.root,
            f"[the previous working directory {cwd} no longer exists; using the workspace root]\n",
        )
    return cwd, ""


class Bash(ToolBase):
    name = "bash"
    description = (
        "Run a bash command in the workspace. The working directory persists between calls (cd works); "
        "environment variables do not. Output (stdout and stderr together) is capped, keeping the start "
        f"and the end. Default timeout {DEFAULT_TIMEOUT}s (max {MAX_TIMEOUT}); on timeout the command's "
        "whole process group is killed. Set background=true for servers and long jobs: it returns a job "
        "id to use with bash_output and bash_kill. Commands that would delete or overwrite things outside "
        "the workspace, the workspace root or .git, or discard uncommitted git work, are refused."
    )
    parameters = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The bash command line."},
            "timeout": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT, "description": "Seconds."},
            "background": {"type": "boolean", "description": "Run detached; returns a job id."},
        },
        "required": ["command"],
        "additionalProperties": False,
    }
    permission = Permission.EXECUTE

    def command(self, args: dict[str, Any]) -> str | None:
        return args.get("command") if isinstance(args.get("command"), str) else None

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        command = args["command"]
        refusal = _screen(command, ctx)
        if refusal:
            return refusal
        cwd, note = _valid_cwd(ctx)
        if args.get("background"):
            return start_job(ctx, command, cwd=cwd, env=COMMAND_ENV, note=note)
        timeout = args.get("timeout", DEFAULT_TIMEOUT)
        marker = f"__mmx_cwd_{uuid.uuid4().hex}__"
        # eval of a quoted copy keeps the command apart from our epilogue: an unclosed heredoc or a
        # trailing backslash in it cannot swallow the lines that report the new cwd.
        script = (
            f'cd {q(cwd)} || exit 1\n__mmx_command={q(command)}\neval "$__mmx_command"\n'
            f"__mmx_status=$?\nprintf '\\n%s%s\\n' {q(marker)} \"$PWD\"\nexit $__mmx_status\n"
        )
        result = ctx.sandbox.exec(
            script, timeout=timeout, env=COMMAND_ENV, max_output=OUTPUT_LIMIT, redactor=ctx.redactor
        )
        output, new_cwd = _split_cwd_marker(result.output, marker)
        if new_cwd:
            note += self._move_to(ctx, new_cwd)
        output = output.rstrip("\n")
        if result.timed_out:
            footer = (
                f"[timed out after {timeout}s: the process group was killed; the output above is partial]"
            )
        elif result.exit_code != 0:
            footer = f"[exit code {result.exit_code}]"
        else:
            footer = ""
        text = "\n".join(part for part in (note.rstrip("\n"), output or "(no output)", footer) if part)
        data = {
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "elided_bytes": result.elided,
            "cwd": session_cwd(ctx),
        }
        return ToolResult(result.exit_code == 0 and not result.timed_out, text, data)

    @staticmethod
    def _move_to(ctx: ToolContext, new_cwd: str) -> str:
        real = ctx.sandbox.realpath(new_cwd)
        if is_within(real, ctx.root):
            ctx.shell.cwd = real
            return ""
        ctx.shell.cwd = ctx.root
        return f"[the command left the workspace (cd {new_cwd}); the next command starts in the workspace root]\n"


def _split_cwd_marker(output: str, marker: str) -> tuple[str, str | None]:
    position = output.rfind(marker)
    if position == -1:
        return output, None  # the command exited before the marker (exit, set -e, syntax error)
    line_end = output.find("\n", position)
    new_cwd = output[position + len(marker) : line_end if line_end != -1 else None]
    before = output[:position]
    return before.removesuffix("\n"), new_cwd.strip() or None


TOOLS = [Bash(), BashOutput(), BashKill()]
