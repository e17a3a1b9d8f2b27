"""Snapshots of a directory tree, and diffs between them, made by the host's git in a private store.

Copy mode compares what it copied into a container with what the container's workspace holds
later. Both sides are directories on the host (unpacked by tar_unpack), and every git command
here runs on the host with nothing the workspace or the model can configure:

- a private repository (its own config, info/attributes and info/exclude), no system or global
  config, HOME and XDG_CONFIG_HOME pointing into the store, and no inherited GIT_* variables;
- no hooks, no fsmonitor, no filters, textconv or external diff; attributes that rewrite content
  (text, eol, ident, filter, working-tree-encoding) are switched off, so blobs are the bytes;
- which untracked files are ignored comes from the .gitignore files of a snapshot we already
  trust (the copy-in), checked in a shadow tree that holds only those files, so the container's
  own .gitignore files are content, never rules;
- `git update-index` stages exactly the paths we list: symbolic links as links (never
  followed) and no path with a `.git` component (tar_unpack never unpacks one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from sandbox.base import SandboxError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
GIT_SECONDS = 600.0  # hashing a large workspace
IGNORE_FILE = ".gitignore"
CONTENT_UNCHANGED = "* -text -eol -ident -filter -working-tree-encoding\n"
HARDENED_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.autocrlf=false",
    "core.safecrlf=false",
    "core.symlinks=true",
    "core.filemode=true",
    "core.quotePath=true",
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    "diff.noprefix=false",
    "diff.mnemonicPrefix=false",
)


class TreeStoreError(SandboxError):
    """A git command of the store failed."""


def hardened_git_env(home: Path, **git_vars: str) -> dict[str, str]:
    """An environment for the host's git that reads no configuration but ours."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "GIT_NO_REPLACE_OBJECTS": "1",
    }
    env.update(git_vars)
    return env


def git_command(*args: str) -> list[str]:
    return ["git", *(part for setting in HARDENED_CONFIG for part in ("-c", setting)), *args]


