"""Counting a prompt's tokens the way the server will, so compaction starts before the server refuses.

Three sources, best first:
1. the model's own tokenizer (`--tokenizer PATH`: a tokenizer.json or a checkpoint directory holding
   one), applied to the prompt as the M2 template renders it (our renderer is byte-identical to it);
2. the server's vLLM/SGLang-style `/tokenize` endpoint (at the server root, beside `/v1`), asked once
   and not again if it has none; it also tells the context window the server was started with;
3. an estimate calibrated by the prompt tokens the server reports after every round. Consecutive
   prompts share long prefixes (the system prompt and tools, then the whole history), so the part of a
   new prompt that a reported prompt already covers counts what the server counted for it, and only
   the rest is estimated: as pieces the way byte-level BPE tokenizers pre-split text (words, runs of
   punctuation, up to three digits, whitespace; long words count extra), scaled by the tokens per
   piece the server's reports showed overall. Pieces follow the tokenizer where characters do not:
   code and punctuation-dense text have far more tokens per character than prose, so a fixed chars/4
   is off by a third on some prompts.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.backends.token_estimate import estimate_tokens

CACHE_SIZE = 16  # the compactor counts the same prompt a few times per round
KEEP_REPORTS = 8  # prompts whose server count is known, most recent last
# How GPT-style byte-level BPE tokenizers (M2's among them) pre-split text before merging.
PIECE = re.compile(r"[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+")
LONG_WORD = 12  # letters per extra token in a long word


def pieces(text: str) -> int:
    count = 0
    for match in PIECE.finditer(text):
        piece = match.group()
        count += 1 + (len(piece) // LONG_WORD if piece[-1:].isalpha() else 0)
    return count


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix, by bisection on slice equality (C speed on long prompts)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def load_tokenizer(path: str | Path) -> Any:
    """A `tokenizers.Tokenizer` from a tokenizer.json file or a directory holding one."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"--tokenizer: no tokenizer.json at {path}")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ValueError("--tokenizer needs the tokenizers package: pip install tokenizers") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - the library raises plain Exceptions for bad files
        raise ValueError(f"--tokenizer: {path} is not a tokenizer.json ({exc})") from None


class PromptTokens:
    """`count(prompt)` for the context budget; `observe(prompt, server_count)` after each round."""

    def __init__(
        self,
        tokenizer: Any = None,
        tokenize: Callable[[str], tuple[int, int | None] | None] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        # The server's /tokenize: (count, max_model_len) or None when it has no such endpoint.
        self._tokenize = tokenize
        self.reports: list[tuple[str, int]] = []  # (prompt, the server's count of it)
        self.server_window: int | None = None  # max_model_len, when /tokenize said
        self.source = "tokenizer" if tokenizer is not None else "estimate"
        self._cache: OrderedDict[str, int] = OrderedDict()

    def count(self, prompt: str) -> int:
        key = hashlib.sha1(prompt.encode("utf-8", "surrogatepass")).hexdigest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        tokens = self._count(prompt)
        self._cache[key] = tokens
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return tokens

    def _count(self, prompt: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(prompt, add_special_tokens=False).ids)
        if self._tokenize is not None:
            answer = self._tokenize(prompt)
            if answer is None:
                self._tokenize = None  # no /tokenize on this server: never ask again
            else:
                self.source = "server"
                count, window = answer
                self.server_window = window or self.server_window
                return count
        if not self.reports:
            return estimate_tokens(prompt)
        ratio = sum(count for _, count in self.reports) / max(1, sum(pieces(p) for p, _ in self.reports))
        known, count = max(self.reports, key=lambda report: common_prefix_length(report[0], prompt))
        shared = common_prefix_length(known, prompt)
        covered = count * shared / len(known)  # exact when the whole reported prompt is a prefix
        return math.ceil(covered + pieces(prompt[shared:]) * ratio)

    def observe(self, prompt: str, server_count: int) -> None:
        """The server counted `server_count` tokens for `prompt`: later counts build on it."""
        if server_count <= 0 or not prompt:
            return
        self.reports = [*self.reports, (prompt, server_count)][-KEEP_REPORTS:]
        self.source = "calibrated"
        self._cache.clear()
