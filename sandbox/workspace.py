"""The agent's workspace in a DockerSandbox: a copy (changes come back as a diff) or a bind mount.

Copy mode snapshots the copied workspace in a private git repository inside the container (its
git dir lives outside the workspace, so the user's own `.git` is untouched). `workspace_diff`
is then a git-style diff of the container's workspace against that snapshot, with new, deleted,
binary and mode-changed files, and `apply_diff_to_host` applies it to the real workspace with
`git apply` (all or nothing). Files the workspace's .gitignore rules ignore are not part of the
diff, just as `git status` would not show them.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import docker

from sandbox.base import SandboxError
from sandbox.base_image import base_image_tag
from sandbox.docker import DEFAULT_ROOT, DockerSandbox, Limits

Mode = Literal["copy", "bind"]

BASELINE_GIT_DIR = "/var/tmp/mmx-agent-baseline.git"
DIFF_FILE = "/var/tmp/mmx-agent-workspace.diff"
GIT_SECONDS = 600.0  # snapshotting or diffing a large workspace
# Settings that make the snapshot independent of any git config in the image or the workspace.
GIT = "git " + " ".join(
    f"-c {setting}"
    for setting in (
        "core.autocrlf=false",
        "core.filemode=true",
        "core.symlinks=true",
        "core.hooksPath=/dev/null",
        "core.fsmonitor=false",
        "commit.gpgsign=false",
        "advice.addEmbeddedRepo=false",
        "safe.directory=*",
        "user.name=mmx-agent",
        "user.email=mmx-agent@localhost",
    )
)


class WorkspaceSandbox(DockerSandbox):
    """A DockerSandbox whose root holds the user's workspace (see open_workspace_sandbox)."""

    host_workspace: Path
    mode: Mode

    def _git_env(self) -> dict[str, str]:
        return {
            "GIT_DIR": BASELINE_GIT_DIR,
            "GIT_WORK_TREE": self.root,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "HOME": "/nonexistent",  # older git has no GIT_CONFIG_GLOBAL: no home, no global config
        }

    def _git(self, script: str, what: str) -> None:
        result = self.exec(script, cwd=self.root, env=self._git_env(), timeout=GIT_SECONDS)
        if result.exit_code != 0:
            raise SandboxError(
                f"cannot {what} (git exit {result.exit_code}): {result.output.strip()[-2000:]}"
            )

    def snapshot(self) -> None:
        """Records the workspace as it is now: the state `workspace_diff` compares against."""
        self._git(
            f"rm -rf {BASELINE_GIT_DIR} && {GIT} init -q && {GIT} add -A && "
            f"{GIT} commit -q --allow-empty --no-verify -m baseline",
            "snapshot the workspace copy",
        )

    def workspace_diff(self) -> str:
        """A unified git-style diff (binary patches included) from the snapshot to the workspace now.

        Bytes that are not UTF-8 are kept as surrogate escapes, so apply_diff_to_host gets back
        exactly what git produced; encode with errors="replace" to display it.
        """
        if self.mode != "copy":
            raise SandboxError("a bind-mounted workspace is changed in place: there is no diff to bring back")
        self._git(
            f"{GIT} add -A && {GIT} diff --cached --binary --no-color --no-ext-diff --no-renames HEAD "
            f"> {shlex.quote(DIFF_FILE)}",
            "diff the workspace copy",
        )
        try:
            data = self.read_file(DIFF_FILE)
        finally:
            self.remove(DIFF_FILE)
        return data.decode("utf-8", errors="surrogateescape")

    def sync_back(self) -> str:
        """Applies the container's changes to the host workspace and re-snapshots; returns the diff."""
        diff = self.workspace_diff()
        apply_diff_to_host(self.host_workspace, diff)
        self.snapshot()
        return diff


def open_workspace_sandbox(
    workspace: str | os.PathLike[str],
    mode: Mode = "copy",
    *,
    image: str | None = None,
    limits: Limits = Limits(),
    user: str | None = None,
    root: str = DEFAULT_ROOT,
    env: Mapping[str, str] | None = None,
    skip: Callable[[str], bool] | None = None,
    client: docker.DockerClient | None = None,
) -> WorkspaceSandbox:
    """A sandbox whose `root` holds `workspace`.

    copy: the workspace is copied in (`skip(relative_path)` leaves entries out); the host is not
    touched until you apply `workspace_diff()` (or call `sync_back()`).
    bind: the workspace is mounted read-write; commands run as the host user by default, so the
    files they create belong to you.
    """
    workspace = Path(workspace).resolve()
    if not workspace.is_dir():
        raise SandboxError(f"workspace {str(workspace)!r} is not a directory")
    if mode not in ("copy", "bind"):
        raise SandboxError(f"unknown workspace mode {mode!r}: use 'copy' or 'bind'")
    env = dict(env or {})
    binds = None
    if mode == "bind":
        user = user or f"{os.getuid()}:{os.getgid()}"
        binds = {str(workspace): root}
    if user and user.split(":")[0] not in ("0", "root"):
        env.setdefault("HOME", "/tmp")  # a uid without a passwd entry would get HOME=/
    sandbox = WorkspaceSandbox.create(
        image or base_image_tag(), root=root, user=user, limits=limits, env=env, binds=binds, client=client
    )
    sandbox.host_workspace, sandbox.mode = workspace, mode
    try:
        if mode == "copy":
            sandbox.copy_in(workspace, root, skip=skip)
            sandbox.snapshot()
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def apply_diff_to_host(workspace: str | os.PathLike[str], diff: str) -> None:
    """Applies a workspace_diff to the host workspace, all or nothing; a clear error if it does not apply."""
    if not diff.strip():
        return
    workspace = Path(workspace).resolve()
    env = dict(os.environ)
    # Treat the workspace as the top: never let git find (and patch relative to) a parent repository.
    env["GIT_CEILING_DIRECTORIES"] = str(workspace.parent)
    result = subprocess.run(
        ["git", "apply", "--whitespace=nowarn", "-"],
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
