"""Fixtures: scripted protocol servers on 127.0.0.1 and backends with instant, recorded backoff."""

from __future__ import annotations

import pytest

from agent.backends.remote.presets import make_backend
from agent.backends.remote.retry import RetryPolicy
from tests.remote.servers import ScriptedServer

# Which backend kind talks to which server style.
KIND_OF_STYLE = {
    "inline": "openai-compatible",
    "split": "openai-compatible",
    "xml": "openai-compatible",
    "bare": "openai-compatible",
    "minimax": "minimax",
    "completions": "completions",
    "anthropic": "anthropic-compatible",
}


@pytest.fixture
def serve():
    servers: list[ScriptedServer] = []

    def start(style, script, **options) -> ScriptedServer:
        server = ScriptedServer(style, script, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    assert [e for s in servers for e in s.server_errors] == []


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def backend_for(sleeps, monkeypatch):
    """A backend of the right kind for a server, whose backoff records its delays instead of sleeping."""
    monkeypatch.setenv("MINIMAX_API_KEY", "mm-test-key-0123456789abcdef")
    made = []

    def make(
        server: ScriptedServer,
        kind: str | None = None,
        max_attempts: int = 8,
        model: str | None = None,
        **options,
    ):
        retry = RetryPolicy(max_attempts=max_attempts, base_delay=0.5, max_delay=4.0, sleep=sleeps.append)
        options.setdefault("read_timeout", 10.0)
        backend = make_backend(
            kind or KIND_OF_STYLE[server.style], server.url, model, None, retry=retry, **options
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
