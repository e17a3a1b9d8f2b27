"""Where a destructive command's argument lands, and whether that place is protected.

Protected: everything outside the workspace, the workspace root itself, and its `.git`. Paths
are resolved the way the command would see them: relative to the shell's current directory,
through symlinks for commands that write through them, and without following the last
component for commands that remove the link itself (`rm link` deletes the link, not its target).
Globs are not expanded: a glob is judged by the directory it searches and by what its pattern
could match there (a `.*` at the root could match `.git`).
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

GLOB_CHARS = set("*?[")
# Writing to these is harmless (and `2>/dev/null` is everywhere).
HARMLESS_SINKS = ("/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty", "/dev/zero")
HARMLESS_SINK_DIRS = ("/dev/fd", "/proc/self/fd")


class Effect(Enum):
    REMOVE = "remove"  # the path itself goes away (symlinks are not followed)
    WRITE = "write"  # the file behind the path is overwritten or truncated (symlinks followed)
    DESTINATION = "destination"  # something is put at or into the path (cp/mv/ln target)
    SUBTREE = "subtree"  # anything below the path may be removed (find -delete starting points)


@dataclass(frozen=True)
class Target:
    text: str  # the argument after expansion (may hold glob characters)
    verb: str  # what the command does to it, for the message: "delete", "truncate", ...
    effect: Effect
    spares_git: bool = False  # SUBTREE only: the command's filters cannot select .git


@dataclass(frozen=True)
class Workspace:
    root: str  # real path of the workspace root
    home: str
    realpath: Callable[[str], str]

    @property
    def git_dir(self) -> str:
        return self.root + "/.git"


def is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def has_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def protection_reason(target: Target, cwd: str | None, ws: Workspace, dotglob: bool = False) -> str | None:
    """Why acting on `target` from `cwd` is refused, or None when it is allowed."""
    text = target.text
    if text == "":
        return None
    if target.effect in (Effect.WRITE, Effect.DESTINATION) and _is_harmless_sink(text):
        return None
    if not text.startswith("/"):
        if cwd is None:
            return (
                "a relative path, and the firewall cannot tell which directory the shell is in at that point"
            )
        text = posixpath.join(cwd, text)
    for path, glob_at_root in _resolutions(text, target.effect, ws, dotglob):
        reason = _reason_for(path, glob_at_root, target, ws)
        if reason:
            return f"{reason} ({path})"
    return None


def _reason_for(path: str, glob_could_match_git: bool, target: Target, ws: Workspace) -> str | None:
    if not is_within(path, ws.root):
        return "outside the workspace"
    if is_within(path, ws.git_dir):
        if target.effect is Effect.REMOVE and path.endswith(".lock"):
            return None  # removing a stale lock file left by a crashed git is routine
        return "inside the workspace's .git"
    if glob_could_match_git:
        return "a pattern that can match the workspace's .git"
    if path == ws.root:
        if target.effect is Effect.DESTINATION:
            return None  # copying or moving *into* the root is fine
        if target.effect is Effect.SUBTREE:
            return None if target.spares_git else "everything under the workspace root, .git included"
        return "the workspace root itself"
    return None


def _is_harmless_sink(text: str) -> bool:
    return text in HARMLESS_SINKS or any(is_within(text, d) for d in HARMLESS_SINK_DIRS)


def _resolutions(absolute: str, effect: Effect, ws: Workspace, dotglob: bool) -> list[tuple[str, bool]]:
    """The real paths `absolute` may stand for, each with whether a glob at the root could hit .git."""
    parts = absolute.split("/")
    first_glob = next((i for i, part in enumerate(parts) if has_glob(part)), None)
    if first_glob is None:
        return [(_resolve_plain(absolute, effect, ws), False)]
    base = ws.realpath("/".join(parts[:first_glob]) or "/")
    pattern = next(p for p in parts[first_glob:] if p)  # the glob component that reads `base`
    could_match_git = base == ws.root and _may_match(".git", pattern, dotglob)
    results = [(_walk_lexically(base, parts[first_glob:]), could_match_git)]
    if effect is not Effect.REMOVE and _may_match("..", pattern, dotglob):
        # Older shells let `.*` match `..` (rm refuses `..` by itself); judge that reading too.
        results.append((_walk_lexically(base, [".."] + parts[first_glob + 1 :]), False))
    return results


def _may_match(name: str, pattern: str, dotglob: bool) -> bool:
    # Without dotglob a leading dot must be matched literally.
    if name.startswith(".") and not pattern.startswith(".") and not dotglob:
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _walk_lexically(base: str, components: list[str]) -> str:
    path = base
    for part in components:
        if part in ("", "."):
            continue
        if part == "..":
            path = posixpath.dirname(path) or "/"
        else:
            # A glob component stands for "some entry here"; a name that cannot exist marks it.
            path = posixpath.join(path, "<glob>" if has_glob(part) else part)
    return path


def _resolve_plain(absolute: str, effect: Effect, ws: Workspace) -> str:
    stripped = absolute.rstrip("/")
    parent, _, name = stripped.rpartition("/")
    follows_last = effect is not Effect.REMOVE or absolute.endswith("/") or name in ("", ".", "..")
    if follows_last:
        return ws.realpath(absolute)
    # `rm link` removes the link itself: resolve the directory it sits in, keep its own name.
    return posixpath.join(ws.realpath(parent or "/"), name)
