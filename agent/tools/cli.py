"""`mmx-agent tool NAME --args JSON` (placeholder until the tool suite lands)."""

import typer


def tool_command(name: str = typer.Argument(...)) -> None:
    raise typer.Exit(2)
