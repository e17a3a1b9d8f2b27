"""Recognising a server's "prompt too long" refusal by its error body.

The wordings seen from the servers M2 runs on (the numbers are what the server counted and allows):
- vLLM: "This model's maximum context length is 4096 tokens. However, you requested 5486 tokens
  (5486 in the messages, 0 in the completion)." and, newer, "... maximum context length is 4096
  tokens and your request has 5486 input tokens";
- SGLang: "The input (5486 tokens) is longer than the model's context length (4096 tokens).";
- OpenAI: "... maximum context length is 128000 tokens. However, your messages resulted in 130000
  tokens" (code context_length_exceeded);
- Anthropic: "prompt is too long: 208310 tokens > 200000 maximum";
- MiniMax: "invalid params, context window exceeds limit (2013)" (2013 is MiniMax's error code, not
  a token count: no numbers).
"""

from __future__ import annotations

import re

from agent.backends.base import PromptTooLong

_ALLOWED = [
    r"maximum context length is (?P<allowed>\d+)",
    r"model's context length \((?P<allowed>\d+) tokens\)",
    r"tokens > (?P<allowed>\d+) maximum",
]
_COUNTED = [
    r"you requested (?P<counted>\d+) tokens \((?P<input>\d+) in the messages",
    r"your request has (?P<counted>\d+) input tokens",
    r"your messages resulted in (?P<counted>\d+) tokens",
    r"the input \((?P<counted>\d+) tokens\)",
    r"prompt is too long: (?P<counted>\d+) tokens",
]
_WITHOUT_NUMBERS = [r"context window exceeds limit", r"context_length_exceeded", r"prompt is too long"]


def _first_number(patterns: list[str], text: str, *groups: str) -> int | None:
    for pattern in patterns:
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            found = match.groupdict()
            for group in groups:
                if found.get(group):
                    return int(found[group])
    return None


def context_rejection(status: int, message: str) -> PromptTooLong | None:
    """The refusal as PromptTooLong when `message` says the prompt is over the context, else None."""
    if status not in (400, 413, 422):
        return None
    allowed = _first_number(_ALLOWED, message, "allowed")
    counted = _first_number(_COUNTED, message, "input", "counted")  # the prompt part when both are given
    said_so = any(re.search(p, message, re.IGNORECASE) for p in _WITHOUT_NUMBERS)
    if allowed is None and counted is None and not said_so:
        return None
    return PromptTooLong(message, counted=counted, allowed=allowed)
