"""Sessions: every run's event stream as JSON lines under the user's state directory.

Each event is written and flushed as it happens, so a run that is interrupted or killed keeps
everything up to its last event, and `--resume` can rebuild the conversation from the file.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.events import event_from_json, event_to_json, json_text


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "mmx-agent"


def sessions_dir() -> Path:
    return state_dir() / "sessions"


def new_session_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class SessionNotFound(LookupError):
    pass


class SessionWriter:
    def __init__(self, session_id: str, directory: Path | None = None) -> None:
        self.session_id = session_id
        self.path = (directory or sessions_dir()) / f"{session_id}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, event: Any) -> None:
        if self._file.closed:
            return
        self._file.write(json_text(event_to_json(event)) + "\n")  # never fails on a lone surrogate
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def session_path(session_id: str, directory: Path | None = None) -> Path:
    if not session_id or "/" in session_id or session_id.startswith("."):
        raise SessionNotFound(f"no session {session_id!r}")
    path = (directory or sessions_dir()) / f"{session_id}.jsonl"
    if not path.is_file():
        raise SessionNotFound(f"no session {session_id!r} in {path.parent}")
    return path


def load_events(session_id: str, directory: Path | None = None) -> list[Any]:
    events = []
    with session_path(session_id, directory).open(encoding="utf-8") as lines:
        for line in lines:
            try:
                events.append(event_from_json(json.loads(line)))
            except (json.JSONDecodeError, ValueError, TypeError):
                continue  # a line torn by a crash: everything before it still counts
    return events


@dataclass
class SessionInfo:
    session_id: str
    cwd: str
    started_at: float
    first_message: str
    status: str  # the last run's status, or "running/interrupted" when it has none

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "cwd": self.cwd,
            "started_at": self.started_at,
            "first_message": self.first_message,
            "status": self.status,
        }


def list_sessions(directory: Path | None = None) -> list[SessionInfo]:
    """Newest first."""
    infos = []
    for path in sorted((directory or sessions_dir()).glob("*.jsonl"), reverse=True):
        cwd, started, first, status = "", path.stat().st_mtime, "", "interrupted"
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "parent_id" in data:
                    continue  # a subagent's event says nothing of the session's own run
                kind = data.get("type")
                if kind == "session_start" and not cwd:
                    cwd, started = data.get("cwd", ""), data.get("started_at", started)
                elif kind == "user_message" and not first:
                    first = data.get("text", "")
                elif kind == "final_result":
                    status = data.get("status", status)
        infos.append(SessionInfo(path.stem, cwd, started, first, status))
    return infos


def latest_session(cwd: str, directory: Path | None = None) -> str | None:
    return next((info.session_id for info in list_sessions(directory) if info.cwd == cwd), None)
