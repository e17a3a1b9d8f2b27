"""The session's MCP servers: started together when the session starts, stopped with it.

The SDK is async; the servers live on one event loop in a background thread that the session
owns, and the tools (which run on the loop's threads) wait on it with a timeout. Nothing a server
does (never starting, hanging, dying, sending garbage) raises into the agent: it becomes a status
reported once and failed tool results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from agent.config import McpServerSettings
from agent.mcp.launch import expand_headers, stdio_command

STOP_SECONDS = 10.0
STDERR_KEPT = 4096  # bytes of a server's stderr read back when it fails


class ServerUnavailable(Exception):
    """The server is not running (it failed to start, or died): its tools cannot be called."""


@dataclass
class ServerTool:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass
class Server:
    name: str
    settings: McpServerSettings
    status: str = "starting"  # starting | running | failed | stopped
    problem: str = ""  # why it failed
    tools: list[ServerTool] = field(default_factory=list)
    reported: bool = False  # its failure has been told to the session once
    session: Any = None  # the SDK's ClientSession while running
    stop: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None

    @property
    def transport(self) -> str:
        return "stdio" if self.settings.command else "http"

    def fail(self, problem: str) -> None:
        if self.status in ("starting", "running"):
            self.status, self.problem = "failed", problem


class McpServers:
    """The configured servers; `start()` returns once each is running or has failed."""

    def __init__(
        self,
        settings: dict[str, McpServerSettings],
        workspace: str,
        confinement: str = "none",
        network: str = "host",
    ):
        self.servers = {name: Server(name, server) for name, server in settings.items()}
        self.workspace = workspace
        self.confinement = confinement
        self.network = network
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-servers", daemon=True)
        self._thread.start()
        self._closed = False
        self._tmpdir: str | None = None  # Landlock: the servers' private temp directory

    # -- the session's side (any thread) ----------------------------------------------------------

    def start(self) -> None:
        if not self.servers:
            return
        waits = [self._submit(self._start_one(s)) for s in self.servers.values()]
        for server, wait in zip(self.servers.values(), waits, strict=True):
            try:
                wait.result(timeout=server.settings.startup_timeout + STOP_SECONDS)
            except Exception as e:  # the timeout inside _start_one should have ended it first
                server.fail(f"did not start: {type(e).__name__}: {e}")

    def call(self, server_name: str, tool: str, args: dict[str, Any]) -> Any:
        """The SDK's CallToolResult; ServerUnavailable, TimeoutError, or the SDK's error otherwise."""
        server = self.servers[server_name]
        if server.status != "running" or server.session is None:
            raise ServerUnavailable(server.problem or f"the server is {server.status}")
        timeout = server.settings.tool_timeout
        future = self._submit(server.session.call_tool(tool, args, read_timeout_seconds=timeout))
        try:
            return future.result(timeout=timeout + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        except Exception as e:
            if "connection closed" in str(e).lower() or (server.task is not None and server.task.done()):
                server.fail(f"the connection ended ({_describe(e)})")
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._submit(self._stop_all()).result(timeout=STOP_SECONDS * 2)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=STOP_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _submit(self, coroutine: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    # -- the event loop's side ------------------------------------------------------------------

    async def _start_one(self, server: Server) -> None:
        ready = asyncio.Event()
        server.stop = asyncio.Event()
        server.task = asyncio.create_task(self._serve(server, ready))
        try:
            await asyncio.wait_for(ready.wait(), server.settings.startup_timeout)
        except TimeoutError:
            server.fail(f"did not start within {server.settings.startup_timeout:g} s")
            server.task.cancel()
            with contextlib.suppress(BaseException):
                await server.task

    async def _serve(self, server: Server, ready: asyncio.Event) -> None:
        """Holds the server's connection open (the SDK's contexts must end in the task that began them)
        until the session stops it or the connection ends."""
        from mcp import ClientSession

        # A server's logging is not ours to show, but its last words say why it failed.
        errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        try:
            async with contextlib.AsyncExitStack() as stack:
                streams = await stack.enter_async_context(self._transport(server, errlog))
                session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
                await session.initialize()
                listed = await session.list_tools()
                server.tools = [
                    ServerTool(t.name, t.description or t.title or "", dict(t.input_schema or {}))
                    for t in listed.tools
                ]
                server.session, server.status = session, "running"
                ready.set()
                assert server.stop is not None
                await server.stop.wait()
                server.status = "stopped"
        except asyncio.CancelledError:
            server.fail("cancelled")
            raise
        except BaseException as e:  # anything the server does ends here, never in the agent
            server.fail(_describe(e) + _last_words(errlog))
        finally:
            errlog.close()
            server.session = None
            if server.status == "running":
                server.fail("the connection ended")
            ready.set()

    def _transport(self, server: Server, errlog: Any) -> Any:
        settings = server.settings
        if settings.command:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            if self.confinement == "landlock" and self._tmpdir is None:
                self._tmpdir = tempfile.mkdtemp(prefix="mmx-agent-mcp.")
            command, args, cwd = stdio_command(
                settings, self.workspace, self.confinement, self.network, self._tmpdir or ""
            )
            return stdio_client(
                StdioServerParameters(command=command, args=args, env=settings.env, cwd=cwd), errlog
            )
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        assert settings.url is not None
        client = create_mcp_http_client(headers=expand_headers(settings.headers))
        return _with_client(client, streamable_http_client(settings.url, http_client=client))

    async def _stop_all(self) -> None:
        for server in self.servers.values():
            if server.stop is not None:
                server.stop.set()
        tasks = [s.task for s in self.servers.values() if s.task is not None and not s.task.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_SECONDS)
            for task in late:
                task.cancel()
        for server in self.servers.values():
            if server.status == "running":
                server.status = "stopped"


@contextlib.asynccontextmanager
async def _with_client(client: Any, transport: Any) -> Any:
    async with client, transport as streams:
        yield streams


def _last_words(errlog: Any) -> str:
    """The last line the server wrote on stderr, if any, to add to why it failed."""
    try:
        errlog.seek(max(0, errlog.seek(0, os.SEEK_END) - STDERR_KEPT))
        lines = [line.strip() for line in errlog.read().splitlines() if line.strip()]
    except (OSError, ValueError):
        return ""
    return f" (its stderr: {lines[-1][:300]})" if lines else ""


def _describe(error: BaseException) -> str:
    """One line for an error, looking inside the exception groups anyio raises."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
