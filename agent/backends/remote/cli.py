"""`mmx-agent doctor` (registered by agent/app/cli.py), and `make_backend`, which turns `--backend`,
`--base-url`, `--model` and the API key's variable into a remote backend.

Exit statuses of doctor: 0 the thinking round-trips; 1 it does not (or could not be tested, or
the confinement the settings force cannot be had); 2 bad options; 5 the endpoint is unavailable
(unreachable, refused the key, retry budget spent). The report also says which confinement the
shell's commands would run under (bwrap, landlock, none or docker).
"""

from __future__ import annotations

import json

import typer

from agent.backends.base import BackendError
from agent.backends.remote.doctor import Check, DoctorReport, run_doctor
from agent.backends.remote.presets import BACKEND_KINDS, make_backend
from agent.exit_codes import ExitCode

__all__ = ["BACKEND_HELP", "doctor_command"]

BACKEND_HELP = f"Endpoint kind: {' | '.join(BACKEND_KINDS)}."


def doctor_command(
    backend: str = typer.Option("minimax", "--backend", help=BACKEND_HELP),
    base_url: str = typer.Option(None, "--base-url", help="API root, e.g. http://127.0.0.1:8000/v1."),
    model: str = typer.Option(None, "--model", help="Model name (default: the preset's, or the server's)."),
    api_key_env: str = typer.Option(
        None, "--api-key-env", help="Environment variable that holds the API key."
    ),
    timeout: float = typer.Option(300.0, "--timeout", help="Read timeout in seconds."),
    attempts: int = typer.Option(3, "--attempts", help="Attempts per round before giving up."),
    strict: bool = typer.Option(False, "--strict", help="Also fail unless the server side confirmed it."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Run a two-round tool exchange and check that the endpoint keeps M2's thinking between rounds."""
    try:
        remote = make_backend(
            backend, base_url, model, api_key_env, read_timeout=timeout, max_attempts=attempts
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    except BackendError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(ExitCode.BACKEND_UNAVAILABLE) from None
    with remote:
        report = run_doctor(remote, strict=strict)
    _add_confinement(report)
    if json_output:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        typer.echo(report.render())
    raise typer.Exit(report.exit_code)


def _add_confinement(report: DoctorReport) -> None:
    """The first line of the report: what would confine the shell's commands here, and how."""
    from pathlib import Path

    from agent.config import ConfigError, load_settings
    from agent.session_setup import describe_confinement
    from sandbox.base import SandboxError

    try:
        mode, detail = describe_confinement(load_settings(Path.cwd()))
    except (ConfigError, SandboxError) as exc:
        report.checks.insert(0, Check("confinement", "fail", str(exc)))
        return
    report.confinement = mode
    report.checks.insert(0, Check("confinement", "info" if mode == "none" else "pass", f"{mode}: {detail}"))
