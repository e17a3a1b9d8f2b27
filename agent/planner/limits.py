"""Run limits and loop detection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Limits:
    max_turns: int = 50  # model rounds in one run
    max_tokens: int | None = None  # input + output tokens over the run
    max_cost: float | None = None  # USD, when the backend knows prices
    max_wall_seconds: float | None = None


class LoopDetector:
    """The same call with the same arguments again and again: warn at `warn_at`, stop after it."""

    def __init__(self, warn_at: int = 3) -> None:
        self.warn_at = warn_at
        self._last: str | None = None
        self._repeats = 0

    def observe(self, name: str, arguments: dict[str, Any]) -> str:
        """'ok', 'warn' (the warn_at-th identical call in a row) or 'stop' (one more after the warning)."""
        key = name + "\0" + json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str)
        self._repeats = self._repeats + 1 if key == self._last else 1
        self._last = key
        if self._repeats > self.warn_at:
            return "stop"
        return "warn" if self._repeats == self.warn_at else "ok"
