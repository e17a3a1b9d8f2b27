"""`mmx-agent doctor` against the protocol servers: passes where the thinking round-trips, fails
(non-zero, saying why) where the server strips, ignores or rejects it."""

import json

import pytest
import typer
from typer.testing import CliRunner

from agent.backends.remote.cli import doctor_command
from tests.remote.conftest import KIND_OF_STYLE
from tests.remote.scripts import DOCTOR_ROUNDS
from tests.remote.servers import Fault

app = typer.Typer()
app.command()(doctor_command)


def doctor(server, *extra, kind=None):
    args = ["--backend", kind or KIND_OF_STYLE[server.style], "--base-url", server.url, *extra]
    return CliRunner().invoke(app, args)


@pytest.fixture(autouse=True)
def minimax_key(monkeypatch):
    monkeypatch.setenv("MINIMAX_API_KEY", "mm-test-key-0123456789abcdef")


@pytest.mark.parametrize(
    ("style", "mode_words", "server_side"),
    [
        ("inline", "inline <think>", "chat template renders the reasoning"),
        ("split", "reasoning_content field", "chat template renders the reasoning"),
        ("minimax", "reasoning_details", "token counts fit the reasoning being kept"),
        ("xml", "inline <think>", "chat template renders the reasoning"),
        ("bare", "reasoning without <think>", "chat template renders the reasoning"),
        ("completions", "this client renders the reasoning into the prompt", "prompt this client rendered"),
        ("anthropic", "Anthropic thinking blocks", "token counts fit the reasoning being kept"),
    ],
)
def test_doctor_passes_where_the_thinking_round_trips(serve, style, mode_words, server_side):
    server = serve(style, DOCTOR_ROUNDS)
    result = doctor(server)
    assert result.exit_code == 0, result.output
    assert mode_words in result.output
    assert "round 1's reasoning byte for byte" in result.output
    assert server_side in result.output
    assert "result: OK" in result.output
    assert len(server.generation_requests()) == 2


@pytest.mark.parametrize(
    ("style", "options", "message"),
    [
        ("inline", {"strip_reasoning": True}, "came back without any reasoning"),
        ("anthropic", {"strip_reasoning": True}, "came back without any reasoning"),
        ("split", {"reject_reasoning": True}, "rejected the request carrying round 1's reasoning"),
        ("anthropic", {"reject_reasoning": True}, "rejected the request carrying round 1's reasoning"),
        ("inline", {"ignore_reasoning": True}, "chat template drops the reasoning it is sent"),
        ("minimax", {"ignore_reasoning": True}, "seems to drop the reasoning from the prompt"),
        ("anthropic", {"ignore_reasoning": True}, "seems to drop the reasoning from the prompt"),
    ],
)
def test_doctor_fails_where_the_thinking_is_lost(serve, style, options, message):
    server = serve(style, DOCTOR_ROUNDS, **options)
    result = doctor(server)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "result: FAILED" in result.output


def test_doctor_strict_wants_server_side_evidence(serve):
    server = serve("split", DOCTOR_ROUNDS, tokenize=False, usage=False)
    assert doctor(server).exit_code == 0
    strict = doctor(server, "--strict")
    assert strict.exit_code == 1 and "nothing on the server side confirmed" in strict.output


def test_doctor_json_report(serve):
    server = serve("split", DOCTOR_ROUNDS)
    result = doctor(server, "--json")
    report = json.loads(result.output)
    assert report["ok"] is True and report["exit_code"] == 0
    assert report["reasoning_mode"] == "reasoning_content"
    assert {c["name"] for c in report["checks"]} >= {"connect", "reasoning", "sent back", "accepted"}


def test_doctor_exit_status_5_when_the_endpoint_is_unavailable(serve):
    server = serve("split", DOCTOR_ROUNDS)
    server.faults = [Fault(status=503)] * 2
    result = doctor(server, "--attempts", "2")
    assert result.exit_code == 5 and "after 2 attempts" in result.output


def test_doctor_usage_errors(serve, monkeypatch):
    result = CliRunner().invoke(app, ["--backend", "gemini"])
    assert result.exit_code == 2 and "unknown backend 'gemini'" in result.output
    monkeypatch.delenv("MINIMAX_API_KEY")
    result = CliRunner().invoke(app, ["--backend", "minimax"])
    assert result.exit_code == 5 and "MINIMAX_API_KEY is not set" in result.output
