"""The agent's workspace in a DockerSandbox: a copy (changes come back as a diff) or a bind mount.

Copy mode trusts nothing inside the container for the diff: no git, python3, tar or shell of the
container takes part. The copy-in tar is unpacked on the host and snapshotted by the host's git
in a private store (tree_store.py); later the engine archives the container's workspace
(get_archive: made by the Docker engine, not by the container's programs), tar_unpack unpacks it
into a private host directory within caps, and the host's git diffs the two snapshots. The diff
has new, deleted, binary and mode-changed files and symbolic links; files ignored by the copied
workspace's .gitignore rules are not part of it, and nothing under `.git` ever is.
`apply_diff_to_host` applies it to the real workspace with a hardened `git apply` (all or nothing).

The workspace lives on a size-limited tmpfs (Limits.disk): a full workspace fails writes with
ENOSPC inside the container and never touches the host's disk.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal

import docker

from sandbox.base import SandboxError
from sandbox.base_image import base_image_tag
from sandbox.docker import (
    DEFAULT_DISK,
    DEFAULT_FILES,
    DEFAULT_ROOT,
    SANDBOX_USER,
    WORKSPACE_LIMITS,
    DockerSandbox,
    Limits,
    parse_size,
)
from sandbox.tar_unpack import UnpackCaps, unpack
from sandbox.tree_store import TreeStore, git_command, hardened_git_env

Mode = Literal["copy", "bind"]

TAR_ENTRY_OVERHEAD = 10 * 1024  # a header block, and PAX records for a long name and link target


def export_caps(limits: Limits) -> UnpackCaps:
    """What an export of the workspace may hold: no more than its tmpfs can (a sparse file counts
    at its full size, so one that claims more is refused)."""
    file_bytes = parse_size(limits.disk or DEFAULT_DISK)
    entries = (limits.files or DEFAULT_FILES) + 1  # the workspace directory itself
    return UnpackCaps(
        file_bytes=file_bytes, entries=entries, stream_bytes=file_bytes + entries * TAR_ENTRY_OVERHEAD
    )


class WorkspaceSandbox(DockerSandbox):
    """A DockerSandbox whose root holds the user's workspace (see open_workspace_sandbox)."""

    host_workspace: Path
    mode: Mode
    _store: TreeStore | None = None
    _baseline: str = ""  # tree id in _store of the workspace as the host last saw it

    def copy_workspace_in(self, skip: Callable[[str], bool] | None = None) -> None:
        """Copies the host workspace to `root` and snapshots exactly what was sent, on the host."""
        self._store = TreeStore(tempfile.mkdtemp(prefix="mmx-agent-workspace-"))
        caps = export_caps(self.limits)
        with tempfile.TemporaryFile(dir=self._store.directory) as spool:
            # Into the root itself: with a read-only root file system the engine only writes to volumes.
            self.tar_for_copy_in(self.host_workspace, ".", spool, skip=skip, check=_fits(caps))
            spool.seek(0)
            self.put_archive(self.root, spool)
            spool.seek(0)
            with self._unpacked(_chunks(spool), top=".", caps=caps) as tree:
                self._baseline = self._store.snapshot(tree)

    def workspace_diff(self) -> str:
        """A unified git-style diff (binary patches included) from the baseline to the workspace now.

        Bytes that are not UTF-8 are kept as surrogate escapes, so apply_diff_to_host gets back
        exactly what git produced; encode with errors="replace" to display it.
        """
        return self._diff_against_baseline()[0]

    def sync_back(self) -> str | None:
        """Applies the container's changes to the host workspace; they become the new baseline.
        A bind-mounted workspace was changed in place: None."""
        if self.mode != "copy":
            return None
        diff, tree_id = self._diff_against_baseline()
        apply_diff_to_host(self.host_workspace, diff)
        self._baseline = tree_id
        return diff

    def _diff_against_baseline(self) -> tuple[str, str]:
        if self.mode != "copy" or self._store is None:
            raise SandboxError("a bind-mounted workspace is changed in place: there is no diff to bring back")
        store = self._store
        caps = export_caps(self.limits)
        top = posixpath.basename(posixpath.normpath(self.root))  # the engine's name for the root
        with self._unpacked(self.archive_stream(self.root), top=top, caps=caps) as tree:
            tree_id = store.snapshot(tree, rules_from=self._baseline)
        return store.diff(self._baseline, tree_id), tree_id

    @contextmanager
    def _unpacked(self, chunks, *, top: str, caps: UnpackCaps) -> Iterator[Path]:
        assert self._store is not None
        directory = Path(tempfile.mkdtemp(prefix="tree-", dir=self._store.directory))
        try:
            try:
                unpack(chunks, directory, top=top, caps=caps)
            except SandboxError as e:
                raise SandboxError(f"cannot bring the sandbox's workspace back: {e}") from None
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._store is not None:
                self._store.remove()


