"""Running git for the git tools: through Sandbox.exec, so a Docker workspace works unchanged.

Why not GitPython: it opens repositories by host path, which a Docker sandbox does not share.
git's own CLI with stable formats (porcelain, -z, explicit --format strings) gives the same
structure, the same way in both sandboxes. Each call:
- runs in the workspace root with `-c core.quotepath=off` (paths verbatim), no pager, no colour,
  English messages (they are shown to the model) and no terminal prompts;
- keeps stdout and stderr apart: the sandbox merges them, so stderr goes to a temp file that is
  printed after a marker line.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from agent.tools.workspace_paths import WorkspacePathError, display_path, resolve_workspace_path
from sandbox.base import Sandbox

GIT_PREFIX = ["git", "-c", "core.quotepath=off", "-c", "color.ui=false", "--no-pager"]
GIT_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_EDITOR": "true"}
STDERR_MARKER = "\0mmx-git-stderr\0"
MAX_GIT_OUTPUT = 20_000_000


class GitError(Exception):
    """git refused or failed; the message is written for the model."""


@dataclass
class GitResult:
    exit_code: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_git(sandbox: Sandbox, args: list[str], *, timeout: float = 60, read_only: bool = True) -> GitResult:
    git = shlex.join(GIT_PREFIX + args)
    command = (
        "err=$(mktemp) || exit 125; "
        f'{git} 2>"$err"; rc=$?; '
        f'printf \'{_printf_escape(STDERR_MARKER)}\'; cat "$err"; rm -f "$err"; exit $rc'
    )
    # Read-only commands must not take index.lock (a concurrent commit would fail on it).
    env = {**GIT_ENV, "GIT_OPTIONAL_LOCKS": "0"} if read_only else GIT_ENV
    result = sandbox.exec(command, cwd=sandbox.root, timeout=timeout, env=env, max_output=MAX_GIT_OUTPUT)
    if result.timed_out:
        raise GitError(f"`git {' '.join(args[:2])}` timed out after {timeout:.0f}s")
    stdout, marker, stderr = result.output.rpartition(STDERR_MARKER)
    if not marker:
        stdout, stderr = result.output, ""
    if result.exit_code == 125 and not stdout:
        raise GitError("could not run git in the sandbox (mktemp failed)")
    return GitResult(result.exit_code, stdout, stderr.strip())


def _printf_escape(text: str) -> str:
    return text.replace("\0", "\\0")


def check_git(sandbox: Sandbox, args: list[str], *, timeout: float = 60, read_only: bool = True) -> GitResult:
    """run_git, raising GitError with git's own message when it fails."""
    result = run_git(sandbox, args, timeout=timeout, read_only=read_only)
    if result.exit_code == 127 and "not found" in result.stderr:
        raise GitError("git is not installed in the sandbox")
    if not result.ok:
        raise GitError(explain_git_error(result.stderr or result.stdout))
    return result


def explain_git_error(message: str) -> str:
    message = message.strip()
    if "not a git repository" in message:
        return "The workspace is not a git repository (no .git found); `git init` would make it one."
    return f"git failed: {message}" if message else "git failed with no message"


def workspace_relative_paths(sandbox: Sandbox, paths: list[str] | None) -> list[str]:
    """Model-given paths as paths relative to the root (git runs there); refuses escapes."""
    relative = []
    for path in paths or []:
        if not isinstance(path, str) or not path:
            raise WorkspacePathError("paths must be non-empty strings")
        relative.append(display_path(sandbox, resolve_workspace_path(sandbox, path)))
    return relative


def check_revision(rev: str) -> str:
    """A revision the model gave, refused when git could read it as an option."""
    if not isinstance(rev, str) or not rev.strip():
        raise GitError("a revision must be a non-empty string")
    rev = rev.strip()
    if rev.startswith("-"):
        raise GitError(f"{rev!r} is not a revision (it starts with '-')")
    return rev


def cap_text(text: str, limit: int, what: str) -> tuple[str, bool]:
    """Cut `text` at a line boundary near `limit` chars, noting how much was left out."""
    if len(text) <= limit:
        return text, False
    cut = text.rfind("\n", 0, limit)
    cut = cut if cut > 0 else limit
    hidden_lines = text.count("\n", cut) or 1
    return text[
        :cut
    ] + f"\n[{what} truncated: {hidden_lines} more lines not shown; narrow it with paths]", True
