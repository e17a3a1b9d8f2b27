"""A stdio MCP server written by hand that answers the handshake properly and tool calls with
garbage: a line that is not JSON, then a result whose content is not a list."""

from __future__ import annotations

import json
import sys

TOOL = {"name": "broken", "description": "Answers with malformed data.", "inputSchema": {"type": "object"}}
# A schema no validator accepts: the tool still appears, taking any object.
ODD = {
    "name": "odd",
    "description": "A bad schema.",
    "inputSchema": {"type": "object", "properties": {"x": {"type": 5}}},
}


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    request = json.loads(line)
    method, ident = request.get("method"), request.get("id")
    if ident is None:
        continue  # notifications
    if method == "initialize":
        result = {
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "malformed", "version": "0"},
        }
    elif method == "tools/list":
        result = {"tools": [TOOL, ODD]}
    elif method == "tools/call" and request["params"]["name"] == "odd":
        result = {"content": [{"type": "text", "text": "odd answered"}]}
    elif method == "tools/call":
        sys.stdout.write("{this is not json\n")
        result = {"content": "not a list", "isError": "maybe"}
    else:
        result = {}
    send({"jsonrpc": "2.0", "id": ident, "result": result})
