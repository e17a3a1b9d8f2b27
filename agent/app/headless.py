"""`mmx-agent -p TASK`: the CI contract.

stdout carries only the final message (text), one result object (json) or the event stream as JSON
lines (stream-json). Progress goes to stderr. The exit code says how the run ended (docs/cli.md).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from agent.backends.base import BackendError
from agent.config import Settings
from agent.custom_commands import find_invocation
from agent.errors import describe, report_unexpected
from agent.events import (
    ChildEvent,
    Compaction,
    FinalResult,
    FormatError,
    RoundRetry,
    Status,
    ToolCallStarted,
    ToolResultEvent,
    event_to_json,
    json_text,
)
from agent.exit_codes import exit_code_for
from agent.planner.final_answer import AnswerRules
from agent.secrets import Redactor, redact
from agent.session_setup import start_session
from sandbox.base import SandboxError

OUTPUT_FORMATS = ("text", "json", "stream-json")


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
        if isinstance(event, ChildEvent):  # a subagent's step, under the task call that started it
            inner = ProgressPrinter.line(event.event)
            return None if inner is None else f"  [{event.parent_id}] {inner}"
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
    main = (
        arguments.get("command") or arguments.get("path") or arguments.get("pattern") or arguments.get("url")
    )
    text = str(main) if main is not None else json.dumps(arguments, ensure_ascii=False)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def result_object(result: FinalResult) -> dict[str, Any]:
    data = asdict(result)
    data.pop("type")
    return data


def setup_failure(status: str, message: str, started: float | None = None) -> FinalResult:
    """The result of a run that ended before its session started (no backend, no sandbox, bad flags)."""
    return FinalResult(
        status=status,
        result=message,
        diff="",
        turns=0,
        usage={"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0},
        cost=None,
        session_id="",
        duration_ms=0 if started is None else int((time.monotonic() - started) * 1000),
        verified=False,
    )


def print_result(result: FinalResult, output_format: str, *, streamed: bool = False) -> int:
    """Writes what `output_format` promises on stdout for `result`; returns the exit code.

    `streamed`: the final_result event already went out with the event stream (stream-json)."""
    if output_format == "json":
        sys.stdout.write(json_text(result_object(result)) + "\n")
    elif output_format == "stream-json" and not streamed:
        sys.stdout.write(json_text(event_to_json(result)) + "\n")
    elif output_format == "text":
        if result.status == "done":
            answer = result.result if isinstance(result.result, str) else json_text(result.result)
            sys.stdout.write(answer + ("" if answer.endswith("\n") else "\n"))
        else:
            print(f"error: {result.status}: {result.result}", file=sys.stderr)
    sys.stdout.flush()
    return exit_code_for(result.status)


def fail_before_start(output_format: str, status: str, message: str, started: float | None = None) -> int:
    """Ends a -p run that could not start: one line on stderr, and the documented stdout."""
    message = redact(message)  # credentials from the environment; the callers hide the backend's key
    print(f"error: {message}", file=sys.stderr)
    if output_format == "text":
        sys.stdout.flush()
        return exit_code_for(status)
    return print_result(setup_failure(status, message, started), output_format)


def _progress(line: str) -> None:
    print(f"[local] {line}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_headless(
    settings: Settings,
    task: str,
    output_format: str,
    workspace: Path,
    resume_id: str | None,
    answer_rules: AnswerRules | None = None,
) -> int:
    started = time.monotonic()
    stdout = sys.stdout
    invocation = find_invocation(task, workspace)
    if invocation is not None:  # `/NAME args`: the command's prompt, with its allowed tools
        command, arguments = invocation
        task = command.prompt(arguments)
        settings = settings.model_copy(update={"allow": [*settings.allow, *command.allowed_tools]})
    key_env = settings.api_key_env
    hide = Redactor.for_environment(extra={key_env: os.environ.get(key_env, "")} if key_env else {}).redact
    if output_format == "stream-json":

        def emit(event: Any) -> None:
            stdout.write(json_text(event_to_json(event)) + "\n")
            stdout.flush()
    else:
        emit = ProgressPrinter(sys.stderr)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a cancelled CI job ends like Ctrl-C
    try:
        try:
            session = start_session(
                settings,
                workspace,
                interactive=False,
                emit=emit,
                resume_id=resume_id,
                progress=_progress,
                answer_rules=answer_rules,
            )
        except BackendError as exc:
            return fail_before_start(
                output_format, "backend_unavailable", hide(f"backend unavailable: {exc}"), started
            )
        except SandboxError as exc:
            return fail_before_start(output_format, "error", hide(f"sandbox unavailable: {exc}"), started)
        except ValueError as exc:  # an option the backend refuses (a malformed URL, a bad tokenizer file)
            return fail_before_start(output_format, "usage_error", hide(str(exc)), started)
        except KeyboardInterrupt:
            return fail_before_start(output_format, "cancelled", "cancelled before the run started", started)
        except Exception as exc:  # a bug: still one result, and the traceback only with --debug
            code = fail_before_start(
                output_format, "error", hide(f"internal error: {describe(exc)}"), started
            )
            report_unexpected(exc)
            return code
        try:
            result = session.run(task)
        finally:
            session.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = print_result(result, output_format, streamed=True)
    print(f"session {result.session_id}: {result.status} after {result.turns} turns", file=sys.stderr)
    return code
