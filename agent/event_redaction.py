"""Events as they leave a session: every one redacted, streamed model text included.

A redactor that saw one delta at a time would let a secret streamed in two pieces through. So the
end of a delta that could begin a secret is held back and sent with the next delta of its kind,
or just before the next event of any other kind (the round's complete message always follows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.backends.events import ReasoningDelta, TextDelta
from agent.secrets import RedactingStream, Redactor

DELTAS = (ReasoningDelta, TextDelta)


class RedactedEvents:
    """Wraps an emit function: what reaches it is redacted."""

    def __init__(self, redactor: Redactor, emit: Callable[[Any], None]) -> None:
        self.redactor = redactor
        self.emit = emit
        self.streams: dict[type, RedactingStream] = {kind: redactor.stream() for kind in DELTAS}

    def __call__(self, event: Any) -> None:
        kind = type(event)
        self._flush(but=kind)
        if kind in self.streams:
            text = self.streams[kind].feed(event.text)
            if text:
                self.emit(kind(text))
            return
        self.emit(self.redactor.redact_event(event))

    def _flush(self, but: type | None = None) -> None:
        for kind, stream in self.streams.items():
            if kind is not but and stream.held:
                self.emit(kind(stream.flush()))
