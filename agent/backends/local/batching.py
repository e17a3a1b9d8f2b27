"""Continuous batching: many requests share one model, one decode forward for all of them per step.

The model's static KV cache is set up with `max_concurrency` rows ("slots"). One background thread runs
the schedule: at each step it admits waiting requests into free slots and prefills them (one chunk per
step, so a long prompt does not stall the others), then runs one decode forward for every slot that is
generating, each row at its own position (model.forward's `rows`), samples each row with its request's
own parameters and torch.Generator, hands each token to its request, and retires the finished rows. A
request submitted now joins at the next step; a finished one leaves at once.

Each slot remembers the token ids whose K/V it holds. A new request goes to the free slot with the
longest common prefix with its prompt (the least recently used on ties) and prefills only the rest, so
the next turn of a conversation does not recompute what the last turn already did.

A batched row computes what the same sequence computes alone with `Generator`: the projections and the
experts of our CPU kernels give every token the same bits whatever the batch (up to ops.FEW_TOKENS
rows), and attention runs row by row with the single-sequence op. So greedy output equals
`Generator.generate` token for token (fp32 and bf16) on the CPU kernels; on plain PyTorch ops a
batched matmul may round differently (fp32: last-bit differences; bf16: within the parity tolerance).

The batched decode step runs eagerly (the compiled step of compiled.py is built for one row).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from agent.backends.local.generate import PREFILL_CHUNK, ContextLengthError, SamplingParams, _bucket, sample
from agent.backends.local.model import M2Transformer

__all__ = [
    "BatchingEngine",
    "ContextLengthError",
    "EngineRequest",
    "QueueFull",
    "RequestStream",
]


class QueueFull(Exception):
    """submit() while `max_queue` requests are already waiting for a slot."""


@dataclass(frozen=True)
class EngineRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: SamplingParams
    stop_ids: tuple[int, ...] = ()


class RequestStream:
    """One request's tokens as the engine produces them (thread-safe: the engine pushes, a client reads)."""

    def __init__(self, prompt_tokens: int) -> None:
        self._ready = threading.Condition()
        self._tokens: list[int] = []  # produced, not yet taken
        self._ended = False
        self._ended_event = threading.Event()  # waited on without waking for every token
        self._cancelled = threading.Event()
        self._on_cancel = None  # wakes the engine
        self.stop_reason: str | None = None  # "stop" | "length" | "cancelled" | "error" once ended
        self.error: BaseException | None = None
        self.reused_tokens = 0
        self.prompt_tokens = prompt_tokens
        self.generated_tokens = 0

    def next_chunk(self, timeout: float | None = None) -> list[int] | None:
        """Blocks until >=1 new token ids are ready (returns them, in order) or the request ended (None).
        After `timeout` seconds with nothing new it returns [] (the request is still running)."""
        with self._ready:
            self._ready.wait_for(lambda: self._tokens or self._ended, timeout)
            if self._tokens:
                chunk, self._tokens = self._tokens, []
                return chunk
            return None if self._ended else []

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Blocks until the request has ended (True) or `timeout` passed (False), taking nothing: a
        reader that wants the whole reply is not woken for each token."""
        return self._ended_event.wait(timeout)

    def __iter__(self) -> Iterator[int]:
        while (chunk := self.next_chunk()) is not None:
            yield from chunk

    def cancel(self) -> None:
        """Stop generating (a client went away); the slot is freed at the engine's next step."""
        self._cancelled.set()
        if self._on_cancel is not None:
            self._on_cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def ended(self) -> bool:
        with self._ready:
            return self._ended

    def _push(self, token_id: int) -> None:
        with self._ready:
            self._tokens.append(token_id)
            self.generated_tokens += 1
            self._ready.notify_all()

    def _end(self, reason: str, error: BaseException | None = None) -> None:
        with self._ready:
            if self._ended:
                return
            self.stop_reason, self.error, self._ended = reason, error, True
            self._ended_event.set()
            self._ready.notify_all()