def _fits(caps: UnpackCaps) -> Callable[[tarfile.TarInfo], None]:
    """A copy-in check: the workspace must fit the sandbox's tmpfs, said before anything is sent."""
    seen = {"bytes": 0, "entries": 0}

    def check(info: tarfile.TarInfo) -> None:
        seen["entries"] += 1
        seen["bytes"] += info.size if info.isfile() else 0
        if seen["bytes"] > caps.file_bytes or seen["entries"] > caps.entries:
            raise SandboxError(
                f"the workspace does not fit the sandbox's disk (more than {caps.file_bytes:,} bytes or "
                f"{caps.entries - 1:,} files): raise the disk limit (docker_disk) or leave large "
                "directories out"
            )

    return check


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    while chunk := spool.read(1 << 20):
        yield chunk


def open_workspace_sandbox(
    workspace: str | os.PathLike[str],
    mode: Mode = "copy",
    *,
    image: str | None = None,
    limits: Limits = WORKSPACE_LIMITS,
    user: str | None = None,
    root: str = DEFAULT_ROOT,
    env: Mapping[str, str] | None = None,
    skip: Callable[[str], bool] | None = None,
    client: docker.DockerClient | None = None,
) -> WorkspaceSandbox:
    """A sandbox whose `root` holds `workspace`.

    copy: the workspace is copied in (`skip(relative_path)` leaves entries out) onto a tmpfs of
    `limits.disk`, and commands run as nobody (65534) by default; the host is not touched until
    you apply `workspace_diff()` (or call `sync_back()`).
    bind: the workspace is mounted read-write; commands run as the host user by default, so the
    files they create belong to you. A bind mount has no disk quota (it is the host's disk).
    """
    workspace = Path(workspace).resolve()
    if not workspace.is_dir():
        raise SandboxError(f"workspace {str(workspace)!r} is not a directory")
    if mode not in ("copy", "bind"):
        raise SandboxError(f"unknown workspace mode {mode!r}: use 'copy' or 'bind'")
    binds = None
    if mode == "bind":
        user = user or f"{os.getuid()}:{os.getgid()}"
        binds = {str(workspace): root}
    sandbox = WorkspaceSandbox.create(
        image or base_image_tag(),
        root=root,
        user=user or SANDBOX_USER,
        limits=limits,
        env=env,
        binds=binds,
        client=client,
    )
    sandbox.host_workspace, sandbox.mode = workspace, mode
    try:
        if mode == "copy":
            sandbox.copy_workspace_in(skip)
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def apply_diff_to_host(workspace: str | os.PathLike[str], diff: str) -> None:
    """Applies a workspace_diff to the host workspace, all or nothing; a clear error if it does not apply.

    The host's git runs with a private, empty repository as its git dir: it reads neither the
    user's config nor the workspace's (whose filters could run programs), never patches relative
    to a parent repository, and writes the diff's bytes as they are (no eol or filter
    conversions). `git apply` itself refuses paths outside the workspace, in `.git`, or beyond a
    symbolic link.
    """
    if not diff.strip():
        return
    workspace = Path(workspace).resolve()
    with tempfile.TemporaryDirectory(prefix="mmx-agent-apply-") as private:
        store = TreeStore(private)
        env = hardened_git_env(Path(private), GIT_DIR=str(store.git_dir), GIT_WORK_TREE=str(workspace))
        result = subprocess.run(
            git_command("apply", "--whitespace=nowarn", "-"),
            input=diff.encode("utf-8", errors="surrogateescape"),
            cwd=workspace,
            env=env,
            capture_output=True,
        )
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", errors="replace").strip()
        raise SandboxError(
            f"the sandbox's changes do not apply to {workspace} (nothing was changed): {message}"
        )
