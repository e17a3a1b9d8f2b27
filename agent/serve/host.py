"""The loaded model as the server sees it: tokenizer, sampling defaults, the engine and the limits.

The engine is imported here and nowhere else in the server, so which engine serves is one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.backends.local.batching import BatchingEngine, EngineRequest, QueueFull, RequestStream
from agent.backends.local.generate import ContextLengthError
from agent.serve.serial_engine import SerialEngine

__all__ = ["ContextLengthError", "EngineRequest", "Limits", "ModelHost", "QueueFull", "RequestStream"]

KERNEL_PATHS = {"CpuKernelOps": "CPU kernels", "TritonOps": "Triton", "TorchOps": "torch"}


@dataclass(frozen=True)
class Limits:
    max_concurrency: int = 8
    max_queue: int = 64
    max_tokens_cap: int | None = None  # the most tokens one request may generate (None: the context)
    max_seq_len: int | None = None


class ModelHost:
    """Loads a checkpoint and owns the engine that runs requests on it."""

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        dtype: str | None = None,
        device: str = "cpu",
        compile: bool = False,
        limits: Limits = Limits(),
    ) -> None:
        from agent.backends.local.backend import LocalModel

        self.checkpoint = Path(checkpoint)
        self.device = device
        self.limits = limits
        lm = LocalModel(checkpoint, dtype=dtype, device=device, max_seq_len=limits.max_seq_len)
        self.tokenizer = lm.tokenizer
        self.model = lm.model
        self.defaults = lm.defaults
        self.engine = self._make_engine(compile)
        self.context_window = self.engine.max_seq_len

    def _make_engine(self, compile: bool) -> BatchingEngine | SerialEngine:
        """Concurrent requests batched; with --compile, one at a time on the compiled decode step."""
        limits = self.limits
        if compile:
            return SerialEngine(
                self.model, max_seq_len=limits.max_seq_len, max_queue=limits.max_queue, compile=True
            )
        return BatchingEngine(
            self.model,
            max_seq_len=limits.max_seq_len,
            max_concurrency=limits.max_concurrency,
            max_queue=limits.max_queue,
        )

    def submit(self, request: EngineRequest) -> RequestStream:
        return self.engine.submit(request)

    def max_new_tokens(self, prompt_tokens: int, asked: int | None) -> int:
        """What a request may generate: what it asked for, within the cap and the context left."""
        room = self.context_window - prompt_tokens
        budget = room if asked is None else min(asked, room)
        if self.limits.max_tokens_cap is not None:
            budget = min(budget, self.limits.max_tokens_cap)
        return max(budget, 1)

    def kernel_path(self) -> str:
        return KERNEL_PATHS.get(type(self.model.ops).__name__, type(self.model.ops).__name__)

    def memory_bytes(self) -> int:
        """Weights plus what is allocated beside them now (the KV caches are buffers)."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def describe(self) -> dict[str, Any]:
        return {
            "device": str(self.model.device),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "kernels": self.kernel_path(),
            "context": self.context_window,
            "memory_bytes": self.memory_bytes(),
            "max_concurrency": self.engine.max_concurrency,
            "max_queue": self.limits.max_queue,
            "max_tokens_cap": self.limits.max_tokens_cap,
        }

    def close(self) -> None:
        self.engine.close()