class _Job:
    """A request in a slot: prefilling (next_prefill < len(prompt)), then decoding."""

    def __init__(self, request: EngineRequest, stream: RequestStream, max_seq_len: int, device) -> None:
        self.request, self.stream = request, stream
        self.prompt = list(request.prompt_ids)
        self.budget = min(request.max_new_tokens, max_seq_len - len(self.prompt))
        self.next_prefill = 0  # first prompt position not yet in the cache
        self.position = len(self.prompt)  # where the next fed token's K/V go
        self.pending: int | None = None  # the last sampled token, to feed at `position`
        self.generated = 0
        self.rng: torch.Generator | None = None
        params = request.sampling
        self.greedy = params.greedy or params.temperature <= 0
        if not self.greedy:
            self.rng = torch.Generator(device=device)
            if params.seed is None:
                self.rng.seed()
            else:
                self.rng.manual_seed(params.seed)

    @property
    def prefilling(self) -> bool:
        return self.next_prefill < len(self.prompt)


@dataclass
class _Slot:
    row: int  # the KV-cache row
    cached: list[int]  # token ids whose K/V this row holds, in order
    last_used: int = 0  # the step it was last assigned (LRU on ties)
    job: _Job | None = None


def common_prefix(a: list[int], b: list[int], limit: int) -> int:
    """How many leading ids a and b share, at most `limit` (compared a block at a time: the prompts of
    a long conversation run to hundreds of thousands of ids)."""
    limit, n, block = min(limit, len(a), len(b)), 0, 1024
    while n + block <= limit and a[n : n + block] == b[n : n + block]:
        n += block
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _close_at_exit(ref: weakref.ref) -> None:
    engine = ref()
    if engine is not None:
        engine.close()


