"""Which workspace paths the search tools skip: ripgrep's default filters, reproduced in Python.

The pure-Python grep engine, glob, ls and the repo map all see the file set that
`rg --no-require-git --no-ignore-parent --no-ignore-global` sees:
- hidden entries (the name starts with ".") are skipped, and so .git is;
- .gitignore, .ignore and .rgignore apply to their directory and below, the deepest directory
  with a matching pattern decides; inside one directory .rgignore beats .ignore beats .gitignore;
- .git/info/exclude applies at the root with the lowest precedence;
- symlinks are not followed and symlinked files are not listed (rg without -L);
- an rg -g glob (an "override") beats all of the above for the paths it matches.
Gaps: rg ranks .ignore/.rgignore above .gitignore across directory levels, and stops applying a
parent's .gitignore inside a nested git repository; we do neither (rare in practice).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Iterator

from pathspec import GitIgnoreSpec

from sandbox.base import Sandbox, SandboxError

IGNORE_FILE_NAMES = (".gitignore", ".ignore", ".rgignore")  # in increasing precedence
IGNORE_FILE_MAX_BYTES = 1 << 20  # a bigger ignore file is not read (treated as absent)


def is_hidden(name: str) -> bool:
    return name.startswith(".")


class IgnoreRules:
    """Ignore specs per directory of one workspace, read lazily through the sandbox."""

    def __init__(self, sandbox: Sandbox, root: str):
        self.sandbox = sandbox
        self.root = posixpath.normpath(root)
        self._specs: dict[str, GitIgnoreSpec | None] = {}  # relative dir ("" = root) -> its spec
        self._real_root: str | None = None

    def load_dir(self, rel_dir: str, names: Iterable[str] | None = None) -> None:
        """Read the ignore files of `rel_dir`; `names` (the dir's file names) saves failed reads."""
        if rel_dir in self._specs:
            return
        present = IGNORE_FILE_NAMES if names is None else [n for n in IGNORE_FILE_NAMES if n in set(names)]
        lines: list[str] = []
        if rel_dir == "":
            lines += self._read_lines(".git/info/exclude")
        for name in present:
            lines += self._read_lines(posixpath.join(rel_dir, name))
        patterns = [line for line in lines if line.strip() and not line.startswith("#")]
        self._specs[rel_dir] = GitIgnoreSpec.from_lines(patterns) if patterns else None

    def _read_lines(self, rel_path: str) -> list[str]:
        try:
            # Through a symlink only to a file inside the workspace; a huge one is not read at all.
            real = self.sandbox.realpath(posixpath.join(self.root, rel_path))
            if self._real_root is None:
                self._real_root = self.sandbox.realpath(self.root)
            if not real.startswith(self._real_root.rstrip("/") + "/"):
                return []
            data = self.sandbox.read_file(real, max_bytes=IGNORE_FILE_MAX_BYTES)
        except (SandboxError, OSError):
            return []
        return data.decode("utf-8", "replace").splitlines()

    def is_ignored(self, rel_path: str, is_dir: bool) -> bool:
        parts = rel_path.split("/")
        for depth in range(len(parts) - 1, -1, -1):  # the deepest directory first
            rel_dir = "/".join(parts[:depth])
            self.load_dir(rel_dir)
            spec = self._specs[rel_dir]
            if spec is None:
                continue
            sub_path = "/".join(parts[depth:]) + ("/" if is_dir else "")
            decision = spec.check_file(sub_path).include
            if decision is not None:
                return decision
        return False


# An rg -g override: True includes a path whatever the ignore files and hidden rule say, False
# excludes it, None leaves the decision to them.
Override = Callable[[str, bool], "bool | None"]


def walk_workspace(
    sandbox: Sandbox,
    start: str,
    rules: IgnoreRules,
    *,
    include_hidden: bool = False,
    override: Override | None = None,
) -> Iterator[tuple[str, bool]]:
    """(path relative to the root, is_dir) for every entry under `start` that rg would visit.

    `start` itself is never filtered: like rg, an explicitly named directory is searched even
    when it is hidden or ignored. Order is the sandbox's walk order; callers sort.
    """
    root = rules.root
    pruned: set[str] = set()
    for dirpath, dirnames, filenames in sandbox.walk(start):
        rel_dir = posixpath.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        # Pruning below is a speed-up; this check keeps us right when a walk ignores it.
        if _has_pruned_ancestor(rel_dir, pruned):
            dirnames[:] = []
            continue
        rules.load_dir(rel_dir, filenames)
        kept_dirs = []
        for name in dirnames:
            rel = posixpath.join(rel_dir, name)
            if _skip(sandbox, dirpath, name, rel, True, rules, include_hidden, override):
                pruned.add(rel)
                continue
            kept_dirs.append(name)
            yield rel, True
        dirnames[:] = kept_dirs
        for name in filenames:
            rel = posixpath.join(rel_dir, name)
            if not _skip(sandbox, dirpath, name, rel, False, rules, include_hidden, override):
                yield rel, False


def _skip(
    sandbox: Sandbox,
    dirpath: str,
    name: str,
    rel: str,
    is_dir: bool,
    rules: IgnoreRules,
    hidden: bool,
    override: Override | None,
) -> bool:
    decision = override(rel, is_dir) if override else None
    if decision is False:
        return True
    if decision is None and ((not hidden and is_hidden(name)) or rules.is_ignored(rel, is_dir)):
        return True
    info = sandbox.stat(posixpath.join(dirpath, name))
    return info is None or info.is_symlink


def _has_pruned_ancestor(rel_dir: str, pruned: set[str]) -> bool:
    if not pruned or not rel_dir:
        return False
    parts = rel_dir.split("/")
    return any("/".join(parts[:i]) in pruned for i in range(1, len(parts) + 1))
