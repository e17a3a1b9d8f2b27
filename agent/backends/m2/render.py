"""Messages + tools -> prompt string (work in progress)."""
from __future__ import annotations

from typing import Any


def render_prompt(messages: list[Any], tools: list[dict] | None = None, *, dialect: str = "m2",
                  add_generation_prompt: bool = True) -> str:
    raise NotImplementedError
