"""`mmx-agent sandbox ...` (placeholder until the Docker sandbox lands)."""

import typer

app = typer.Typer(no_args_is_help=True)
