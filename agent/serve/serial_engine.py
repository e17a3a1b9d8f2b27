"""The engine interface the server drives, run one request at a time over `generate.Generator`.

A worker thread takes requests from a bounded queue in order and streams each one's tokens back through
its RequestStream. The interface (EngineRequest, RequestStream, QueueFull, submit/stats/close) is the
one a batching engine offers, so the server does not depend on how requests share the model.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.backends.local.generate import ContextLengthError, Generator, SamplingParams
from agent.backends.local.model import M2Transformer

__all__ = ["ContextLengthError", "EngineRequest", "QueueFull", "RequestStream", "SerialEngine"]


class QueueFull(Exception):
    """`max_queue` requests are already waiting."""


@dataclass(frozen=True)
class EngineRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop_ids: tuple[int, ...] = ()


_END = object()


class RequestStream:
    """One request's tokens as they come; `stop_reason` and `error` are set once it has ended."""

    def __init__(self, request: EngineRequest) -> None:
        self.request = request
        self.prompt_tokens = len(request.prompt_ids)
        self.reused_tokens = 0
        self.stop_reason: str | None = None  # stop | length | cancelled | error
        self.error: BaseException | None = None
        self._chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self._ended = False

    def next_chunk(self, timeout: float | None = None) -> list[int] | None:
        """At least one new token id, or None once the request has ended. Raises TimeoutError when
        nothing came within `timeout` seconds."""
        if self._ended:
            return None
        try:
            first = self._chunks.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no tokens yet") from None
        ids: list[int] = []
        item = first
        while True:
            if item is _END:
                self._ended = True
                break
            ids.append(item)
            try:
                item = self._chunks.get_nowait()
            except queue.Empty:
                break
        return ids or None

    def __iter__(self) -> Iterator[int]:
        while (chunk := self.next_chunk()) is not None:
            yield from chunk

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # The engine's side.
    def _push(self, token_id: int) -> None:
        self._chunks.put(token_id)

    def _end(self, reason: str, error: BaseException | None = None) -> None:
        self.stop_reason, self.error = reason, error
        self._chunks.put(_END)


class SerialEngine:
    """Requests take turns on one Generator (whose cache keeps the previous prompt, so the next turn
    of the same conversation reuses its prefix)."""

    def __init__(
        self,
        model: M2Transformer,
        *,
        max_seq_len: int | None = None,
        max_concurrency: int = 8,
        max_queue: int = 64,
        compile: bool = False,
    ) -> None:
        self.generator = Generator(model, max_seq_len=max_seq_len, compile=compile)
        self.max_seq_len = self.generator.max_seq_len
        self.max_concurrency = 1  # what actually runs at once here, whatever was asked
        self.max_queue = max_queue
        self._waiting: queue.Queue[RequestStream | None] = queue.Queue()
        self._lock = threading.Lock()
        self._queued = 0
        self._running = 0
        self._finished = 0
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="serial-engine", daemon=True)
        self._worker.start()

    def submit(self, request: EngineRequest) -> RequestStream:
        n = len(request.prompt_ids)
        if n == 0:
            raise ValueError("empty prompt")
        if n >= self.max_seq_len:
            raise ContextLengthError(
                f"prompt is {n} tokens; the context window is {self.max_seq_len} (no room to generate)"
            )
        stream = RequestStream(request)
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if self._queued >= self.max_queue:
                raise QueueFull(
                    f"{self._queued} requests are already waiting (the queue holds {self.max_queue})"
                )
            self._queued += 1
        self._waiting.put(stream)
        return stream

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "engine": "serial",
                "running": self._running,
                "waiting": self._queued,
                "finished": self._finished,
                "max_concurrency": self.max_concurrency,
                "max_queue": self.max_queue,
                "max_seq_len": self.max_seq_len,
            }

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._waiting.put(None)
        self._worker.join(timeout=30)

    def _run(self) -> None:
        while (stream := self._waiting.get()) is not None:
            with self._lock:
                self._queued -= 1
                self._running += 1
            try:
                self._serve(stream)
            finally:
                with self._lock:
                    self._running -= 1
                    self._finished += 1
        # Closing: whatever still waits ends now rather than hanging its client.
        while True:
            try:
                stream = self._waiting.get_nowait()
            except queue.Empty:
                return
            if stream is not None:
                stream._end("error", RuntimeError("the engine was closed"))

    def _serve(self, stream: RequestStream) -> None:
        if stream.cancelled:
            stream._end("cancelled")
            return
        req, gen = stream.request, self.generator
        try:
            tokens = gen.generate(req.prompt_ids, req.max_new_tokens, req.sampling, stop_ids=req.stop_ids)
            for tid in tokens:
                if stream.reused_tokens == 0:
                    stream.reused_tokens = gen.reused_tokens
                stream._push(tid)
                if stream.cancelled:
                    tokens.close()
                    stream._end("cancelled")
                    return
            stream.reused_tokens = gen.reused_tokens
        except Exception as exc:  # noqa: BLE001 - reported to this request's client; the engine goes on
            stream._end("error", exc)
            return
        stream._end(gen.stop_reason)
