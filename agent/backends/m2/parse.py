"""Incremental parser for raw completions (work in progress)."""
from __future__ import annotations


class CompletionParser:
    def __init__(self, tools: list[dict] | None = None, *, dialect: str = "m2") -> None:
        self.tools = tools or []

    def feed(self, chunk: str) -> list:
        raise NotImplementedError

    def finish(self) -> list:
        raise NotImplementedError
