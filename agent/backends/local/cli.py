"""`mmx-agent model ...` (placeholder until the local backend lands)."""

import typer

app = typer.Typer(no_args_is_help=True)
