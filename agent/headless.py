"""`mmx-agent -p TASK`: the CI contract.

stdout carries only the final message (text), one result object (json) or the event stream as JSON
lines (stream-json). Progress goes to stderr. The exit code says how the run ended (docs/cli.md).
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from agent.backends.base import BackendError
from agent.config import Settings
from agent.events import (
    Compaction,
    FinalResult,
    FormatError,
    RoundRetry,
    Status,
    ToolCallStarted,
    ToolResultEvent,
    event_to_json,
)
from agent.loop import EXIT_CODES
from agent.runner import start_session

OUTPUT_FORMATS = ("text", "json", "stream-json")
EXIT_USAGE = 2


class ProgressPrinter:
    """One short line per step on stderr, for people watching a CI log."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: Any) -> None:
        line = self.line(event)
        if line:
            print(line, file=self.stream, flush=True)

    @staticmethod
    def line(event: Any) -> str | None:
        if isinstance(event, ToolCallStarted):
            return f"> {event.name} {summarise_arguments(event.arguments)}"
        if isinstance(event, ToolResultEvent):
            first = event.output.strip().splitlines()[:1]
            return "  ok" if event.ok else f"  failed: {first[0][:200] if first else ''}"
        if isinstance(event, Status):
            return f"[{event.level}] {event.message}"
        if isinstance(event, RoundRetry):
            return f"[retry {event.attempt}] {event.reason}"
        if isinstance(event, FormatError):
            return f"[malformed output] {event.message[:300]}"
        if isinstance(event, Compaction):
            return f"[context] {event.stage}: {event.tokens_before} -> {event.tokens_after} tokens"
        return None


def summarise_arguments(arguments: dict[str, Any], limit: int = 160) -> str:
    main = arguments.get("command") or arguments.get("path") or arguments.get("pattern")
    text = str(main) if main is not None else json.dumps(arguments, ensure_ascii=False)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def result_object(result: FinalResult) -> dict[str, Any]:
    data = asdict(result)
    data.pop("type")
    return data


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_headless(
    settings: Settings, task: str, output_format: str, workspace: Path, resume_id: str | None
) -> int:
    stdout = sys.stdout
    if output_format == "stream-json":

        def emit(event: Any) -> None:
            stdout.write(json.dumps(event_to_json(event), ensure_ascii=False) + "\n")
            stdout.flush()
    else:
        emit = ProgressPrinter(sys.stderr)
    try:
        session = start_session(settings, workspace, interactive=False, emit=emit, resume_id=resume_id)
    except BackendError as exc:
        print(f"error: backend unavailable: {exc}", file=sys.stderr)
        return EXIT_CODES["backend_unavailable"]
    except ValueError as exc:  # an unknown backend kind or option, a malformed URL
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a cancelled CI job ends like Ctrl-C
    try:
        result = session.run(task)
    finally:
        signal.signal(signal.SIGTERM, previous)
        session.close()
    if output_format == "json":
        stdout.write(json.dumps(result_object(result), ensure_ascii=False) + "\n")
    elif output_format == "text":
        if result.status == "done":
            stdout.write(result.result + ("" if result.result.endswith("\n") else "\n"))
        else:
            print(f"error: {result.status}: {result.result}", file=sys.stderr)
    stdout.flush()
    print(f"session {result.session_id}: {result.status} after {result.turns} turns", file=sys.stderr)
    return EXIT_CODES.get(result.status, 1)
