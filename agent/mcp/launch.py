"""How a configured server is reached: the stdio command (confined like the shell) or the HTTP
headers (with `${VAR}` taken from the environment)."""

from __future__ import annotations

import os
import re
import shutil
import sys

from agent.config import McpServerSettings
from sandbox.confinement.bwrap import bwrap_arguments

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_headers(headers: dict[str, str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """Header values with `${VAR}` replaced; a variable that is not set is an error (KeyError)."""
    environ = dict(os.environ if environ is None else environ)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise KeyError(f"environment variable {name} (named in a header) is not set")
        return environ[name]

    return {key: VARIABLE.sub(value, text) for key, text in headers.items()}


def header_secrets(settings: dict[str, McpServerSettings]) -> dict[str, str]:
    """The environment's values that headers name, by variable name, for the redactor: never shown."""
    return {
        name: os.environ[name]
        for server in settings.values()
        for text in server.headers.values()
        for name in VARIABLE.findall(text)
        if name in os.environ
    }


def stdio_command(
    server: McpServerSettings, workspace: str, confinement: str, network: str, tmpdir: str
) -> tuple[str, list[str], str]:
    """(command, args, cwd): confined, the server may write only in the workspace and a private temp
    directory, as the shell's commands (bwrap: a private /tmp; Landlock: `tmpdir`)."""
    assert server.command is not None
    if confinement == "refuse":
        raise RuntimeError(
            "not started: with --sandbox docker, a local MCP server runs on this host, and this host has "
            "neither bwrap nor Landlock to confine it"
        )
    cwd = os.path.join(workspace, server.cwd) if server.cwd else workspace
    executable = shutil.which(server.command) or server.command
    if confinement == "landlock":
        launcher = [sys.executable, "-I", "-m", "sandbox.confinement.landlock_exec"]
        return launcher[0], [*launcher[1:], workspace, tmpdir, network, "--", executable, *server.args], cwd
    if confinement != "bwrap":
        return server.command, list(server.args), cwd
    # What bwrap's private /tmp would hide but the server needs: its program, its interpreter, and
    # paths named in its arguments (a script under /tmp).
    keep = [sys.prefix, os.path.dirname(os.path.realpath(executable))]
    keep += [arg for arg in server.args if os.path.isabs(arg) and os.path.exists(arg)]
    env = {**os.environ, **server.env}
    wrapper = bwrap_arguments(workspace, env=env, network=network, keep=keep)
    chdir = wrapper.index("--chdir")
    wrapper[chdir + 1] = cwd
    return wrapper[0], [*wrapper[1:], "--", executable, *server.args], cwd
