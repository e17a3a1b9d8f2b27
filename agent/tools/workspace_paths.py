"""Model-given paths, resolved inside the workspace and shown back relative to it.

The model names paths relative to the workspace root (absolute ones are accepted when they lie
inside it). Anything that leaves the root, lexically (`..`) or through a symlink, is refused.
Paths are POSIX because both sandboxes (host Linux, Docker) are.
"""

from __future__ import annotations

import posixpath

from sandbox.base import Sandbox


class WorkspacePathError(ValueError):
    """A path the model gave cannot be used; the message is written for the model."""


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_workspace_path(sandbox: Sandbox, path: str | None) -> str:
    """The absolute sandbox path for `path` (None or "" means the root); refuses escapes."""
    root = posixpath.normpath(sandbox.root)
    if not path or path == ".":
        return root
    candidate = posixpath.normpath(posixpath.join(root, path))
    if not _is_within(candidate, root):
        raise WorkspacePathError(f"path {path!r} is outside the workspace; use a path relative to the root")
    # A symlink inside the workspace may point outside it: compare the fully resolved paths.
    real_root = sandbox.realpath(root)
    real_candidate = sandbox.realpath(candidate)
    if not _is_within(real_candidate, real_root):
        raise WorkspacePathError(
            f"path {path!r} resolves through a symlink to a place outside the workspace; refused"
        )
    return candidate


def display_path(sandbox: Sandbox, absolute_path: str) -> str:
    """How a sandbox path is shown to the model: relative to the root, "." for the root itself."""
    return posixpath.relpath(absolute_path, posixpath.normpath(sandbox.root))