class TreeStore:
    """A private git object store in `directory` (created; removed by `remove`)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.git_dir = self.directory / "store.git"
        self._run(["init", "-q", "--bare", str(self.git_dir)], env=hardened_git_env(self.directory))
        info = self.git_dir / "info"
        info.mkdir(exist_ok=True)
        (info / "attributes").write_text(CONTENT_UNCHANGED)
        (info / "exclude").write_text("")

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self, tree: Path, *, rules_from: str | None = None) -> str:
        """The git tree id of directory `tree`: its files and symbolic links, less the untracked
        files that .gitignore rules ignore.

        rules_from=None: `tree` is trusted (the copy-in) and its own .gitignore files are the rules.
        rules_from=TREE_ID: the rules and the tracked paths are that snapshot's (tracked files stay
        whatever the rules say, untracked ones are ignored by those rules alone).
        """
        directories, paths = _walk(tree)
        if rules_from is None:
            tracked: set[str] = set()
            rules = {p: (tree / p).read_bytes() for p in paths if _is_rules_file(tree, p)}
        else:
            tracked = set(self._tree_paths(rules_from))
            rules = self._rules_of(rules_from)
        untracked = [p for p in paths if p not in tracked]
        ignored = self._ignored(untracked, directories, rules)
        kept = [p for p in paths if p not in ignored]
        with tempfile.TemporaryDirectory(dir=self.directory) as scratch:
            env = self._env(tree, GIT_INDEX_FILE=os.path.join(scratch, "index"))
            self._run(["update-index", "--add", "-z", "--stdin"], env=env, stdin=_nul_joined(kept))
            return self._run(["write-tree"], env=env).decode().strip()

    def diff(self, old: str, new: str) -> str:
        """A git-style patch from tree `old` to tree `new` that `git apply` accepts (binary included).

        Bytes that are not UTF-8 are kept as surrogate escapes, so apply_diff_to_host gets back
        exactly what git produced; encode with errors="replace" to display it.
        """
        args = [
            "diff-tree",
            "-p",
            "--binary",
            "--full-index",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            old,
            new,
        ]
        return self._run(args, env=self._env(None)).decode("utf-8", errors="surrogateescape")

    # -- helpers -----------------------------------------------------------------------------

    def _tree_paths(self, tree_id: str) -> list[str]:
        listing = self._run(
            ["ls-tree", "-r", "-z", "--name-only", "--full-tree", tree_id], env=self._env(None)
        )
        return [os.fsdecode(name) for name in listing.split(b"\0") if name]

    def _rules_of(self, tree_id: str) -> dict[str, bytes]:
        """The .gitignore files (regular files only) of a snapshot, by path."""
        listing = self._run(["ls-tree", "-r", "-z", "--full-tree", tree_id], env=self._env(None))
        rules = {}
        for entry in listing.split(b"\0"):
            if not entry:
                continue
            meta, _, name = entry.partition(b"\t")
            mode, _, object_id = meta.split(b" ")
            path = os.fsdecode(name)
            if path.rsplit("/", 1)[-1] == IGNORE_FILE and mode in (b"100644", b"100755"):
                rules[path] = self._run(["cat-file", "blob", object_id.decode()], env=self._env(None))
        return rules

    def _ignored(self, candidates: list[str], directories: list[str], rules: dict[str, bytes]) -> set[str]:
        """Which of `candidates` the `rules` ignore, asked of git in a shadow tree that holds the
        same directories and only the rules files."""
        if not rules or not candidates:
            return set()
        with tempfile.TemporaryDirectory(dir=self.directory) as shadow:
            for directory in directories:
                os.mkdir(os.path.join(shadow, directory))
            known = set(directories) | {""}
            for path, content in rules.items():
                if path.rpartition("/")[0] in known and path not in known:
                    Path(shadow, path).write_bytes(content)
            env = self._env(Path(shadow))
            output = self._run(
                ["check-ignore", "--no-index", "-z", "--stdin"],
                env=env,
                # "./": a name such as ":!x" must not read as pathspec magic; git answers in kind.
                stdin=_nul_joined("./" + path for path in candidates),
                allowed_codes=(0, 1),  # 1: none of them is ignored
            )
        return {os.fsdecode(name)[2:] for name in output.split(b"\0") if name}

    def _env(self, work_tree: Path | None, **extra: str) -> dict[str, str]:
        git_vars = {"GIT_DIR": str(self.git_dir), **extra}
        if work_tree is not None:
            git_vars["GIT_WORK_TREE"] = str(work_tree)
        return hardened_git_env(self.directory, **git_vars)

    def _run(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        stdin: bytes = b"",
        allowed_codes: tuple[int, ...] = (0,),
    ) -> bytes:
        work_tree = env.get("GIT_WORK_TREE")
        try:
            result = subprocess.run(
                git_command(*args),
                input=stdin,
                env=env,
                cwd=work_tree or self.directory,
                capture_output=True,
                timeout=GIT_SECONDS,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TreeStoreError(f"git {args[0]} failed on the host: {e}") from None
        if result.returncode not in allowed_codes:
            message = result.stderr.decode("utf-8", errors="replace").strip()[-2000:]
            raise TreeStoreError(f"git {args[0]} failed on the host (exit {result.returncode}): {message}")
        return result.stdout


def _walk(tree: Path) -> tuple[list[str], list[str]]:
    """(directories, files and symbolic links) under `tree`, relative, "/"-separated, parents first.

    Never follows a symbolic link: a link to a directory is a path like any other."""
    directories: list[str] = []
    paths: list[str] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(tree / relative if relative else tree) as entries:
            for entry in entries:
                path = f"{relative}/{entry.name}" if relative else entry.name
                if entry.is_dir(follow_symlinks=False):
                    directories.append(path)
                    pending.append(path)
                elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
                    paths.append(path)
    return directories, paths


def _is_rules_file(tree: Path, path: str) -> bool:
    return (
        path.rsplit("/", 1)[-1] == IGNORE_FILE and (tree / path).is_file() and not (tree / path).is_symlink()
    )


def _nul_joined(paths: Iterable[str]) -> bytes:
    return b"".join(os.fsencode(path) + b"\0" for path in paths)
