"""Where a task's repository comes from, as a plain directory tree at the base commit (no history).

In this order: `--repos-dir DIR` holding DIR/<owner>__<name> (a git repository or a bare mirror);
the task's `source` ({"git": URL or path} or {"sdist": "package==version"}); otherwise a mirror
clone from GitHub, which needs a network and says so when there is none.

Trees and downloads are cached under the user's cache directory and shared by every task and run;
each cache entry is written to a temporary name and renamed when complete, so concurrent workers
and interrupted runs never see half an entry.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evals.task import Task

GITHUB_URL = "https://github.com/{repo}.git"
GIT_SECONDS = 1800
DIGEST_FILE = ".mmx-tree-digest"  # next to a cached tree, never inside it


class SourceError(Exception):
    """The repository or release cannot be had; the message says what to do about it."""


@dataclass(frozen=True)
class SourceTree:
    path: Path  # a directory holding the repository's files at the base commit (read-only: copy it)
    digest: str  # content hash of the tree: instance images are keyed by it
    origin: str  # for people: where it came from


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmx-agent" / "evals"


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _quiet(message: str) -> None:
    """The default progress sink: says nothing."""


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def _run(command: list[str], what: str, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, errors="replace", timeout=GIT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise SourceError(f"{what}: timed out after {GIT_SECONDS} s") from None
    except FileNotFoundError:
        raise SourceError(f"{what}: {command[0]} is not installed") from None
    if result.returncode != 0:
        raise SourceError(f"{what}: {(result.stderr or result.stdout).strip()[-2000:]}")
    return result.stdout


def _git_env() -> dict[str, str]:
    # The user's git config must not change what we check out (filters, hooks, eol rules).
    return {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
    }


def tree_digest(root: Path) -> str:
    """A hash of every path, its kind, executable bit and content (symlinks by target)."""
    digest = hashlib.sha256()
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(directory, d))]):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                digest.update(f"L {relative}\0{os.readlink(path)}\0".encode())
                continue
            file_hash = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    file_hash.update(chunk)
            executable = "x" if info.st_mode & 0o111 else "-"
            digest.update(f"F {relative}\0{executable}{file_hash.hexdigest()}\0".encode())
    return digest.hexdigest()[:32]


def _cached_tree(key: str, origin: str, fill) -> SourceTree:
    """The cached tree under `key`, made by `fill(directory)` the first time."""
    root = cache_root() / "trees"
    tree, digest_file = root / key, root / f"{key}{DIGEST_FILE}"
    with _lock_for(f"tree:{key}"):
        if not tree.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
            try:
                fill(scratch)
                try:
                    os.rename(scratch, tree)
                except OSError:
                    if not tree.is_dir():  # not another process that got there first
                        raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        if not digest_file.is_file():
            partial = digest_file.with_name(f".{digest_file.name}.{os.getpid()}")
            partial.write_text(tree_digest(tree))
            os.replace(partial, digest_file)
        return SourceTree(tree, digest_file.read_text().strip(), origin)


# -- git ------------------------------------------------------------------------------------------


def _git_dir(repository: Path) -> Path:
    out = _run(
        ["git", "-C", str(repository), "rev-parse", "--absolute-git-dir"],
        f"{repository} is not a git repository",
        env=_git_env(),
    )
    return Path(out.strip())


def _checkout_commit(git_dir: Path, commit: str, dest: Path, origin: str) -> None:
    """Writes the files of `commit` into `dest` (nothing else: no .git, no history).

    `git archive` would drop files marked export-ignore (often the tests), so the tree is read
    into a throwaway index and checked out from there.
    """
    env = _git_env()
    with tempfile.TemporaryDirectory(prefix="mmx-index-") as scratch:
        env["GIT_INDEX_FILE"] = os.path.join(scratch, "index")
        base = ["git", f"--git-dir={git_dir}", f"--work-tree={dest}", "-c", "core.hooksPath=/dev/null"]
        _run([*base, "read-tree", commit], f"cannot read commit {commit} of {origin}", env=env)
        _run([*base, "checkout-index", "-a", "-f"], f"cannot check out {commit} of {origin}", env=env)


def _tree_from_git(repository: Path, commit: str, origin: str) -> SourceTree:
    git_dir = _git_dir(repository)
    resolved = _run(
        ["git", f"--git-dir={git_dir}", "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
        f"base commit {commit} is not in {origin}",
        env=_git_env(),
    ).strip()
    key = "git-" + _short_hash(resolved)  # a commit id names its content: every clone shares the entry
    return _cached_tree(
        key, f"{origin} at {commit}", lambda dest: _checkout_commit(git_dir, resolved, dest, origin)
    )


def _mirror(url: str, progress: Callable[[str], None] = _quiet) -> Path:
    """A bare mirror of `url` in the cache (cloned once, fetched when a commit is missing)."""
    mirrors = cache_root() / "git"
    path = mirrors / (re.sub(r"[^A-Za-z0-9._-]+", "_", url)[-80:] + "-" + _short_hash(url)[:8])
    with _lock_for(f"mirror:{url}"):
        if not path.is_dir():
            progress(f"cloning {url} (once; later runs use the cached mirror)")
            mirrors.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".clone-", dir=mirrors))
            try:
                _run(
                    ["git", "clone", "--quiet", "--mirror", url, str(scratch / "repo.git")],
                    f"cannot clone {url}",
                    env=_git_env(),
                )
                os.rename(scratch / "repo.git", path)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    return path


def _tree_from_url(
    url: str, commit: str, *, github: bool, progress: Callable[[str], None] = _quiet
) -> SourceTree:
    try:
        mirror = _mirror(url, progress)
    except SourceError as e:
        if github:
            raise SourceError(
                f"{e}\nThe repository is not in --repos-dir and the task has no 'source', so it was to be "
                "cloned from GitHub, which needs a network. Put a clone or mirror at "
                "--repos-dir DIR/<owner>__<name>, or give the task a source."
            ) from None
        raise
    try:
        return _tree_from_git(mirror, commit, url)
    except SourceError:
        # The mirror may predate the commit: fetch once and try again.
        _run(
            ["git", f"--git-dir={mirror}", "fetch", "--quiet", "--prune", "origin"],
            f"cannot fetch {url}",
            env=_git_env(),
        )
        return _tree_from_git(mirror, commit, url)


# -- PyPI source distributions --------------------------------------------------------------------


def sdist_archive(spec: str, progress: Callable[[str], None] = _quiet) -> Path:
    """The source distribution `package==version`, downloaded from the package index once."""
    store = cache_root() / "sdists" / spec.replace("==", "-").lower()
    with _lock_for(f"sdist:{spec}"):
        existing = sorted(store.glob("*")) if store.is_dir() else []
        if existing:
            return existing[0]
        progress(f"downloading the source distribution {spec} from the package index")
        scratch = Path(tempfile.mkdtemp(prefix="mmx-sdist-"))
        try:
            command = [
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--no-binary", ":all:", "--dest", str(scratch), spec,
            ]  # fmt: skip
            _run(
                command, f"cannot download the source distribution {spec} (the host needs the package index)"
            )
            files = [p for p in scratch.iterdir() if p.is_file()]
            if len(files) != 1:
                raise SourceError(f"pip download {spec} left {len(files)} files, expected one source archive")
            store.mkdir(parents=True, exist_ok=True)
            target = store / files[0].name
            shutil.move(files[0], target.with_name(target.name + ".part"))
            os.replace(target.with_name(target.name + ".part"), target)
            return target
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _extract_sdist(archive: Path, dest: Path) -> None:
    """Extracts the archive's single top-level directory as `dest` itself."""
    with tempfile.TemporaryDirectory(prefix="mmx-unpack-", dir=dest.parent) as scratch:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise SourceError(f"{archive.name}: unsafe path {member!r} in the archive")
                z.extractall(scratch)
        else:
            with tarfile.open(archive) as t:
                t.extractall(scratch, filter="data")  # no absolute paths, no escapes, no devices
        entries = list(Path(scratch).iterdir())
        if len(entries) != 1 or not entries[0].is_dir():
            raise SourceError(f"{archive.name} does not hold exactly one top-level directory")
        for entry in entries[0].iterdir():
            shutil.move(str(entry), dest / entry.name)


