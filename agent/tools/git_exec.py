"""Running git for the git tools: through Sandbox.exec, so a Docker workspace works unchanged.

Why not GitPython: it opens repositories by host path, which a Docker sandbox does not share.
git's own CLI with stable formats (porcelain, -z, explicit --format strings) gives the same
structure, the same way in both sandboxes. Each call:
- runs in the workspace root with `core.quotepath=off` (paths verbatim), no pager, no colour,
  English messages (they are shown to the model) and no terminal prompts;
- runs no program the repository's config names (hooks, fsmonitor, filters, ...): its
  environment and command line come from git_guard.py, and it runs unconfined (it must write
  .git, which the confinement keeps read-only), since it runs nothing the model wrote;
- keeps stdout and stderr apart: the sandbox merges them, so stderr goes to a temp file that is
  printed after a marker line.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from agent.tools.git_guard import GitConfigError, git_argv, guarded_git_env
from agent.tools.workspace_paths import WorkspacePathError, display_path, resolve_workspace_path
from sandbox.base import Sandbox

PRESENTATION = {"core.quotepath": "off", "color.ui": "false"}
GIT_ENV = {"LC_ALL": "C"}
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


def run_git(
    sandbox: Sandbox,
    args: list[str],
    *,
    timeout: float = 60,
    read_only: bool = True,
    config: dict[str, str] | None = None,
) -> GitResult:
    """`git ARGS` in the workspace root; `config` adds settings of our own (like `git -c`)."""
    try:
        env = {**GIT_ENV, **guarded_git_env(sandbox, sandbox.root, {**PRESENTATION, **(config or {})})}
    except GitConfigError as e:
        raise GitError(str(e)) from e
    git = shlex.join(git_argv(args))
    command = (
        "err=$(mktemp) || exit 125; "
        f'{git} 2>"$err"; rc=$?; '
        f'printf \'{_printf_escape(STDERR_MARKER)}\'; cat "$err"; rm -f "$err"; exit $rc'
    )
    if read_only:  # read-only commands must not take index.lock (a concurrent commit would fail on it)
        env["GIT_OPTIONAL_LOCKS"] = "0"
    result = sandbox.exec(
        command, cwd=sandbox.root, timeout=timeout, env=env, max_output=MAX_GIT_OUTPUT, confined=False
    )
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
