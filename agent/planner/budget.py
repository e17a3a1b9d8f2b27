"""Token counting for the context budget.

Exact counts come from the local tokenizer when the backend has one (`count_tokens`); remote
endpoints report usage after the fact, so before a round we estimate. The estimate errs high
(about 3.5 characters a token for code and English) so that compaction starts early, not late.
"""

from __future__ import annotations

import math
from typing import Any

CHARS_PER_TOKEN = 3.5


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def count_tokens(backend: Any, text: str) -> int:
    counter = getattr(backend, "count_tokens", None)
    return counter(text) if callable(counter) else estimate_tokens(text)