class BatchingEngine:
    """Shares `model` between concurrent requests (see the module docstring). The engine owns the model's
    KV cache: do not run a `Generator` on the same model while the engine serves."""

    def __init__(
        self,
        model: M2Transformer,
        *,
        max_seq_len: int | None = None,
        max_concurrency: int = 8,
        max_queue: int = 64,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be at least 0, got {max_queue}")
        self.model = model
        limit = model.args.max_position_embeddings
        self.max_seq_len = min(max_seq_len or limit, limit)
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        # All of it up front: the memory a server needs is known when it starts, not found out later.
        with torch.inference_mode():  # as Generator makes them, so either may write them
            model.setup_caches(self.max_seq_len, max_batch=max_concurrency)
        model.cache_owner = self
        self._slots = [_Slot(row, []) for row in range(max_concurrency)]
        self._queue: deque[tuple[EngineRequest, RequestStream]] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._counts = dict(steps=0, decode_steps=0, generated_tokens=0, prefilled_tokens=0, reused_tokens=0)
        self._counts |= dict(completed=0, errors=0, cancelled=0)
        self._thread = threading.Thread(target=self._run, name="mmx-batching-engine", daemon=True)
        self._thread.start()
        # Stop the thread before the interpreter tears down what a step in flight may be using.
        atexit.register(_close_at_exit, weakref.ref(self))

    # ------------------------------------------------------------------ client side (any thread)
    def submit(self, request: EngineRequest) -> RequestStream:
        """Queue a request; its tokens arrive on the returned stream. Raises ContextLengthError when the
        prompt leaves no room to generate, QueueFull when max_queue requests are waiting, ValueError for
        an empty prompt or ids outside the vocabulary, RuntimeError after close()."""
        n = len(request.prompt_ids)
        if n == 0:
            raise ValueError("empty prompt")
        if not isinstance(request.max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an integer, got {request.max_new_tokens!r}")
        if any(not isinstance(t, int) for t in request.stop_ids):
            raise ValueError(f"stop_ids must be integers, got {request.stop_ids!r}")
        vocab = self.model.args.vocab_size
        if any(not isinstance(t, int) or not 0 <= t < vocab for t in request.prompt_ids):
            raise ValueError(f"prompt token ids must be integers in [0, {vocab})")
        if n >= self.max_seq_len:
            raise ContextLengthError(
                f"prompt is {n} tokens; the context window is {self.max_seq_len} (no room to generate)"
            )
        stream = RequestStream(n)
        stream._on_cancel = self._notify
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(
                    f"{len(self._queue)} requests are already waiting (the queue holds {self.max_queue})"
                )
            self._queue.append((request, stream))
            self._wake.notify_all()
        return stream

    def stats(self) -> dict:
        with self._wake:
            jobs = [slot.job for slot in self._slots if slot.job is not None]
            return dict(
                self._counts,
                active=len(jobs),
                prefilling=sum(job.prefilling for job in jobs),
                queued=len(self._queue),
                max_concurrency=self.max_concurrency,
                max_queue=self.max_queue,
                max_seq_len=self.max_seq_len,
                kv_cache_bytes=self.kv_cache_bytes(),
            )

    def kv_cache_bytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for layer in self.model.layers
            for t in (layer.attn.kv_cache.k, layer.attn.kv_cache.v)
        )

    def close(self) -> None:
        """Stop the thread; requests still queued or running end with "cancelled"."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._wake:
            pending = [stream for _, stream in self._queue]
            self._queue.clear()
            for slot in self._slots:
                if slot.job is not None:
                    pending.append(slot.job.stream)
                    slot.job = None
        for stream in pending:
            stream._end("cancelled")

    def __enter__(self) -> BatchingEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # ------------------------------------------------------------------ the schedule (engine thread)
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    self._wake.wait_for(lambda: self._closed or self._queue or self._busy())
                    if self._closed:
                        return
                try:
                    self._step()
                except Exception as exc:  # noqa: BLE001 - a fault outside one request's own work
                    busy = [slot for slot in self._slots if slot.job is not None]
                    for slot in busy:
                        slot.cached = []  # what the row holds is unknown now
                    self._fail(busy, exc)

    def _busy(self) -> bool:
        return any(slot.job is not None for slot in self._slots)

    def _step(self) -> None:
        self._counts["steps"] += 1
        if self.model.cache_owner is not self:  # someone else wrote the cache: the slots' memory is stale
            for slot in self._slots:
                slot.cached = [] if slot.job is None else slot.cached
            self.model.cache_owner = self
        self._retire_cancelled()
        self._admit()
        for slot in self._slots:
            if slot.job is not None and slot.job.prefilling:
                self._prefill_chunk(slot)
        decoding = [slot for slot in self._slots if slot.job is not None and slot.job.pending is not None]
        if decoding:
            self._decode(decoding)

    def _retire_cancelled(self) -> None:
        with self._wake:
            waiting = [(r, s) for r, s in self._queue if not s.cancelled]
            dropped = [s for _, s in self._queue if s.cancelled]
            self._queue = deque(waiting)
        for stream in dropped:
            self._finish(None, stream, "cancelled")
        for slot in self._slots:
            if slot.job is not None and slot.job.stream.cancelled:
                self._finish(slot, slot.job.stream, "cancelled")

    def _admit(self) -> None:
        while True:
            free = [slot for slot in self._slots if slot.job is None]
            with self._wake:
                if not free or not self._queue:
                    return
                request, stream = self._queue.popleft()
            try:
                self._place(request, stream, free)
            except Exception as exc:  # noqa: BLE001 - e.g. a seed torch refuses; this request fails alone
                self._counts["errors"] += 1
                stream._end("error", exc)

    def _place(self, request: EngineRequest, stream: RequestStream, free: list[_Slot]) -> None:
        """Put a request into the free slot that already holds most of its prompt."""
        job = _Job(request, stream, self.max_seq_len, self.model.device)
        if job.budget <= 0:
            self._finish(None, stream, "length")
            return
        slot, reuse = self._pick_slot(free, job.prompt)
        job.next_prefill = reuse
        stream.reused_tokens = reuse
        slot.cached = slot.cached[:reuse]  # K/V past this point are about to be overwritten
        with self._wake:
            slot.job, slot.last_used = job, self._counts["steps"]
        self._counts["reused_tokens"] += reuse

    @staticmethod
    def _pick_slot(free: list[_Slot], prompt: list[int]) -> tuple[_Slot, int]:
        """The free slot sharing the longest prefix with `prompt` (never all of it: the last prompt token
        must run to give the first logits); least recently used on ties."""

        def shared(slot: _Slot) -> int:
            return common_prefix(slot.cached, prompt, len(prompt) - 1)

        best = max(free, key=lambda slot: (shared(slot), -slot.last_used))
        return best, shared(best)

    def _prefill_chunk(self, slot: _Slot) -> None:
        """One chunk of the prompt into the slot's row; after the last, the first token is sampled."""
        job, model = slot.job, self.model
        start = job.next_prefill
        end = min(len(job.prompt), start + PREFILL_CHUNK)
        try:
            chunk = torch.tensor([job.prompt[start:end]], device=model.device)
            pos = torch.arange(start, end, device=model.device)[None]
            logits = model(chunk, pos, kv_len=[end], last_only=True, rows=[slot.row])[:, -1]
        except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
            slot.cached = slot.cached[:start]
            self._fail([slot], exc)
            return
        slot.cached.extend(job.prompt[start:end])
        job.next_prefill = end
        self._counts["prefilled_tokens"] += end - start
        if not job.prefilling:
            self._take(slot, logits)

    def _decode(self, slots: list[_Slot]) -> None:
        """One forward for every generating slot, each row at its own position; then sample each row."""
        jobs = [slot.job for slot in slots]
        device = self.model.device
        try:
            tokens = torch.tensor([[job.pending] for job in jobs], device=device)
            positions = torch.tensor([[job.position] for job in jobs], device=device)
            kv_len = [_bucket(job.position + 1) for job in jobs]  # as Generator's eager decode reads
            logits = self.model(tokens, positions, kv_len=kv_len, rows=[slot.row for slot in slots])[:, -1]
        except Exception as exc:  # noqa: BLE001 - every row of the failed forward fails, the queue goes on
            for slot in slots:
                slot.cached = slot.cached[: slot.job.position]
            self._fail(slots, exc)
            return
        self._counts["decode_steps"] += 1
        # The greedy rows' choices in one call (what `sample` picks for each alone), read back at once.
        best = logits.argmax(-1).tolist() if any(job.greedy for job in jobs) else None
        for i, slot in enumerate(slots):
            job = slot.job
            slot.cached.append(job.pending)  # its K/V are now in the row
            job.position += 1
            self._take(slot, logits[i : i + 1], best[i] if job.greedy else None)

    def _take(self, slot: _Slot, logits: torch.Tensor, token_id: int | None = None) -> None:
        """Hand over the slot's next token (token_id, or sampled from logits [1, vocab]), or end the
        request."""
        job = slot.job
        try:
            if token_id is None:
                token_id = int(sample(logits, job.request.sampling, job.rng).item())
            stop = token_id in job.request.stop_ids
        except Exception as exc:  # noqa: BLE001 - e.g. sampling parameters of the wrong type
            self._fail([slot], exc)
            return
        if stop:
            self._finish(slot, job.stream, "stop")
            return
        job.stream._push(token_id)
        job.generated += 1
        self._counts["generated_tokens"] += 1
        if job.generated >= job.budget:
            self._finish(slot, job.stream, "length")
        else:
            job.pending = token_id

    def _finish(self, slot: _Slot | None, stream: RequestStream, reason: str) -> None:
        if slot is not None:
            with self._wake:
                slot.job = None
        self._counts["completed" if reason in ("stop", "length") else "cancelled"] += 1
        stream._end(reason)

    def _fail(self, slots: list[_Slot], exc: BaseException) -> None:
        for slot in slots:
            stream = slot.job.stream
            with self._wake:
                slot.job = None
            self._counts["errors"] += 1
            stream._end("error", exc)
