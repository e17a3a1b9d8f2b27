"""`mmx-agent tool NAME --args JSON [--workspace DIR]`: run one tool, print its result as JSON.

The contract: stdout carries exactly one JSON object, {"ok": bool, "output": str, ...fields};
the exit status is 0 whenever the tool ran (even when it reported a failure) and 2 on bad
usage (unknown tool, invalid JSON, JSON nested deeper than 64 levels or holding a lone surrogate
such as `\\ud800`, arguments that are not an object, missing workspace, bad settings, a
confinement that cannot be had), with the reason on stderr. The call goes through `run_tool`, so
the firewall, the checkpoint before mutating tools, and secret redaction all apply; checkpoints
persist between invocations, so `mmx-agent tool undo` takes back an earlier
`mmx-agent tool edit_file`. Shell commands run confined, as in the agent (docs/safety.md), unless
the settings say `sandbox = "local"`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from agent.events import json_text
from agent.exit_codes import ExitCode
from agent.json_limits import UnusableJson, loads_limited
from agent.tools.base import ToolContext
from sandbox.base import SandboxError


def _usage_error(message: str) -> typer.Exit:
    typer.echo(f"mmx-agent tool: {message}", err=True)
    return typer.Exit(ExitCode.USAGE)


def tool_command(
    name: str = typer.Argument(..., help="The tool to run, e.g. read_file."),
    args: str = typer.Option("{}", "--args", help="The tool's arguments as a JSON object."),
    workspace: Path = typer.Option(
        None, "--workspace", help="Workspace directory (default: the current one)."
    ),
) -> None:
    """Run one tool and print its result as one JSON object."""
    # Imported here so that other mmx-agent commands do not pay for loading every tool.
    from agent.tools.registry import all_tools, get_tool, run_tool

    if get_tool(name) is None:
        names = ", ".join(t.name for t in all_tools())
        raise _usage_error(f"unknown tool {name!r}; available: {names}")
    try:
        parsed = loads_limited(args)
    except json.JSONDecodeError as e:
        raise _usage_error(f"--args is not valid JSON: {e}") from None
    except UnusableJson as e:
        raise _usage_error(f"--args cannot be used: {e}") from None
    if not isinstance(parsed, dict):
        raise _usage_error(f"--args must be a JSON object, got {type(parsed).__name__}")
    from agent.config import ConfigError, load_settings
    from agent.session_setup import make_host_sandbox

    root = workspace if workspace is not None else Path(os.getcwd())
    try:
        # On this host, as the agent would run it: confined unless the settings say sandbox = local.
        sandbox = make_host_sandbox(load_settings(root if root.is_dir() else Path(os.getcwd())), root)
    except (ConfigError, SandboxError) as e:
        raise _usage_error(str(e)) from None
    try:
        result = run_tool(name, parsed, ToolContext(sandbox=sandbox))
    finally:
        sandbox.close()
    typer.echo(json_text(result.to_json()))  # a lone surrogate is escaped, never a crash
