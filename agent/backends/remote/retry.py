"""When and how long to wait before trying a round again.

A round is retried as a whole (the stream is restarted from scratch) on overload and network
trouble; everything else is a clear error at once.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# 408 request timeout, 409 conflict (some gateways under load), 429 rate limit, 5xx server trouble.
RETRYABLE_STATUS = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or 500 <= status <= 599


class RetryableError(Exception):
    """This attempt failed in a way that a fresh attempt may not (overload, network, cut stream)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class RetryPolicy:
    max_attempts: int = 5  # attempts per round, the first one included
    base_delay: float = 1.0  # seconds before the 2nd attempt; doubles each time
    max_delay: float = 30.0
    max_retry_after: float = 120.0  # a server asking for longer than this is waited on this long
    jitter: float = 0.5  # fraction of the delay that is random, so that clients spread out
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, failed_attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `failed_attempts` failures; Retry-After wins when the server sent it."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        delay = min(self.base_delay * 2 ** (failed_attempts - 1), self.max_delay)
        return delay * (1 - self.jitter * random.random())


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None if absent."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
