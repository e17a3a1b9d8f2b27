"""ConfinedSandbox: the local sandbox whose model-driven commands run under OS confinement.

Files are touched on the host exactly as LocalSandbox does (the file tools enforce the workspace
boundary themselves). `exec(confined=True)`, the default, sends the command to one helper process
per session that runs inside the confinement (sandbox/confinement/helper.py, speaking the Docker
helper's protocol over a socket pair); `exec(confined=False)` is the project's own helper path (git
tools, checkpoints, firewall probes) and runs on the host as before. Closing the sandbox ends the
helper, and with it every process the session's commands started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import IO, Any

from sandbox import docker_helper
from sandbox.base import ExecResult, OutputRedactor, SandboxError
from sandbox.confinement.bwrap import TMPDIR as BWRAP_TMPDIR
from sandbox.confinement.bwrap import bwrap_arguments
from sandbox.confinement.detect import Confinement, choose
from sandbox.docker_channel import ChannelClosed, ChannelTimeout, HelperChannel
from sandbox.local import CappedOutput, LocalSandbox

HELPER = [sys.executable, "-I", "-m", "sandbox.confinement.helper"]
# What the helper needs to start inside bwrap even where /tmp hides it (a venv or a clone in /tmp).
HELPER_NEEDS = sorted(
    {
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        str(Path(__file__).parents[2]),
    }
)
HELPER_START_SECONDS = 60.0  # python start-up on a loaded machine, generously
# How long past its own timeout a command may run before we stop waiting for the helper (its TERM
# grace and output drain, plus slack for a loaded machine).
HOST_SLACK_SECONDS = docker_helper.KILL_GRACE_SECONDS + docker_helper.DRAIN_SECONDS + 30.0
STOP_SECONDS = 30.0  # for the helper (and everything under it) to be gone after close
STDERR_KEPT = 4096


class UnconfinedWarning(UserWarning):
    """Commands run on the host without any confinement."""


class SocketChannel(HelperChannel):
    """The helper's framing over a plain socket (no Docker stream multiplexing); stderr in a file."""

    def __init__(self, sock: socket.socket, stderr: IO[bytes]):
        super().__init__(sock)
        self.stderr_file = stderr

    def _demultiplex(self) -> None:
        self._stdout += self._raw
        self._raw.clear()

    def _stderr_hint(self) -> str:
        try:
            self.stderr_file.seek(0, os.SEEK_END)
            self.stderr_file.seek(max(0, self.stderr_file.tell() - STDERR_KEPT))
            self.stderr_tail = bytearray(self.stderr_file.read())
        except (OSError, ValueError):
            pass
        return super()._stderr_hint()


