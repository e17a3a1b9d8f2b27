"""The Backend seam: messages and tools in, a stream of typed events out.

A backend is anything that can continue a conversation: a remote endpoint or the local model.
`stream` returns a generator; the agent loop may close it at any time (Ctrl-C, limits), and the
backend must then close its connection or stop generating promptly (use try/finally).

Events (agent/backends/events.py): ReasoningDelta and TextDelta as they arrive, ToolCallEvent
when a call is complete, FormatError for malformed model output (fed back to the model), Usage
once per round, RoundRetry when a failed attempt is being retried from scratch (consumers drop
what they got of the round so far), and StreamEnd last.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

from agent.backends.events import BackendEvent
from agent.backends.messages import Message

# MiniMax's recommended sampling for M2.
M2_TEMPERATURE = 1.0
M2_TOP_P = 0.95
M2_TOP_K = 40


@dataclass
class GenerationParams:
    temperature: float | None = None  # None: the backend's M2 default
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    seed: int | None = None


class BackendError(Exception):
    """The backend could not produce a round (unreachable, retry budget spent, bad credentials).

    Terminating: the run ends with status `backend_unavailable` (exit code 5).
    """


class ContextWindowExceeded(Exception):
    """The conversation does not fit the model's context window (the run ends: context_exhausted)."""


class PromptTooLong(ContextWindowExceeded):
    """The server refused the prompt as longer than its context. The loop compacts the history and
    retries the round; only when the current turn alone does not fit does the run end.

    `counted`: the prompt tokens the server counted; `allowed`: its context length (None: not said)."""

    def __init__(self, message: str, *, counted: int | None = None, allowed: int | None = None) -> None:
        super().__init__(message)
        self.counted, self.allowed = counted, allowed

    def numbers(self) -> str:
        counted = f"{self.counted:,} tokens" if self.counted is not None else "the prompt"
        allowed = f"allows {self.allowed:,}" if self.allowed is not None else "refused it as too long"
        return f"the server counted {counted} and {allowed}"


class Backend(Protocol):
    name: str
    model: str
    context_window: int

    def stream(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams
    ) -> Generator[BackendEvent, None, None]: ...

    def count_tokens(self, text: str) -> int:
        """The size of a rendered prompt in tokens: exact where the backend has the tokenizer or
        the server counts, else an estimate that errs high (the context budget relies on it)."""
        ...

    def close(self) -> None:
        """Releases what the backend holds (connections); the session that made it calls this."""
        ...

    def credentials(self) -> dict[str, str]:
        """{name: value} of the secrets the backend holds (its API key), so that the session can
        redact them from everything it writes, whatever the variable holding them is called."""
