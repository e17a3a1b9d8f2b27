"""What real networks do: 429 and 5xx, cut and garbled streams, silence, cancellation; and keys."""

import traceback

import pytest

from agent.backends.base import BackendError, GenerationParams
from agent.backends.events import ReasoningDelta
from agent.backends.messages import Message
from tests.remote.loop import TOOLS, run_exchange
from tests.remote.scripts import THREE_ROUNDS, expected_rounds, observed_rounds
from tests.remote.servers import Fault

STYLES = ["inline", "split", "minimax", "xml", "completions", "anthropic"]
FAULT_PLAN = [
    Fault(status=429, headers={"Retry-After": "2"}),  # round 1, attempt 1
    Fault(drop_after=9),  # attempt 2: the connection dies mid-stream
    None,  # attempt 3: fine
    Fault(status=503),  # round 2, attempt 1
    Fault(malformed_at=6),  # attempt 2: a garbled chunk
    Fault(close_after=12),  # attempt 3: the server closes cleanly, mid-answer
    None,
    Fault(error_at=8),  # round 3, attempt 1: an "overloaded" error inside the stream
    Fault(status=500),
    None,
]


@pytest.mark.parametrize("style", STYLES)
def test_every_round_survives_faults_with_nothing_lost_or_doubled(serve, backend_for, sleeps, style):
    server = serve(style, THREE_ROUNDS)
    server.faults = list(FAULT_PLAN)
    transcript = run_exchange(backend_for(server), [Message.user("Fix src/ü.py.")])

    assert observed_rounds(transcript) == expected_rounds(THREE_ROUNDS)
    # What a terminal showed, with each failed attempt's partial output dropped on RoundRetry.
    assert "".join(transcript.shown) == "".join(r.reasoning + r.content for r in THREE_ROUNDS)
    assert [r.attempt for r in transcript.retries] == [2, 3, 2, 3, 4, 2, 3]
    assert "HTTP 429" in transcript.retries[0].reason and "HTTP 500" in transcript.retries[-1].reason
    assert sleeps[0] == 2.0  # Retry-After honoured
    assert len(sleeps) == 7 and all(0 < s <= 4.0 for s in sleeps)
    assert len(server.generation_requests()) == 10 and not server.faults
    # The history sent after the faults is the clean one: each earlier round once, reasoning intact.
    last = server.generation_requests()[-1]
    if style == "completions":
        assert last["prompt"].count(THREE_ROUNDS[0].reasoning) == 1
    else:
        assert sum(m["role"] == "assistant" for m in last["messages"]) == 2


def test_a_silent_server_is_a_read_timeout_and_the_round_is_retried(serve, backend_for):
    server = serve("inline", THREE_ROUNDS)
    server.faults = [Fault(stall=True)]
    transcript = run_exchange(backend_for(server, read_timeout=1.0), [Message.user("Fix src/ü.py.")])
    assert observed_rounds(transcript) == expected_rounds(THREE_ROUNDS)
    assert "timed out" in transcript.retries[0].reason
    assert server.disconnected.wait(10)


@pytest.mark.parametrize("fault", [Fault(status=503), Fault(drop_after=5), Fault(malformed_at=3)])
def test_after_the_retry_budget_a_clear_backend_error(serve, backend_for, fault):
    server = serve("split", THREE_ROUNDS)
    server.faults = [fault] * 3
    retries = []
    with pytest.raises(BackendError, match="after 3 attempts; last error") as info:
        for event in backend_for(server, max_attempts=3).stream(
            [Message.user("hi")], TOOLS, GenerationParams()
        ):
            retries += [event] if event.type == "round_retry" else []
    assert len(server.generation_requests()) == 3 and len(retries) == 2
    assert server.url + "/chat/completions" in str(info.value)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "HTTP 400: injected HTTP 400"),
        (404, "Is http://127.0.0.1:.* the right base URL"),
        (422, "HTTP 422"),
    ],
)
def test_other_client_errors_fail_at_once(serve, backend_for, status, expected):
    server = serve("split", THREE_ROUNDS)
    server.faults = [Fault(status=status)]
    with pytest.raises(BackendError, match=expected):
        list(backend_for(server, model="m").stream([Message.user("hi")], TOOLS, GenerationParams()))
    assert len(server.generation_requests()) == 1


def test_quota_exhaustion_is_not_retried(serve, backend_for):
    server = serve("split", THREE_ROUNDS)
    body = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota"}}
    server.faults = [Fault(status=429, body=body)]
    with pytest.raises(BackendError, match="exceeded your current quota"):
        list(backend_for(server, model="m").stream([Message.user("hi")], TOOLS, GenerationParams()))
    assert len(server.generation_requests()) == 1


SECRET = "mm-secret-ABCDEFGHIJKLMNOP0123456789"


@pytest.mark.parametrize(("style", "header"), [("minimax", "authorization"), ("anthropic", "x-api-key")])
def test_the_key_is_sent_but_never_shown(serve, backend_for, monkeypatch, style, header):
    monkeypatch.setenv("MINIMAX_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    server = serve(style, THREE_ROUNDS)
    echo = {
        "error": {"message": f"Incorrect API key provided: {SECRET} (also {SECRET[:20]}...{SECRET[-6:]})"}
    }
    server.faults = [Fault(status=429, body=echo), Fault(status=401, body=echo)]
    backend = backend_for(server)
    seen = []
    with pytest.raises(BackendError) as info:
        for event in backend.stream([Message.user("hi")], TOOLS, GenerationParams()):
            seen.append(repr(event))
    received = server.received[-1].headers
    assert SECRET in received.get(header, "")
    error = info.value
    env = "MINIMAX_API_KEY" if style == "minimax" else "ANTHROPIC_API_KEY"
    assert f"refused the API key from {env}" in str(error)
    texts = [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        repr(backend),
        str(backend),
        *seen,
    ]
    for text in texts:
        assert SECRET not in text and SECRET[:20] not in text


def test_a_401_without_a_key_names_the_variable_to_set(serve, backend_for, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = serve("split", THREE_ROUNDS)
    server.faults = [Fault(status=401)]
    with pytest.raises(BackendError, match="No API key was sent: set OPENAI_API_KEY"):
        list(backend_for(server, model="m").stream([Message.user("hi")], TOOLS, GenerationParams()))


@pytest.mark.parametrize("style", ["inline", "anthropic"])
def test_closing_the_stream_closes_the_connection(serve, backend_for, style):
    server = serve(style, THREE_ROUNDS)
    server.faults = [Fault(endless=True)]
    stream = backend_for(server).stream([Message.user("hi")], TOOLS, GenerationParams())
    first = next(e for e in stream if isinstance(e, ReasoningDelta))
    assert first.text
    stream.close()  # what the loop does on Ctrl-C
    assert server.disconnected.wait(10)
