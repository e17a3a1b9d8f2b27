"""An infrastructure failure: a job failed for reasons that are neither the model's nor the patch's.

It is reported apart from unresolved tasks and re-run by the next `eval run` into the same output.
On disk (report.json, agent.json) it is {"kind", "message"}, or null when there was none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InfraFailure:
    kind: str  # build | oom | timeout | daemon | backend | task | grader | harness | fleet
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}

    @classmethod
    def from_json(cls, data: Any) -> InfraFailure | None:
        """The failure a report saved, or None for null (no failure)."""
        if not data:
            return None
        return cls(data["kind"], data["message"])

    @property
    def headline(self) -> str:
        """The message's first line, short enough for a progress line."""
        return (self.message.splitlines() or [""])[0][:200]
