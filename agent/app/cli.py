"""The `mmx-agent` command line. Each area owns its sub-commands; this file wires them and the root.

`mmx-agent` alone starts the interactive agent; `mmx-agent -p TASK` (or a task on stdin) runs it
once, non-interactively, with the contract in docs/cli.md.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import typer

try:  # typer 0.29 and later carry their own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import ClickException

from agent import __version__
from agent.backends.local.cli import app as model_app
from agent.backends.m2.cli import app as format_app
from agent.backends.remote.cli import doctor_command
from agent.exit_codes import ExitCode
from agent.mcp.cli import app as mcp_app
from agent.serve.cli import serve_command
from agent.tools.cli import tool_command
from evals.cli import app as eval_app
from sandbox.cli import app as sandbox_app

app = typer.Typer(
    name="mmx-agent",
    help="A terminal coding agent built around MiniMax-M2.",
    add_completion=False,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
)
BACKENDS = ("minimax", "openai-compatible", "anthropic-compatible", "completions", "local", "replay")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmx-agent {__version__}")
        raise typer.Exit()


def _usage_error(message: str, output_format: str = "text", run: bool = False) -> None:
    """Exit 2 with one line on stderr; a -p run in json/stream-json mode still prints its result object."""
    if run and output_format in ("json", "stream-json"):
        from agent.app.headless import fail_before_start

        raise typer.Exit(fail_before_start(output_format, "usage_error", message))
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(ExitCode.USAGE)


@app.callback()
def root(
    ctx: typer.Context,
    print_task: str = typer.Option(
        None, "-p", "--print", help="Run this task non-interactively ('-' reads stdin)."
    ),
    output_format: str = typer.Option("text", "--output-format", help="text | json | stream-json (with -p)."),
    max_turns: int = typer.Option(None, "--max-turns", min=1, help="Most model rounds in one run."),
    max_cost: float = typer.Option(None, "--max-cost", min=0, help="Most USD to spend in one run."),
    max_tokens: int = typer.Option(
        None, "--max-tokens", min=1, help="Most tokens (input + output) in one run."
    ),
    max_wall_seconds: float = typer.Option(
        None, "--timeout", min=0.001, help="Most seconds one run may take."
    ),
    permission_mode: str = typer.Option(
        None, "--permission-mode", help="ask | auto-edit | full-auto | plan (read-only, ends with a plan)."
    ),
    allow: list[str] = typer.Option(
        None, "--allow", help="Run calls matching TOOL or TOOL(glob) without asking."
    ),
    deny: list[str] = typer.Option(None, "--deny", help="Never run calls matching TOOL or TOOL(glob)."),
    backend: str = typer.Option(
        None,
        "--backend",
        help="minimax | openai-compatible | anthropic-compatible | completions | local | replay.",
    ),
    model: str = typer.Option(None, "--model", help="Model name (remote) or checkpoint directory (local)."),
    base_url: str = typer.Option(None, "--base-url", help="The endpoint's /v1 root."),
    api_key_env: str = typer.Option(None, "--api-key-env", help="Environment variable holding the API key."),
    replay: str = typer.Option(None, "--replay", help="Replay file for --backend replay."),
    sandbox: str = typer.Option(
        None, "--sandbox", help="confined (default) | local (unconfined) | docker: where tools run."
    ),
    network: str = typer.Option(
        None, "--network", help="host (default) | none: the network the shell's commands get."
    ),
    context_window: int = typer.Option(
        None, "--context-window", min=1, help="Override the model's context window."
    ),
    tokenizer: str = typer.Option(
        None,
        "--tokenizer",
        help="Remote backends: the model's tokenizer.json (or its directory), to count prompts.",
    ),
    verify: str = typer.Option(
        None, "--verify", help="-p: run this test command at the end and report it (default: detected)."
    ),
    verify_retries: int = typer.Option(
        None, "--verify-retries", min=0, help="-p: send a failed verification back to the model N times."
    ),
    require_verified: bool = typer.Option(
        False, "--require-verified", help="-p: end with exit 6 unless our verification passed."
    ),
    json_schema: str = typer.Option(
        None,
        "--json-schema",
        help="-p: the final answer must be JSON valid against this schema (file or JSON).",
    ),
    cwd: Path = typer.Option(None, "--cwd", help="Work in this directory instead of the current one."),
    resume: str = typer.Option(None, "--resume", help="Continue the session with this id."),
    continue_last: bool = typer.Option(
        False, "--continue", help="Continue the latest session in this directory."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks of unexpected errors (also MMX_AGENT_DEBUG=1)."
    ),
) -> None:
    """A terminal coding agent built around MiniMax-M2."""
    if ctx.invoked_subcommand is not None:
        return
    from agent.config import ConfigError, load_settings
    from agent.permissions import PermissionRuleError, Rule
    from agent.transcripts import SessionNotFound, latest_session, session_path

    if output_format not in ("text", "json", "stream-json"):
        _usage_error(f"--output-format must be text, json or stream-json, got {output_format!r}")
    run = print_task is not None

    def usage_error(message: str) -> None:
        _usage_error(message, output_format, run)

    workspace = (cwd or Path.cwd()).resolve()
    if not workspace.is_dir():
        usage_error(f"--cwd {workspace} is not a directory")
    flags = {
        "max_turns": max_turns,
        "max_cost": max_cost,
        "max_tokens": max_tokens,
        "max_wall_seconds": max_wall_seconds,
        "permission_mode": permission_mode,
        "allow": allow,
        "deny": deny,
        "backend": backend,
        "model": model,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "replay": replay,
        "sandbox": sandbox,
        "network": network,
        "context_window": context_window,
        "tokenizer": tokenizer,
        "verify_retries": verify_retries,
        "require_verified": require_verified or None,
    }
    try:
        settings = load_settings(workspace, flags)
        for rule in [*settings.allow, *settings.deny]:
            Rule.parse(rule)
    except (ConfigError, PermissionRuleError) as exc:
        usage_error(str(exc))
    if print_task is None and (verify or json_schema or require_verified or verify_retries is not None):
        usage_error("--verify, --verify-retries, --require-verified and --json-schema apply to -p runs")
    if continue_last:
        resume = latest_session(str(workspace))
        if resume is None:
            usage_error(f"--continue: no earlier session in {workspace}")
    if resume:
        try:
            session_path(resume)
        except SessionNotFound as exc:
            usage_error(str(exc))

    task = print_task
    piped = sys.stdin is not None and not sys.stdin.isatty()  # CI may run us with no stdin at all
    if task == "-" or (task is None and piped):
        task = sys.stdin.read() if sys.stdin is not None else ""
    if task is not None:
        if not task.strip():
            _usage_error("the task is empty", output_format, True)
        from agent.app.headless import run_headless
        from agent.planner.final_answer import AnswerRules
        from agent.planner.structured_output import SchemaError, load_schema
        from agent.planner.verification import VerifyCommand

        schema = None
        if json_schema is not None:
            try:
                schema = load_schema(json_schema, lambda name: Path(name).read_text(encoding="utf-8"))
            except (SchemaError, UnicodeDecodeError) as exc:
                usage_error(str(exc))
        chosen = verify or settings.verify_command
        rules = AnswerRules(
            verify=VerifyCommand(chosen, "flag" if verify else "config") if chosen else None,
            verify_timeout=settings.verify_timeout,
            verify_retries=settings.verify_retries,
            require_verified=settings.require_verified,
            schema=schema,
        )
        raise typer.Exit(run_headless(settings, task, output_format, workspace, resume, rules))
    if sys.stdin is None:
        _usage_error("no task and no terminal: give the task with -p TASK (or on stdin)")
    from agent.app.interactive import run_interactive

    raise typer.Exit(run_interactive(settings, workspace, resume))


sessions_app = typer.Typer(no_args_is_help=True)


@sessions_app.command("list")
def sessions_list(as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """Saved sessions, newest first."""
    from agent.transcripts import list_sessions

    for info in list_sessions():
        if as_json:
            typer.echo(json.dumps(info.to_json(), ensure_ascii=False))
        else:
            first = info.first_message.strip().replace("\n", " ")[:60]
            typer.echo(f"{info.session_id}  {info.status:<20} {info.cwd}  {first}")


@sessions_app.command("show")
def sessions_show(session_id: str) -> None:
    """Print a session's events as JSON lines."""
    from agent.transcripts import SessionNotFound, session_path

    try:
        path = session_path(session_id)
    except SessionNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    from agent.events import json_text
    from agent.secrets import Redactor

    # Written redacted; redacted again for files from older versions or another environment.
    redactor = Redactor.for_environment()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            sys.stdout.write(json_text(redactor.redact_data(json.loads(line))) + "\n")
        except json.JSONDecodeError:
            sys.stdout.write(redactor.redact(line) + "\n")


