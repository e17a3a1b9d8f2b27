"""The local sandbox: host processes and files, working in one workspace directory.

It does not jail anything (the tools enforce the workspace boundary and the firewall screens
shell commands); it makes process handling dependable: every command runs in its own process
group so a timeout kills all of it, output is capped to a head and a tail, and file writes are
atomic so a crash never leaves a torn file.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator

from sandbox import docker_helper as files
from sandbox.base import ExecResult, FileInfo, FileTooLarge, OutputRedactor, SandboxError

# After TERM, how long a process group gets to exit before KILL.
KILL_GRACE_SECONDS = 2.0
# After the shell exits, how long to keep draining output that its background children may
# still be writing to the shared pipe before we stop reading.
DRAIN_SECONDS = 1.0


class CappedOutput:
    """Keeps the first and last bytes of a stream, counting what falls in between.

    With a redactor, secrets are hidden as if the whole output had been redacted before the cut:
    the head's end and the tail's start are dropped where they may be part of a secret."""

    def __init__(self, limit: int, redactor: OutputRedactor | None = None):
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.elided = 0
        self.redactor = redactor

    def add(self, chunk: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        overflow = len(self.tail) - self.tail_limit
        if overflow > 0:
            del self.tail[:overflow]
            self.elided += overflow

    def text(self) -> str:
        redactor = self.redactor
        if not self.elided:
            whole = (self.head + self.tail).decode("utf-8", errors="replace")
            return redactor.redact(whole) if redactor else whole
        head_bytes, tail_bytes = bytes(self.head), bytes(self.tail)
        if redactor is None:
            head, tail = head_bytes.decode("utf-8", "replace"), tail_bytes.decode("utf-8", "replace")
            return f"{head}\n[... {self.elided} bytes elided ...]\n{tail}"
        # A character split by the cut belongs to what was cut; so does a secret split by it.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        head = decoder.decode(head_bytes)  # an unfinished last character stays in the decoder
        skip = 0
        while skip < min(3, len(tail_bytes)) and tail_bytes[skip] & 0xC0 == 0x80:
            skip += 1  # continuation bytes: the rest of a character that began before the cut
        tail = tail_bytes[skip:].decode("utf-8", "replace")
        cut, start = redactor.unfinished_end(head), redactor.unfinished_start(tail)
        elided = self.elided + len(decoder.getstate()[0]) + skip
        elided += len(head[cut:].encode()) + len(tail[:start].encode())
        return (
            f"{redactor.redact(head[:cut])}\n[... {elided} bytes elided ...]\n{redactor.redact(tail[start:])}"
        )


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalSandbox:
    """Runs commands and touches files on this host, with `root` as the workspace."""

    confinement = "none"  # nothing confines its commands (sandbox/confinement/ does)

    def __init__(self, root: str | os.PathLike[str], env: dict[str, str] | None = None):
        real_root = os.path.realpath(root)
        if not os.path.isdir(real_root):
            raise SandboxError(f"workspace {str(root)!r} is not a directory")
        self.root = real_root
        # Extra environment for every command (e.g. a test's fake HOME); os.environ is the base.
        self.env = dict(env or {})

    # -- processes -------------------------------------------------------------------------

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
        full_env = {**os.environ, **self.env, **(env or {})}
        try:
            proc = subprocess.Popen(
                ["bash", "-c", command],
                cwd=cwd or self.root,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so we can kill all of it
            )
        except OSError as e:
            raise SandboxError(f"cannot run bash in {cwd or self.root}: {e}") from e

        output = CappedOutput(max_output, redactor)
        try:
            timed_out = self._pump(proc, output, timeout)
        except BaseException:
            # Ctrl-C (KeyboardInterrupt) or any error while waiting: the command must not outlive us.
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        proc.wait()
        exit_code = None if timed_out else proc.returncode
        if exit_code is not None and exit_code < 0:
            exit_code = 128 - exit_code  # killed by a signal: report it the way bash does
        text = output.text()
        return ExecResult(exit_code=exit_code, output=text, timed_out=timed_out, elided=output.elided)

    @staticmethod
    def _pump(proc: subprocess.Popen[bytes], output: CappedOutput, timeout: float | None) -> bool:
        """Reads output until EOF, killing the group at the timeout; returns whether it timed out."""
        fd = proc.stdout.fileno()
        kill_at = None if timeout is None else time.monotonic() + timeout
        stop_reading_at = None  # set once the shell has exited (or was killed)
        timed_out = False
        while True:
            now = time.monotonic()
            if stop_reading_at is None and proc.poll() is not None:
                stop_reading_at = now + DRAIN_SECONDS
            if stop_reading_at is not None and now >= stop_reading_at:
                # A background child still holds the pipe open; stop rather than wait on it.
                output.add(b"\n[background processes still hold the output; stopped reading]\n")
                return timed_out
            if kill_at is not None and now >= kill_at and not timed_out:
                timed_out = True
                _kill_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=KILL_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
                # Children that ignored TERM (or outlived the shell) still hold the group.
                _kill_group(proc.pid, signal.SIGKILL)
                continue
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return timed_out
                output.add(chunk)

    # -- files -----------------------------------------------------------------------------
    # The same file operations the Docker sandbox's in-container helper runs, so both sandboxes
    # behave (and word their errors) alike.

    def read_file(self, path: str, *, max_bytes: int | None = None) -> bytes:
        with _as_sandbox_error():
            return files.read_file(path, max_bytes)

    def write_file(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        with _as_sandbox_error():
            files.write_file(path, data, mode)

    def stat(self, path: str) -> FileInfo | None:
        with _as_sandbox_error():
            info = files.file_info(path)
        return None if info is None else FileInfo(**info)

    def realpath(self, path: str) -> str:
        with _as_sandbox_error():
            return files.realpath(path)

    def listdir(self, path: str) -> list[str]:
        with _as_sandbox_error():
            return files.listdir(path)

    def walk(self, path: str) -> Iterator[tuple[str, list[str], list[str]]]:
        return os.walk(path, topdown=True, followlinks=False)

    def remove(self, path: str) -> None:
        with _as_sandbox_error():
            files.remove(path)

    def sync_back(self) -> None:
        return None  # commands ran on the workspace itself

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _as_sandbox_error() -> Iterator[None]:
    try:
        yield
    except files.FileTooLarge as e:
        raise FileTooLarge(str(e), e.size) from e
    except files.RequestError as e:
        raise SandboxError(str(e)) from e
