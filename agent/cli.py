"""The `mmx-agent` command line. Each area owns its sub-commands; this file only wires them."""

from __future__ import annotations

import typer

from agent import __version__
from agent.backends.local.cli import app as model_app
from agent.backends.m2.cli import app as format_app
from agent.tools.cli import tool_command
from sandbox.cli import app as sandbox_app

app = typer.Typer(
    name="mmx-agent",
    help="A terminal coding agent built around MiniMax-M2.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmx-agent {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """A terminal coding agent built around MiniMax-M2."""


app.add_typer(format_app, name="format", help="Render prompts and parse completions in the M2 format.")
app.add_typer(model_app, name="model", help="The local M2 model: make, inspect and run checkpoints.")
app.add_typer(sandbox_app, name="sandbox", help="Docker sandboxes: base images, one-off commands, clean-up.")
app.command("tool", help="Run one tool and print its result as JSON.")(tool_command)


def main() -> None:
    app()
