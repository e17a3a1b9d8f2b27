"""A prompt's size in tokens when no tokenizer is at hand.

About 3.5 characters a token for code and English; the estimate errs high so that compaction
starts early, not late. Backends with a tokenizer (or a server that counts) do better.
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 3.5


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)
