"""Model-given paths, resolved inside the workspace and shown back relative to it.

The model names paths relative to the workspace root (absolute ones are accepted when they lie
inside it). Anything that leaves the root, lexically (`..`) or through a symlink, is refused.
Paths are POSIX because both sandboxes (host Linux, Docker) are.

File tools open the *resolved* path (`WorkspacePath.real`): the sandbox's read_file and
write_file refuse a symlink anywhere on it, so a directory swapped for a symlink between this
check and the operation makes the operation fail instead of following the link out.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from sandbox.base import Sandbox, SandboxError

GIT_DIR_NAME = ".git"


class WorkspacePathError(ValueError):
    """A path the model gave cannot be used; the message is written for the model."""


@dataclass(frozen=True)
class WorkspacePath:
    path: str  # absolute and lexical: the model's path under the root, symlinks left in place
    real: str  # every symlink resolved (inside the workspace): what the file tools open
    shown: str  # relative to the root, as the model named it


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_workspace_target(sandbox: Sandbox, path: str | None) -> WorkspacePath:
    """Where `path` (None or "" means the root) is, lexically and for real; refuses escapes."""
    root = posixpath.normpath(sandbox.root)
    candidate = root
    if path and "\0" in path:
        raise WorkspacePathError(f"path {path!r} holds a NUL character, which no file name can")
    if path and path != ".":
        candidate = posixpath.normpath(posixpath.join(root, path))
        if not _is_within(candidate, root):
            raise WorkspacePathError(
                f"path {path!r} is outside the workspace; use a path relative to the root"
            )
    # A symlink inside the workspace may point outside it: compare the fully resolved paths.
    real_root = sandbox.realpath(root)
    real = sandbox.realpath(candidate)
    if not _is_within(real, real_root):
        raise WorkspacePathError(
            f"path {path!r} resolves through a symlink to a place outside the workspace; refused"
        )
    return WorkspacePath(candidate, real, display_path(sandbox, candidate))


def resolve_workspace_path(sandbox: Sandbox, path: str | None) -> str:
    """The absolute sandbox path for `path` (None or "" means the root); refuses escapes."""
    return resolve_workspace_target(sandbox, path).path


def writable_workspace_target(sandbox: Sandbox, path: str) -> WorkspacePath:
    """resolve_workspace_target, refusing also anything inside a `.git` directory.

    git runs programs its config and hooks name (core.fsmonitor, filters, hooks), so a file tool
    that could write .git/config could run any command, even where the shell is not allowed. Refused:
    any path with a `.git` component (the repository's, a nested or submodule repository's), and
    any path that resolves into the repository's git directory (through a symlink, or named by a
    `.git` file's `gitdir:` line).
    """
    target = resolve_workspace_target(sandbox, path)
    root = posixpath.normpath(sandbox.root)
    real_root = sandbox.realpath(root)
    lexical_parts = posixpath.relpath(target.path, root).split("/")
    real_parts = posixpath.relpath(target.real, real_root).split("/")
    inside = GIT_DIR_NAME in lexical_parts or GIT_DIR_NAME in real_parts
    if not inside:
        inside = any(_is_within(target.real, git_dir) for git_dir in _git_dirs(sandbox, root, real_root))
    if inside:
        raise WorkspacePathError(
            f"{target.shown} is inside .git: the file tools do not write git's own files (config, hooks, "
            "HEAD, refs), because git runs programs named there. Use the git tools (git_commit, git_branch, "
            "git_checkout) to change the repository."
        )
    return target


def _git_dirs(sandbox: Sandbox, root: str, real_root: str) -> list[str]:
    """The real paths of the workspace's git directory: `.git` itself (through a symlink too) and
    the directory a `.git` file names with `gitdir:`; only those inside the workspace matter."""
    dot_git = posixpath.join(root, GIT_DIR_NAME)
    try:
        real = sandbox.realpath(dot_git)
        info = sandbox.stat(real)
        if info is None:
            return []
        if info.is_dir:
            return [real]
        first_line = sandbox.read_file(real, max_bytes=4096).decode("utf-8", "replace").split("\n")[0]
    except SandboxError:
        return []
    if not first_line.startswith("gitdir:"):
        return []
    named = posixpath.join(real_root, first_line.removeprefix("gitdir:").strip())
    return [sandbox.realpath(named)]


def display_path(sandbox: Sandbox, absolute_path: str) -> str:
    """How a sandbox path is shown to the model: relative to the root, "." for the root itself."""
    return posixpath.relpath(absolute_path, posixpath.normpath(sandbox.root))
