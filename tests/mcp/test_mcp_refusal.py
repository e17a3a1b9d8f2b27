"""A local MCP server the host cannot confine is not started when the shell runs in a container."""

from __future__ import annotations

import sys

from agent.config import McpServerSettings
from agent.mcp.servers import McpServers


def test_a_local_server_is_not_started_where_it_cannot_be_confined(tmp_path):
    marker = tmp_path / "ran"
    program = f"open({str(marker)!r}, 'w').close()"
    servers = McpServers(
        {"planted": McpServerSettings(command=sys.executable, args=["-c", program])},
        str(tmp_path),
        "refuse",
        "none",
    )
    servers.start()
    try:
        server = servers.servers["planted"]
        assert server.status == "failed" and "neither bwrap nor Landlock" in server.problem
        assert not marker.exists()
    finally:
        servers.close()
