"""`mmx-agent mcp list` (the configured servers: status and tools) and `mmx-agent mcp add`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import typer

from agent.exit_codes import ExitCode

app = typer.Typer(no_args_is_help=True)
NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    workspace: Path = typer.Option(
        None, "--workspace", help="Workspace directory (default: the current one)."
    ),
) -> None:
    """Start the configured MCP servers, show their status and tools, and stop them."""
    from agent.config import ConfigError, load_settings
    from agent.mcp.servers import McpServers
    from agent.mcp.tools import server_tools
    from sandbox.base import SandboxError
    from sandbox.confinement.detect import choose

    root = Path(os.path.realpath(workspace or os.getcwd()))
    try:
        settings = load_settings(root)
        confinement = choose(settings.confinement).mode if settings.sandbox == "confined" else "none"
    except (ConfigError, SandboxError) as e:
        typer.echo(f"mmx-agent mcp: {e}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    servers = McpServers(settings.mcp_servers, str(root), confinement, settings.network or "host")
    try:
        servers.start()
        tools = server_tools(servers)
        found = [
            {
                "name": name,
                "transport": server.transport,
                "status": server.status,
                "problem": server.problem or None,
                "tools": [t.name for t in tools if t.server == name],
            }
            for name, server in servers.servers.items()
        ]
    finally:
        servers.close()
    if as_json:
        typer.echo(json.dumps({"servers": found}, ensure_ascii=False))
        return
    if not found:
        typer.echo("no MCP servers configured ([mcp_servers.NAME] in the config: docs/extensions.md)")
    for server in found:
        typer.echo(f"{server['name']} ({server['transport']}): {server['status']}")
        if server["problem"]:
            typer.echo(f"  {server['problem']}")
        for tool in server["tools"]:
            typer.echo(f"  {tool}")


@app.command("add", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def add_command(
    name: str = typer.Argument(..., help="The server's name: its tools are mcp__NAME__TOOL."),
    command: list[str] = typer.Argument(
        None, help="After --: the command that starts it, and its arguments."
    ),
    url: str = typer.Option(None, "--url", help="A streamable HTTP server's address, instead of a command."),
    scope: str = typer.Option(
        "project", "--scope", help="user (your config.toml) or project (.mmx-agent.toml)."
    ),
) -> None:
    """Write a `[mcp_servers.NAME]` entry to the user's or the project's config file."""
    from agent.config import PROJECT_FILE, find_project_file, user_config_dir

    if not NAME.match(name):
        _usage(f"a server name is letters, digits, _ and - (got {name!r})")
    if scope not in ("user", "project"):
        _usage(f"--scope is user or project (got {scope!r})")
    if bool(command) == bool(url):
        _usage("give either -- CMD ARGS (a local server) or --url URL (a remote one)")
    if scope == "user":
        path = user_config_dir() / "config.toml"
    else:
        path = find_project_file(Path.cwd()) or Path.cwd() / PROJECT_FILE
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if re.search(rf"^\s*\[mcp_servers\.\"?{re.escape(name)}\"?\]", text, re.MULTILINE):
        _usage(f"{path} already has a server named {name}")
    # JSON strings are TOML basic strings: no TOML writer is needed for these few values.
    entry = f"\n[mcp_servers.{name}]\n"
    if url:
        entry += f"url = {json.dumps(url)}\n"
    else:
        entry += f"command = {json.dumps(command[0])}\nargs = {json.dumps(command[1:])}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    separator = "" if not text or text.endswith("\n") else "\n"
    path.write_text(text + separator + entry, encoding="utf-8")
    typer.echo(f"added MCP server {name} to {path}")


def _usage(message: str) -> None:
    typer.echo(f"mmx-agent mcp: {message}", err=True)
    raise typer.Exit(ExitCode.USAGE)
