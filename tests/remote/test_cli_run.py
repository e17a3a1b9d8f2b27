"""The remote backend under the real agent loop: `mmx-agent -p ... --backend ... --base-url ...`."""

import json
import os
import subprocess
import sys

import pytest

from tests.remote.servers import Reply

SCRIPT = [
    Reply(
        "I should look at hello.txt — first the whole file. 🚀", "", [("read_file", {"path": "hello.txt"})]
    ),
    Reply(
        "第二步: now only its first line, to be sure.",
        "Checking line 1.",
        [("read_file", {"path": "hello.txt", "limit": 1})],
    ),
    Reply("It says hello; done.", "hello.txt says: hello world"),
]


@pytest.mark.parametrize(("style", "kind"), [("minimax", "minimax"), ("anthropic", "anthropic-compatible")])
def test_a_headless_run_keeps_the_thinking_on_the_wire(serve, tmp_path, style, kind):
    server = serve(style, SCRIPT)
    workspace = tmp_path / "work"
    workspace.mkdir()
    (workspace / "hello.txt").write_text("hello world\n")
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MINIMAX_API_KEY": "mm-test-key-0123456789abcdef",
    }
    args = [
        "-p",
        "What does hello.txt say?",
        "--backend",
        kind,
        "--base-url",
        server.url,
        "--output-format",
        "json",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "agent", *args, "--cwd", str(workspace)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "hello world" in json.loads(run.stdout)["result"]
    last = server.generation_requests()[-1]
    assistants = [m for m in last["messages"] if m["role"] == "assistant"]
    assert len(assistants) == 2
    for k, turn in enumerate(assistants):
        if style == "minimax":
            assert turn["reasoning_details"] == server.sent[k]
        else:
            assert turn["content"][0] == server.sent[k]
