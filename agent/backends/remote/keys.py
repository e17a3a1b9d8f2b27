"""API keys: read from an environment variable, never shown.

The key lives in an ApiKey whose repr and str hide it, and every text that can leave the backend
(error messages, server replies quoted in them) goes through `scrub`, because servers do echo
keys back ("Incorrect API key provided: sk-...").
"""

from __future__ import annotations

import os

REDACTED = "[redacted]"


class ApiKey:
    __slots__ = ("_value", "env")

    def __init__(self, value: str, env: str) -> None:
        self._value = value
        self.env = env  # the variable's name, which is safe to show

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"ApiKey(env={self.env!r})"

    __str__ = __repr__

    def __reduce__(self):  # pickling would write the key somewhere: refuse
        raise TypeError("ApiKey cannot be pickled")


def read_api_key(env: str) -> ApiKey | None:
    value = os.environ.get(env, "").strip()
    return ApiKey(value, env) if value else None


def scrub(text: str, key: ApiKey | None) -> str:
    """`text` with every occurrence of the key (and of its long prefixes) replaced."""
    if key is None or not text:
        return text
    value = key.reveal()
    text = text.replace(value, REDACTED)
    # Servers often quote a truncated key ("sk-abc...xyz"); hide any long-enough fragment.
    if len(value) >= 16:
        for size in range(len(value) - 1, 11, -1):
            head, tail = value[:size], value[-size:]
            if head in text:
                text = text.replace(head, REDACTED)
            if tail in text:
                text = text.replace(tail, REDACTED)
    return text