app.add_typer(sessions_app, name="sessions", help="Saved sessions: list them, show one.")
app.add_typer(format_app, name="format", help="Render prompts and parse completions in the M2 format.")
app.add_typer(model_app, name="model", help="The local M2 model: make, inspect and run checkpoints.")
app.add_typer(sandbox_app, name="sandbox", help="Docker sandboxes: base images, one-off commands, clean-up.")
app.add_typer(eval_app, name="eval", help="Replay SWE-style tasks in Docker sandboxes and grade them.")
app.add_typer(mcp_app, name="mcp", help="MCP servers: list them (status, tools), add one to the config.")
app.command("tool", help="Run one tool and print its result as JSON.")(tool_command)
app.command("doctor", help="Check that an endpoint keeps M2's thinking between tool rounds.")(doctor_command)
app.command("serve", help="Serve a local checkpoint over OpenAI- and Anthropic-style HTTP.")(serve_command)


def _hide_flag_placeholders(command: Any) -> None:
    """Boolean flags take no value: show no `<bool>` placeholder for them in --help (typer would)."""
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    help_option = command.get_help_option(typer.Context(command))
    if help_option is not None:
        help_option.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_placeholders(sub)


def _json_run_format(args: list[str]) -> str | None:
    """`json` or `stream-json` when argv asks for a -p run with that output format, else None."""
    fmt, run = None, False
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("-p", "--print") or arg.startswith("--print="):
            run = True
        elif arg == "--output-format" and i + 1 < len(args):
            fmt = args[i + 1]
        elif arg.startswith("--output-format="):
            fmt = arg.split("=", 1)[1]
    return fmt if run and fmt in ("json", "stream-json") else None


def _show_usage_error(error: Any) -> None:
    try:
        from typer import rich_utils

        rich_utils.rich_format_error(error)
    except Exception:  # noqa: BLE001 - typer's formatter is internal: fall back to click's own
        error.show()


def main() -> None:
    from agent.errors import describe, report_unexpected, show_warning, take_debug_flag

    warnings.showwarning = show_warning
    args = take_debug_flag(sys.argv[1:])
    command = typer.main.get_command(app)
    _hide_flag_placeholders(command)
    try:
        code = command.main(args=args, prog_name="mmx-agent", standalone_mode=False)
    except ClickException as error:  # bad usage that the parser found (unknown flag, bad value)
        _show_usage_error(error)
        fmt = _json_run_format(args)
        if fmt is not None:
            from agent.app.headless import print_result, setup_failure

            print_result(setup_failure("usage_error", f"bad usage: {error.format_message()}"), fmt)
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(ExitCode.CANCELLED)
    except Exception as exc:  # no traceback reaches a user: one line (the traceback with --debug)
        print(f"error: {describe(exc)}", file=sys.stderr)
        report_unexpected(exc)
        sys.exit(ExitCode.ERROR)
    sys.exit(code if isinstance(code, int) else 0)
