"""Our own remote backends against `mmx-agent serve`: headless runs end to end, and `mmx-agent doctor`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.serve.conftest import ANSWER_TEXT, serve


@pytest.fixture(scope="module")
def answer_server(answer_checkpoint, tmp_path_factory):
    with serve(answer_checkpoint, tmp_path_factory.mktemp("answer"), "--served-model-name", "m2-local") as s:
        yield s


@pytest.fixture(scope="module")
def add_server(add_checkpoint, tmp_path_factory):
    with serve(add_checkpoint, tmp_path_factory.mktemp("doctor"), "--served-model-name", "m2-local") as s:
        yield s


def mmx(tmp_path, *args: str) -> subprocess.CompletedProcess:
    workspace = tmp_path / "work"
    workspace.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        env=env,
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("kind", ["openai-compatible", "anthropic-compatible"])
def test_a_headless_run_against_the_server_finishes(answer_server, tmp_path, kind):
    run = mmx(
        tmp_path,
        "-p",
        "Is there anything to change?",
        "--backend",
        kind,
        "--base-url",
        answer_server.v1,
        "--model",
        "m2-local",
        "--output-format",
        "json",
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["status"] == "done"
    assert ANSWER_TEXT in result["result"]
    if kind == "openai-compatible":  # Anthropic's usage has no reasoning count
        assert result["usage"]["reasoning_tokens"] > 0


def test_a_run_whose_model_keeps_calling_a_tool_it_lacks_stops_at_the_turn_limit(add_server, tmp_path):
    run = mmx(
        tmp_path,
        "-p",
        "What is 17 + 25?",
        "--backend",
        "openai-compatible",
        "--base-url",
        add_server.v1,
        "--max-turns",
        "2",
        "--output-format",
        "json",
    )
    assert run.returncode == 3, run.stderr  # docs/cli.md: a turn limit is exit 3
    assert json.loads(run.stdout)["status"] == "limit_reached"


@pytest.mark.parametrize("kind", ["openai-compatible", "anthropic-compatible"])
def test_doctor_passes_against_the_server(add_server, tmp_path, kind):
    run = mmx(
        tmp_path, "doctor", "--backend", kind, "--base-url", add_server.v1, "--model", "m2-local", "--json"
    )
    report = json.loads(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert report["ok"]
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks["reasoning"] == checks["tool call"] == checks["sent back"] == checks["accepted"] == "pass"
    if kind == "openai-compatible":  # /tokenize shows the server's template keeps the reasoning
        assert checks["server template"] == "pass"
