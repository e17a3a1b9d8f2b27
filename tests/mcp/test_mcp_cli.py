"""`mmx-agent mcp add` and `mmx-agent mcp list`."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

from tests.agent.helpers import run_cli

ECHO = str(Path(__file__).resolve().parent / "echo_server.py")


def test_add_then_list(tmp_path, isolated_home):
    project = tmp_path / "proj"
    project.mkdir()
    added = run_cli("mcp", "add", "echo", "--", sys.executable, ECHO, cwd=project)
    assert added.returncode == 0, added.stderr
    run_cli("mcp", "add", "gone", "--scope", "user", "--", str(tmp_path / "missing"), cwd=project)
    again = run_cli("mcp", "add", "echo", "--", "true", cwd=project)
    assert again.returncode == 2 and "already has" in again.stderr
    config = tomllib.loads((project / ".mmx-agent.toml").read_text())
    assert config["mcp_servers"]["echo"] == {"command": sys.executable, "args": [ECHO]}
    user = tomllib.loads((isolated_home / "config" / "mmx-agent" / "config.toml").read_text())
    assert user["mcp_servers"]["gone"]["command"] == str(tmp_path / "missing")

    listed = run_cli("mcp", "list", "--json", cwd=project)
    assert listed.returncode == 0, listed.stderr
    servers = {s["name"]: s for s in json.loads(listed.stdout)["servers"]}
    assert servers["echo"]["status"] == "running" and "mcp__echo__echo" in servers["echo"]["tools"]
    assert servers["gone"]["status"] == "failed" and servers["gone"]["tools"] == []
    text = run_cli("mcp", "list", cwd=project)
    assert "echo (stdio): running" in text.stdout and "  mcp__echo__hang" in text.stdout


def test_servers_merge_by_name_across_config_files(tmp_path, isolated_home):
    from agent.config import ConfigError, load_settings

    user = isolated_home / "config" / "mmx-agent"
    user.mkdir(parents=True)
    (user / "config.toml").write_text('[mcp_servers.a]\ncommand = "a"\n[mcp_servers.b]\ncommand = "b"\n')
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".mmx-agent.toml").write_text('[mcp_servers.b]\nurl = "http://127.0.0.1:1/mcp"\n')
    servers = load_settings(project).mcp_servers
    assert servers["a"].command == "a" and servers["b"].url == "http://127.0.0.1:1/mcp"
    (project / ".mmx-agent.toml").write_text('[mcp_servers.c]\ncommand = "c"\nurl = "http://x"\n')
    with pytest.raises(ConfigError, match="either command"):
        load_settings(project)
