"""The Sandbox protocol: the only way tools touch files and processes.

Every tool goes through a Sandbox so that the local (host, workspace-bounded) and the Docker
implementations are interchangeable. Paths are absolute paths *as the sandbox sees them*
(for the local sandbox they are host paths; for Docker, paths inside the container).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass
class ExecResult:
    exit_code: int | None  # None when the process was killed before it exited on its own
    output: str  # stdout and stderr interleaved, possibly capped (see `elided`)
    timed_out: bool = False
    elided: int = 0  # bytes dropped from the middle of the output by the cap
    oom_killed: bool = False  # the kernel's OOM killer stopped a process (only containers can tell)


@dataclass
class FileInfo:
    path: str
    size: int
    mode: int  # st_mode permission bits and type
    mtime: float
    is_dir: bool
    is_symlink: bool


class OutputRedactor(Protocol):
    """Hides secrets in command output before it is capped (agent/secrets.py: Redactor)."""

    def redact(self, text: str) -> str: ...

    def unfinished_end(self, text: str) -> int:
        """Where a secret cut through at the end of `text` would start (len(text): none)."""

    def unfinished_start(self, text: str) -> int:
        """Where a secret cut through at the start of `text` would end (0: none)."""


class SandboxError(Exception):
    """A sandbox operation failed (missing file, permission, daemon error)."""


class FileTooLarge(SandboxError):
    """read_file's max_bytes was exceeded; `size` is the size of the file it opened."""

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size


@runtime_checkable
class Sandbox(Protocol):
    root: str  # the workspace root, as the sandbox sees it
    env: dict[str, str]  # added to every command's environment (secret redaction reads it too)
    confinement: str  # what confines exec(confined=True): bwrap | landlock | none | docker

    def exec(
        self,
        command: str,
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        max_output: int = 1_000_000,
        confined: bool = True,
        redactor: OutputRedactor | None = None,
    ) -> ExecResult:
        """Run `command` with bash in its own process group; on timeout kill the whole group.

        `redactor` hides secrets in the output before it is cut to `max_output` (a head and a tail):
        a secret across a cut is dropped whole, never shown in part.

        `confined=False` is for the project's own helper commands (git tools, checkpoints, firewall
        probes), which must write where the model's commands may not (.git, the checkpoint store) and
        never run programs the model wrote; everything the model asks for runs confined."""

    def read_file(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes of a regular file (FIFOs, sockets and devices are refused, not opened for
        long). Over `max_bytes` (the opened file's size, so a symlink's target counts) it raises
        FileTooLarge without reading. Every component of `path` must be a real directory or
        file: a symlink on the way is refused, never followed (callers pass realpath results)."""

    def write_file(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        """Atomic write (temp file + rename in the same directory); creates parents; keeps an
        existing file's mode unless `mode` is given. Like read_file, it refuses a symlink
        anywhere on `path`: each directory is opened relative to the one before, O_NOFOLLOW."""

    def stat(self, path: str) -> FileInfo | None:
        """lstat-like; None when the path does not exist."""

    def realpath(self, path: str) -> str: ...

    def listdir(self, path: str) -> list[str]: ...

    def walk(self, path: str) -> Iterator[tuple[str, list[str], list[str]]]:
        """Like os.walk (top-down, symlinks not followed), in as few round trips as the sandbox allows."""

    def remove(self, path: str) -> None: ...

    def sync_back(self) -> str | None:
        """With a workspace copied into the sandbox: apply the run's changes to the host workspace and
        return the diff applied. None when the sandbox works on the workspace in place."""

    def close(self) -> None: ...
