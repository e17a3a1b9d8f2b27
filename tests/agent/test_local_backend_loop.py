"""`mmx-agent -p --backend local --model DIR`: the agent loop driven by the M2 network running here.

The checkpoint is crafted so greedy decoding always writes the same bash call (tests/local/scripted.py):
the loop runs it, feeds the result back, sees the model repeat itself and stops with its own status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.agent.helpers import make_buggy_repo
from tests.local.scripted import build_scripted_checkpoint


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_local_backend_drives_the_loop(tmp_path, compiled):
    """The compiled variant decodes through the ahead-of-time compiled step (`local_compile`)."""
    checkpoint = build_scripted_checkpoint(tmp_path / "ckpt", max_positions=32768)
    repo = make_buggy_repo(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "-p",
            "what is here?",
            "--backend",
            "local",
            "--model",
            str(checkpoint),
            "--permission-mode",
            "full-auto",
            "--output-format",
            "stream-json",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "MMX_AGENT_TEMPERATURE": "0.01",
            "MMX_AGENT_TOP_K": "1",
            "MMX_AGENT_LOCAL_COMPILE": json.dumps(compiled),
        },
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events and events[-1]["type"] == "final_result", proc.stderr
    calls = [e for e in events if e["type"] == "tool_call"]
    assert calls[0]["name"] == "bash" and calls[0]["arguments"] == {"command": "ls -la"}
    results = [e for e in events if e["type"] == "tool_result"]
    assert "calc.py" in results[0]["output"]  # the call really ran in the workspace
    reasoning = "".join(e["text"] for e in events if e["type"] == "reasoning_delta")
    assert "Let me look." in reasoning
    usage = [e for e in events if e["type"] == "usage"]
    assert usage[1]["cached_tokens"] > 0  # the second round reused the first round's KV cache
    assert events[-1]["status"] == "loop_detected" and proc.returncode == 3


def test_local_compile_setting_reaches_the_generator(tmp_path):
    from agent.config import load_settings
    from agent.session_setup import make_backend

    checkpoint = build_scripted_checkpoint(tmp_path / "ckpt", max_positions=32768)
    environ = {"MMX_AGENT_LOCAL_COMPILE": "true"}
    settings = load_settings(tmp_path, {"backend": "local", "model": str(checkpoint)}, environ=environ)
    assert make_backend(settings).lm.generator.compile is True
    settings = load_settings(tmp_path, {"backend": "local", "model": str(checkpoint)}, environ={})
    assert make_backend(settings).lm.generator.compile is False


def test_a_new_users_tiny_checkpoint_runs_the_agent_to_its_turn_limit(tmp_path):
    """`model init ./tiny --preset tiny`, then `-p ... --backend local --model ./tiny`: the default
    context holds the system prompt and tools, each round reports progress, and the result is valid JSON."""
    repo = make_buggy_repo(tmp_path)
    init = subprocess.run(
        [sys.executable, "-m", "agent", "model", "init", "./tiny", "--preset", "tiny"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "-p", "fix the failing test", "--backend", "local"]
        + ["--model", str(tmp_path / "tiny"), "--max-turns", "2", "--output-format", "json"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MMX_AGENT_MAX_OUTPUT_TOKENS": "48"},  # the per-round cap, from the config layer
    )
    result = json.loads(proc.stdout)
    assert result["status"] == "limit_reached" and result["turns"] == 2 and proc.returncode == 3, proc.stderr
    assert result["usage"]["output_tokens"] <= 2 * 48
    assert "[local] round 1: " in proc.stderr and "[local] round 2: " in proc.stderr
    assert "tok/s" in proc.stderr and "Traceback" not in proc.stderr
