"""The host end of the connection to the in-container helper (see docker_helper.py).

Bytes go to the helper's stdin raw; what comes back is Docker's multiplexed stream (8-byte frame
headers telling stdout from stderr), inside which the helper's stdout carries our own framing:
4-byte header length, JSON header, `size` payload bytes.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import time
from typing import Any

from sandbox.base import SandboxError

STDOUT, STDERR = 1, 2
STDERR_KEPT = 4096  # the helper's stderr is only for error messages: keep its tail


class ChannelClosed(SandboxError):
    """The helper went away (its process exited or the container stopped)."""


class ChannelTimeout(SandboxError):
    """The helper did not answer in time."""


class HelperChannel:
    def __init__(self, docker_socket: Any):
        self._keepalive = docker_socket  # docker-py's wrapper; dropping it could close the socket
        self._sock = getattr(docker_socket, "_sock", docker_socket)
        self._raw = bytearray()  # received, not yet demultiplexed
        self._stdout = bytearray()  # demultiplexed helper stdout, not yet parsed
        self._frame_stream = 0
        self._frame_left = 0
        self.stderr_tail = bytearray()
        self.closed = False

    # -- sending ---------------------------------------------------------------------------

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        encoded = json.dumps(dict(header, size=len(payload))).encode()
        try:
            self._sock.settimeout(None)
            self._sock.sendall(struct.pack(">I", len(encoded)) + encoded + payload)
        except OSError as e:
            self.close()
            raise ChannelClosed(f"the sandbox helper is gone ({e}){self._stderr_hint()}") from e

    # -- receiving -------------------------------------------------------------------------

    def receive(self, deadline: float | None = None) -> tuple[dict[str, Any], bytes]:
        # Nothing is consumed until a whole message is there, so an interrupt (Ctrl-C) between
        # two reads leaves the stream in step.
        while (message := self._complete_message()) is None:
            self._read_some(deadline)
        return message

    def _complete_message(self) -> tuple[dict[str, Any], bytes] | None:
        buffer = self._stdout
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack(">I", buffer[:4])
        if len(buffer) < 4 + length:
            return None
        header = json.loads(buffer[4 : 4 + length])
        end = 4 + length + header.get("size", 0)
        if len(buffer) < end:
            return None
        payload = bytes(buffer[4 + length : end])
        del buffer[:end]
        return header, payload

    def _read_some(self, deadline: float | None) -> None:
        if self.closed:
            raise ChannelClosed(f"the sandbox helper is gone{self._stderr_hint()}")
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise ChannelTimeout("the sandbox helper did not answer in time")
        try:
            self._sock.settimeout(wait)
            data = self._sock.recv(1 << 20)
        except TimeoutError:
            raise ChannelTimeout("the sandbox helper did not answer in time") from None
        except OSError as e:
            self.close()
            raise ChannelClosed(f"the sandbox helper is gone ({e}){self._stderr_hint()}") from e
        if not data:
            self.close()
            raise ChannelClosed(f"the sandbox helper exited{self._stderr_hint()}")
        self._raw += data
        self._demultiplex()

    def _demultiplex(self) -> None:
        raw = self._raw
        while raw:
            if self._frame_left == 0:
                if len(raw) < 8:
                    return
                self._frame_stream = raw[0]
                self._frame_left = struct.unpack(">I", raw[4:8])[0]
                del raw[:8]
                continue
            piece = raw[: self._frame_left]
            del raw[: len(piece)]
            self._frame_left -= len(piece)
            if self._frame_stream == STDERR:
                self.stderr_tail += piece
                del self.stderr_tail[:-STDERR_KEPT]
            else:
                self._stdout += piece

    def gone(self) -> bool:
        """Whether the helper has hung up (checked without blocking before a connection is reused)."""
        if self.closed:
            return True
        try:
            ready, _, _ = select.select([self._sock], [], [], 0)
            if ready and self._sock.recv(1, socket.MSG_PEEK) == b"":
                self.close()
        except (OSError, ValueError):
            pass  # sockets that cannot peek (TLS): find out on the next read instead
        return self.closed

    def _stderr_hint(self) -> str:
        text = self.stderr_tail.decode("utf-8", errors="replace").strip()
        return f": {text}" if text else ""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for closable in (self._sock, self._keepalive):
            try:
                closable.close()
            except OSError:
                pass
