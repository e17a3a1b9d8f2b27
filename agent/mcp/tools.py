"""An MCP server's tool as one of ours: `mcp__SERVER__TOOL`, its JSON schema, and a text result.

Every MCP tool is EXECUTE: what a server does is unknown to us, and its read-only hints are its
own claim, so they do not get a call past the permission mode.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from agent.events import Status
from agent.mcp.servers import McpServers, ServerTool, ServerUnavailable
from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult

PREFIX = "mcp__"
MAX_OUTPUT = 100_000  # characters of a result the model reads


def tool_name(server: str, tool: str) -> str:
    return f"{PREFIX}{_safe(server)}__{_safe(tool)}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


class McpTool(ToolBase):
    permission = Permission.EXECUTE

    def __init__(self, servers: McpServers, server: str, tool: ServerTool):
        self.servers = servers
        self.server = server
        self.remote_name = tool.name
        self.name = tool_name(server, tool.name)
        self.description = f"[MCP server {server}] {tool.description}".strip()
        self.parameters = usable_schema(tool.input_schema)

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            result = self.servers.call(self.server, self.remote_name, args)
        except Exception as e:  # a server's trouble is the call's failure, never the run's
            return self._unavailable(e)
        text = result_text(result)
        if getattr(result, "is_error", False):
            return ToolResult(False, text or f"{self.name} reported an error", {"error": "mcp_tool_error"})
        return ToolResult(True, text)

    def _unavailable(self, error: Exception) -> ToolResult:
        state = self.servers.servers[self.server]
        kind = "timed out" if isinstance(error, TimeoutError) else "failed"
        if isinstance(error, ServerUnavailable):
            kind = "unavailable"
        detail = str(error) or type(error).__name__
        events = []
        if state.status == "failed" and not state.reported:
            state.reported = True
            events.append(Status(f"MCP server {self.server} stopped working: {state.problem}", "error"))
        return ToolResult(
            False,
            f"{self.name} {kind}: MCP server {self.server!r}: {detail}. Do without this server's tools.",
            {"error": "mcp_unavailable" if kind == "unavailable" else "mcp_failed"},
            events,
        )


def usable_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The server's schema for the arguments, or any object when it is not a valid object schema
    (the server then judges the arguments itself)."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return {"type": "object", "properties": {}}
    if schema.get("type") != "object":
        return {"type": "object", "properties": {}}
    return {"properties": {}, **schema}


def result_text(result: Any) -> str:
    """Text content as it is; images, audio and resources as a short placeholder."""
    parts = []
    for item in getattr(result, "content", None) or []:
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(str(item.text))
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} ({getattr(item, 'mime_type', '?')}) not shown]")
        elif kind == "resource":
            parts.append(f"[resource {getattr(item.resource, 'uri', '?')} not shown]")
        elif kind == "resource_link":
            parts.append(f"[resource link {getattr(item, 'uri', '?')}]")
        else:
            parts.append(f"[{kind or 'unknown'} content not shown]")
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(str(result.structured_content))
    text = "\n".join(parts)
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT] + f"\n[output truncated: {len(text) - MAX_OUTPUT} characters]"
    return text


def server_tools(servers: McpServers) -> list[McpTool]:
    return [
        McpTool(servers, name, tool)
        for name, server in servers.servers.items()
        if server.status == "running"
        for tool in server.tools
    ]


def startup_problems(servers: McpServers) -> list[Status]:
    """One status per server that did not start (each reported once)."""
    found = []
    for name, server in servers.servers.items():
        if server.status == "failed" and not server.reported:
            server.reported = True
            found.append(Status(f"MCP server {name} did not start: {server.problem}", "error"))
    return found