def sdist_tree(spec: str, progress: Callable[[str], None] = _quiet) -> SourceTree:
    archive = sdist_archive(spec, progress)
    key = "sdist-" + _short_hash(spec, archive.name, str(archive.stat().st_size))
    return _cached_tree(key, f"PyPI source distribution {spec}", lambda dest: _extract_sdist(archive, dest))


# -- the order of precedence ----------------------------------------------------------------------


def repos_dir_entry(repos_dir: Path, repo: str) -> Path:
    return repos_dir / repo.replace("/", "__")


def materialize(
    task: Task, repos_dir: Path | None = None, progress: Callable[[str], None] = _quiet
) -> SourceTree:
    """The task's repository at its base commit, as a cached plain tree (`progress` hears of downloads)."""
    if repos_dir is not None and task.repo:
        candidate = repos_dir_entry(repos_dir, task.repo)
        if candidate.exists():
            return _tree_from_git(candidate, task.base_commit, str(candidate))
    source = task.source or {}
    if "sdist" in source:
        return sdist_tree(source["sdist"], progress)
    if "git" in source:
        location = source["git"]
        if "://" not in location and not re.match(r"^[\w.-]+@[\w.-]+:", location):
            path = Path(location).expanduser()
            if not path.exists():
                raise SourceError(f"{task.instance_id}: source.git {location!r} does not exist")
            return _tree_from_git(path, task.base_commit, location)
        return _tree_from_url(location, task.base_commit, github=False, progress=progress)
    return _tree_from_url(GITHUB_URL.format(repo=task.repo), task.base_commit, github=True, progress=progress)
