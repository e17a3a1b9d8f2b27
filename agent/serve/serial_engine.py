"""`serve --compile`: requests take turns on one `generate.Generator` with its compiled decode step.

The compiled step is built for one sequence (compiled.py), so this engine runs one request at a time,
fastest per token for a single client; without --compile the server batches concurrent requests
(batching.BatchingEngine). Both offer the same interface (EngineRequest, RequestStream, QueueFull,
submit/stats/close), so the server does not depend on which one runs.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from agent.backends.local.batching import EngineRequest, QueueFull, RequestStream
from agent.backends.local.generate import ContextLengthError, Generator
from agent.backends.local.model import M2Transformer

__all__ = ["ContextLengthError", "EngineRequest", "QueueFull", "RequestStream", "SerialEngine"]


class SerialEngine:
    """Requests take turns on one Generator (whose cache keeps the previous prompt, so the next turn
    of the same conversation reuses its prefix)."""

    def __init__(
        self,
        model: M2Transformer,
        *,
        max_seq_len: int | None = None,
        max_queue: int = 64,
        compile: bool = False,
    ) -> None:
        self.generator = Generator(model, max_seq_len=max_seq_len, compile=compile)
        self.max_seq_len = self.generator.max_seq_len
        self.max_concurrency = 1  # what actually runs at once here, whatever was asked
        self.max_queue = max_queue
        self._waiting: queue.Queue[tuple[EngineRequest, RequestStream] | None] = queue.Queue()
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
        stream = RequestStream(n)
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if self._queued >= self.max_queue:
                raise QueueFull(
                    f"{self._queued} requests are already waiting (the queue holds {self.max_queue})"
                )
            self._queued += 1
        self._waiting.put((request, stream))
        return stream

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "engine": "serial",
                "active": self._running,
                "queued": self._queued,
                "completed": self._finished,
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
        while (job := self._waiting.get()) is not None:
            with self._lock:
                self._queued -= 1
                self._running += 1
            try:
                self._serve(*job)
            finally:
                with self._lock:
                    self._running -= 1
                    self._finished += 1
        # Closing: whatever still waits ends now rather than hanging its client.
        while True:
            try:
                job = self._waiting.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job[1]._end("cancelled")

    def _serve(self, req: EngineRequest, stream: RequestStream) -> None:
        if stream.cancelled:
            stream._end("cancelled")
            return
        gen = self.generator
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
