"""Git commands that can throw away uncommitted work, and how the firewall checks them.

`git_action(args)` recognises `git reset --hard`, `git checkout -- PATHS` (and `.`, `-f`),
`git restore PATHS`, `git switch --discard-changes` and `git clean -f`. Whether they would lose
anything depends on the repository, so the firewall asks a GitProbe: SandboxGitProbe reads the
real state with git through the sandbox, using --no-optional-locks so that `git status` never
refreshes (rewrites) the user's index, and git_guard.py's environment so that the probe runs no
program the repository's config names (a `core.fsmonitor` planted in .git/config, say).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Protocol

from agent.tools.firewall.words import Unknown, parse_options
from agent.tools.git_guard import GitConfigError, git_argv, guarded_git_env
from sandbox.base import ExecResult, Sandbox

q = shlex.quote


@dataclass
class GitAction:
    """A git command that may discard uncommitted work; checked against the repository."""

    command: str  # e.g. "git reset --hard", for messages
    kind: str  # "dirty": discards changes to tracked files; "clean": deletes untracked files
    chdirs: list[str] = field(default_factory=list)  # `git -C` arguments, applied in order
    pathspecs: list[str] = field(default_factory=list)  # empty: the whole work tree
    clean_args: list[str] = field(default_factory=list)
    opaque: bool = False  # --git-dir / --work-tree given: cannot be checked


class GitProbe(Protocol):
    """Looks at a repository's real state (through the sandbox)."""

    def dirty_files(self, cwd: str, pathspecs: list[str]) -> list[str]:
        """Tracked files with uncommitted changes, limited to `pathspecs` (all when empty)."""

    def files_clean_would_remove(self, cwd: str, clean_args: list[str]) -> list[str]:
        """What `git clean` with these arguments (minus -f) would delete."""


class SandboxGitProbe:
    """A GitProbe that runs git through the sandbox, so the Docker sandbox works unchanged."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox

    def _git(self, cwd: str, args: list[str]) -> ExecResult:
        """`git -C cwd ARGS` with git_guard's environment."""
        try:
            env = guarded_git_env(self.sandbox, cwd)
        except GitConfigError as e:
            # 128: git refuses to start there (no such directory, a config it cannot parse), and so
            # would the checked command; anything else (a timeout) counts as "could not read".
            return ExecResult(exit_code=e.exit_code if e.exit_code == 128 else 1, output=str(e))
        command = shlex.join(git_argv(args, ["--no-optional-locks", "-C", cwd]))
        return self.sandbox.exec(command, timeout=60, env=env, confined=False)

    def dirty_files(self, cwd: str, pathspecs: list[str]) -> list[str]:
        result = self._git(cwd, ["status", "--porcelain=v1", "-z", "--untracked-files=no", "--", *pathspecs])
        if result.exit_code == 128:
            return []  # not a repository: the git command itself would fail
        if result.exit_code != 0:
            return ["(the repository's state could not be read)"]
        entries = result.output.split("\0")
        files, skip_next = [], False
        for entry in entries:
            if skip_next:
                skip_next = False
            elif len(entry) > 3:
                files.append(entry[3:])
                skip_next = entry[0] in "RC"  # a rename is followed by its old path
        return files

    def files_clean_would_remove(self, cwd: str, clean_args: list[str]) -> list[str]:
        result = self._git(cwd, ["clean", "-n", *clean_args])
        if result.exit_code == 128:
            return []
        if result.exit_code != 0:
            return ["(could not list what git clean would remove)"]
        return [
            line[len("Would remove ") :]
            for line in result.output.splitlines()
            if line.startswith("Would remove ")
        ]


def git_action(args: list[str]) -> GitAction | None:
    """The work-discarding action of `git ARGS`, or None when it cannot lose work."""
    chdirs: list[str] = []
    opaque = False
    i = 0
    while i < len(args) and args[i].startswith("-") and not isinstance(args[i], Unknown):
        arg = args[i]
        i += 1
        if arg == "-C" and i < len(args):
            chdirs.append(args[i])
            i += 1
        elif arg in ("-c", "--exec-path", "--namespace", "--config-env") and i < len(args):
            i += 1
        elif arg in ("--git-dir", "--work-tree"):
            opaque = True
            i += 1
        elif arg.startswith(("--git-dir=", "--work-tree=")):
            opaque = True
    if i >= len(args):
        return None
    sub, rest = args[i], args[i + 1 :]
    action = _git_subcommand(sub, rest)
    if action:
        action.chdirs, action.opaque = chdirs, opaque
    return action


def _git_subcommand(sub: str, args: list[str]) -> GitAction | None:
    if sub == "reset":
        if any(a in ("--hard", "--merge") for a in args):
            return GitAction("git reset --hard", "dirty")
    elif sub == "checkout":
        parsed = parse_options(args, "bB", ("orphan", "conflict"))
        if "--" in args:
            pathspecs = args[args.index("--") + 1 :]
            return GitAction("git checkout --", "dirty", pathspecs=pathspecs) if pathspecs else None
        if parsed.flags & {"f", "force"}:
            return GitAction("git checkout --force", "dirty")
        if parsed.operands:
            # A branch name read as a pathspec matches no changed file, so this is safe to check.
            return GitAction("git checkout", "dirty", pathspecs=parsed.operands)
    elif sub == "restore":
        parsed = parse_options(args, "s", ("source",))
        only_index = parsed.flags & {"S", "staged"} and not parsed.flags & {"W", "worktree"}
        if parsed.operands and not only_index:
            return GitAction("git restore", "dirty", pathspecs=parsed.operands)
    elif sub == "switch":
        parsed = parse_options(args, "cC", ("create", "force-create", "orphan"))
        if parsed.flags & {"f", "force", "discard-changes"}:
            return GitAction("git switch --discard-changes", "dirty")
    elif sub == "clean":
        parsed = parse_options(args, "e", ("exclude",))
        if parsed.flags & {"n", "dry-run"} or not parsed.flags & {"f", "force", "i", "interactive"}:
            return None
        return GitAction("git clean", "clean", clean_args=_without_force(args))
    return None


def _without_force(clean_args: list[str]) -> list[str]:
    """git clean's arguments minus -f and -i, for a dry run that lists what it would delete."""
    kept = []
    for arg in clean_args:
        if arg in ("--force", "--interactive"):
            continue
        if arg.startswith("-") and not arg.startswith("--") and not isinstance(arg, Unknown):
            letters = arg[1:].replace("f", "").replace("i", "")
            if letters:
                kept.append("-" + letters)
            continue
        kept.append(arg)
    return kept
