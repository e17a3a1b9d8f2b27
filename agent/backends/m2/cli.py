"""`mmx-agent format render|parse`: the format layer for users debugging an endpoint, and for scripts.

Exit codes: 0 done; 1 the input was read but rejected (invalid JSON, a conversation the template
rejects); 2 bad usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from agent.backends.m2.parse import parse_completion
from agent.backends.m2.render import RenderError, render_prompt
from agent.backends.messages import MessageFormatError, messages_from_openai, tools_from_openai
from agent.exit_codes import ExitCode

app = typer.Typer(no_args_is_help=True)

DIALECT_HELP = "Prompt dialect: m2 (MiniMax-M2 family) or m1 (MiniMax-M1)."


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(ExitCode.ERROR)


def _check_dialect(dialect: str) -> None:
    if dialect not in ("m2", "m1"):
        typer.echo(f"error: --dialect must be m2 or m1, got {dialect!r}", err=True)
        raise typer.Exit(ExitCode.USAGE)


def _load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{what} is not valid JSON: {exc}")


def _load_tools(path: Path | None) -> list[dict[str, Any]] | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    try:
        return tools_from_openai(_load_json(text, str(path)))
    except MessageFormatError as exc:
        _fail(f"{path}: {exc}")


def _read_stdin() -> str:
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")


@app.command("render")
def render(
    tools: Path = typer.Option(None, "--tools", help="JSON list of OpenAI tools."),
    dialect: str = typer.Option("m2", "--dialect", help=DIALECT_HELP),
    no_generation_prompt: bool = typer.Option(
        False, "--no-generation-prompt", help="Do not open an assistant turn."
    ),
) -> None:
    """Read a JSON list of OpenAI chat messages on stdin; print the prompt exactly (no added newline)."""
    _check_dialect(dialect)
    tool_list = _load_tools(tools)
    try:
        messages = messages_from_openai(_load_json(_read_stdin(), "stdin"))
        prompt = render_prompt(
            messages, tool_list, dialect=dialect, add_generation_prompt=not no_generation_prompt
        )
    except (MessageFormatError, RenderError) as exc:
        _fail(str(exc))
    sys.stdout.buffer.write(prompt.encode("utf-8"))
    sys.stdout.buffer.flush()


@app.command("parse")
def parse(
    tools: Path = typer.Option(None, "--tools", help="JSON list of OpenAI tools (types the arguments)."),
    dialect: str = typer.Option("m2", "--dialect", help=DIALECT_HELP),
) -> None:
    """Read a raw completion on stdin; print {reasoning, content, tool_calls, errors} as one JSON object."""
    _check_dialect(dialect)
    result = parse_completion(_read_stdin(), _load_tools(tools), dialect=dialect)
    sys.stdout.buffer.write(json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8") + b"\n")
    sys.stdout.buffer.flush()
