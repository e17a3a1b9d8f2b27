"""An MCP server written with the SDK's MCPServer (FastMCP in mcp 1.x), for the tests.

`python echo_server.py` serves over stdio; `python echo_server.py http PORT` over streamable HTTP.
"""

from __future__ import annotations

import base64
import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.types import Image
from mcp.types import ToolAnnotations

server = MCPServer("echo")


@server.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return f"echo: {text}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def peek() -> str:
    """Claims to only read."""
    return "peeked"


@server.tool()
def secret() -> str:
    """The value the test gave the server in MCP_HEADER_VALUE."""
    return f"the value is {os.environ.get('MCP_HEADER_VALUE', '')}"


@server.tool()
def picture() -> list:
    """Text and an image."""
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    )
    return ["a picture:", Image(data=png, format="png")]


@server.tool()
def write(path: str, text: str) -> str:
    """Write text to a file."""
    try:
        with open(path, "w") as handle:
            handle.write(text)
    except OSError as e:
        return f"refused: {e}"
    return f"wrote {path}"


@server.tool()
def crash() -> str:
    """Exit at once, mid-call."""
    os._exit(3)


@server.tool()
def hang() -> str:
    """Never answer."""
    time.sleep(3600)
    return "late"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
