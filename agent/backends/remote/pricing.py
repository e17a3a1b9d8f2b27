"""What a round cost, from the token counts and a price table the user can override.

Prices are US dollars per million tokens, as MiniMax published them for its hosted API at the time
of writing; a user config replaces or adds entries (`prices={"MiniMax-M2": {"input": ...}}`).
A model with no entry costs None (unknown), never 0: a self-hosted server has no price list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Price:
    input: float  # per million uncached input tokens
    output: float  # per million output tokens (reasoning included)
    cached_input: float | None = None  # per million cache-read tokens; None: same as input

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(max(cached_tokens, 0), input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (input_tokens - cached) * self.input + cached * cached_rate + output_tokens * self.output
        ) / 1e6


DEFAULT_PRICES: dict[str, Price] = {
    "MiniMax-M2": Price(0.30, 1.20, 0.03),
    "MiniMax-M2.1": Price(0.30, 1.20, 0.03),
    "MiniMax-M2.1-lightning": Price(0.30, 2.40, 0.03),
    "MiniMax-M2.5": Price(0.30, 1.20, 0.03),
    "MiniMax-M2.5-highspeed": Price(0.60, 2.40, 0.03),
    "MiniMax-M2.7": Price(0.30, 1.20, 0.06),
    "MiniMax-M2.7-highspeed": Price(0.60, 2.40, 0.06),
}


def price_table(overrides: Mapping[str, Any] | None = None) -> dict[str, Price]:
    """The defaults with the user's entries on top; an entry is a Price or {"input", "output", ...}."""
    table = dict(DEFAULT_PRICES)
    for model, entry in (overrides or {}).items():
        if entry is None:
            table.pop(model, None)  # the user says: no price for this one
        elif isinstance(entry, Price):
            table[model] = entry
        elif isinstance(entry, Mapping):
            try:
                table[model] = Price(
                    float(entry["input"]),
                    float(entry["output"]),
                    None if entry.get("cached_input") is None else float(entry["cached_input"]),
                )
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"price for {model!r}: expected {{'input': $/Mtok, 'output': $/Mtok, "
                    f"'cached_input': $/Mtok (optional)}}, got {entry!r}"
                ) from None
        else:
            raise ValueError(f"price for {model!r} must be a mapping, got {type(entry).__name__}")
    return table


def lookup_price(table: Mapping[str, Price], model: str) -> Price | None:
    """Exact name first, then case-insensitive (APIs accept `minimax-m2` as well)."""
    if model in table:
        return table[model]
    lowered = model.lower()
    return next((price for name, price in table.items() if name.lower() == lowered), None)