class ConfinedSandbox(LocalSandbox):
    """A LocalSandbox whose commands run confined: `confinement` says how (bwrap, landlock or none).

    `mode`: auto | bwrap | landlock | none (None: $MMX_AGENT_CONFINEMENT, else auto); a mode that
    cannot work here raises ConfinementUnavailable. `network`: host, or none (no network at all
    under bwrap; no TCP under Landlock).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        *,
        mode: str | None = None,
        network: str = "host",
    ):
        super().__init__(root, env)
        chosen: Confinement = choose(mode, network)
        self.confinement = chosen.mode
        self.confinement_detail = chosen.detail
        self.network = network
        self._lock = threading.RLock()  # one helper request at a time; tools may call from threads
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: SocketChannel | None = None
        self._lifeline: int | None = None  # landlock: the write end of the reaper's lifeline pipe
        self._tmpdir = BWRAP_TMPDIR
        self._closed = False
        if self.confinement == "none":
            warnings.warn(
                UnconfinedWarning(
                    "shell commands run UNCONFINED on this machine: they can write anywhere you can, "
                    f"and what they start can outlive the session ({chosen.detail})"
                ),
                stacklevel=2,
            )
            return
        if self.confinement == "landlock":
            self._tmpdir = tempfile.mkdtemp(prefix="mmx-agent-tmp.")
        try:
            self._start_helper()
        except BaseException:
            self.close()
            raise

    # -- the helper ------------------------------------------------------------------------

    def _start_helper(self) -> None:
        base_env = {**os.environ, **self.env}
        pass_fds: tuple[int, ...] = ()
        if self.confinement == "bwrap":
            argv = [
                *bwrap_arguments(self.root, env=base_env, network=self.network, keep=HELPER_NEEDS),
                "--",
                *HELPER,
                "bwrap",
            ]
        else:
            lifeline_read, self._lifeline = os.pipe()
            os.set_inheritable(lifeline_read, True)
            pass_fds = (lifeline_read,)
            argv = [*HELPER, "landlock", self.root, self._tmpdir, self.network, str(lifeline_read)]
        ours, theirs = socket.socketpair()
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - open for the helper's life (_stop_helper closes it)
        # The helper's own environment is the agent's, minimal: each command gets its full one with
        # its request.
        helper_env = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL") if name in os.environ}
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=theirs,
                stdout=theirs,
                stderr=stderr,
                cwd=self.root,
                env=helper_env,
                pass_fds=pass_fds,
                start_new_session=True,  # no controlling terminal; Ctrl-C reaches us, not the helper
            )
        except OSError as e:
            ours.close()
            stderr.close()
            raise SandboxError(f"cannot start the {self.confinement} confinement: {e}") from e
        finally:
            theirs.close()
            for fd in pass_fds:
                os.close(fd)
        self._channel = SocketChannel(ours, stderr)
        try:
            self._request({"op": "hello"}, deadline=time.monotonic() + HELPER_START_SECONDS)
        except ChannelClosed as e:
            raise SandboxError(f"the {self.confinement} confinement did not start: {e}") from e

    def _live_channel(self) -> SocketChannel:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if self._channel is None or self._channel.gone():
            # Killed from inside (say `kill -9 -1`): a new helper, in a new confinement. Background
            # jobs of the old one are gone with it.
            self._stop_helper()
            self._start_helper()
        assert self._channel is not None
        return self._channel

    def _request(self, header: dict[str, Any], *, deadline: float | None = None) -> dict[str, Any]:
        assert self._channel is not None
        self._channel.send(header)
        reply, _ = self._channel.receive(deadline)
        if not reply.get("ok"):
            raise SandboxError(reply.get("error", "sandbox operation failed"))
        return reply

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
        if not confined or self.confinement == "none":
            return super().exec(
                command, timeout=timeout, cwd=cwd, env=env, max_output=max_output, redactor=redactor
            )
        # The helper keeps the same head and tail as this CappedOutput (the Docker helper's code),
        # which drops what may be part of a secret at the cut when it makes the text.
        output = CappedOutput(max_output, redactor)
        request = {
            "op": "exec",
            "command": command,
            "timeout": timeout,
            "cwd": cwd or self.root,
            # The whole environment, as LocalSandbox gives it, with the private temp dir.
            "env": {**os.environ, **self.env, **(env or {}), "TMPDIR": self._tmpdir},
            "max_output": max_output,  # the helper sends only the head and the tail
        }
        deadline = None if timeout is None else time.monotonic() + timeout + HOST_SLACK_SECONDS
        with self._lock:
            channel = self._live_channel()
            channel.send(request)
            try:
                reply = self._collect(channel, output, deadline)
            except KeyboardInterrupt:
                self._cancel(channel, output)
                raise
            except ChannelTimeout:
                channel.close()  # the helper sees EOF, kills the command's group and exits
                raise SandboxError(f"the confinement helper stopped answering during {command!r}") from None
            except ChannelClosed as e:
                raise SandboxError(f"the confinement helper died during {command!r}: {e}") from e
        output.elided += reply["elided"]  # the middle the helper dropped
        return ExecResult(
            exit_code=reply["exit_code"],
            output=output.text(),
            timed_out=reply["timed_out"],
            elided=output.elided,
        )

    @staticmethod
    def _collect(channel: SocketChannel, output: CappedOutput, deadline: float | None) -> dict[str, Any]:
        while True:
            header, payload = channel.receive(deadline)
            if header.get("kind") == "output":
                output.add(payload)
            elif not header.get("ok"):
                raise SandboxError(header.get("error", "command failed to start"))
            else:
                return header

    def _cancel(self, channel: SocketChannel, output: CappedOutput) -> None:
        """Kills the running command (Ctrl-C) and waits for the helper to settle."""
        try:
            channel.send({"op": "cancel"})
            self._collect(channel, output, time.monotonic() + HOST_SLACK_SECONDS)
        except (SandboxError, KeyboardInterrupt):
            channel.close()

    # -- life cycle ------------------------------------------------------------------------

    def _stop_helper(self) -> None:
        """Ends the helper and waits until it, and everything the session started, is gone."""
        if self._channel is not None:
            self._channel.close()  # EOF: the helper exits
            self._channel.stderr_file.close()
            self._channel = None
        if self._lifeline is not None:
            os.close(self._lifeline)  # EOF: the reaper kills what is left and exits
            self._lifeline = None
        if self._process is not None:
            try:
                self._process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()  # bwrap's namespace, or the reaper, dies with it
                self._process.wait()
            self._process = None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_helper()
            if self._tmpdir != BWRAP_TMPDIR:
                shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> ConfinedSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
