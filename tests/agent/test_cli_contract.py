"""`mmx-agent -p` as CI runs it: a real subprocess, stdout/stderr/exit-code contract, sessions, config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.agent.helpers import FIX_SESSION, make_buggy_repo, raw_completion, write_replay

DOCS = Path(__file__).resolve().parents[2] / "docs"


def mmx(*args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def repo(tmp_path):
    return make_buggy_repo(tmp_path)


def replay(tmp_path, completions) -> str:
    return str(write_replay(tmp_path / "replay.jsonl", completions))


def test_json_result_of_a_fix_task(tmp_path, repo):
    proc = mmx(
        "-p",
        "fix the failing test",
        "--backend",
        "replay",
        "--replay",
        replay(tmp_path, FIX_SESSION),
        "--output-format",
        "json",
        "--permission-mode",
        "full-auto",
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    jsonschema.validate(result, json.loads((DOCS / "result-schema.json").read_text()))
    assert result["status"] == "done" and result["verified"] is True and result["turns"] == 4
    assert "+    return a + b" in result["diff"]
    assert (
        subprocess.run(
            ["git", "apply", "--check", "-R"], input=result["diff"], cwd=repo, text=True
        ).returncode
        == 0
    )
    assert "> bash python -m pytest -q" in proc.stderr  # progress goes to stderr


def test_text_output_is_only_the_final_message(tmp_path, repo):
    proc = mmx(
        "-p",
        "fix it",
        "--backend",
        "replay",
        "--replay",
        replay(tmp_path, FIX_SESSION),
        "--permission-mode",
        "full-auto",
        cwd=repo,
    )
    assert proc.returncode == 0
    assert proc.stdout == "Fixed `add` in calc.py: it subtracted. The tests pass.\n"


def test_task_on_stdin(tmp_path, repo):
    proc = mmx(
        "--backend",
        "replay",
        "--replay",
        replay(tmp_path, [raw_completion("hm", "Hello.")]),
        cwd=repo,
        stdin="say hello",
    )
    assert proc.returncode == 0 and proc.stdout == "Hello.\n"


def test_stream_json_validates_against_the_documented_schema(tmp_path, repo):
    proc = mmx(
        "-p",
        "fix",
        "--backend",
        "replay",
        "--replay",
        replay(tmp_path, FIX_SESSION),
        "--output-format",
        "stream-json",
        "--permission-mode",
        "full-auto",
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((DOCS / "event-schema.json").read_text())
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    for event in events:
        jsonschema.validate(event, schema)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session_start" and kinds[1] == "user_message" and kinds[-1] == "final_result"
    for kind in ("reasoning_delta", "text_delta", "tool_call", "tool_result", "usage", "assistant_message"):
        assert kind in kinds
    reasoning = "".join(e["text"] for e in events if e["type"] == "reasoning_delta")
    assert "I should read calc.py first." in reasoning


@pytest.mark.parametrize(
    ("args", "completions", "code"),
    [
        (["--max-turns", "1"], FIX_SESSION, 3),
        (
            ["--permission-mode", "full-auto"],
            [raw_completion("x", "", [("bash", {"command": "rm -rf /"})])] * 3,
            4,
        ),
        ([], FIX_SESSION[:1], 5),
    ],
)
def test_exit_codes(tmp_path, repo, args, completions, code):
    proc = mmx(
        "-p",
        "task",
        "--backend",
        "replay",
        "--replay",
        replay(tmp_path, completions),
        *args,
        "--output-format",
        "json",
        cwd=repo,
    )
    assert proc.returncode == code, proc.stderr
    assert json.loads(proc.stdout)["status"] in ("limit_reached", "blocked", "backend_unavailable")


def test_bad_usage_and_unreachable_backends(tmp_path, repo):
    assert mmx("-p", "x", "--output-format", "xml", cwd=repo).returncode == 2
    assert mmx("-p", "x", "--permission-mode", "yolo", cwd=repo).returncode == 2
    assert mmx("-p", "x", "--allow", "bash(", cwd=repo).returncode == 2
    assert mmx("-p", "x", "--resume", "no-such-session", cwd=repo).returncode == 2
    proc = mmx("-p", "x", "--backend", "replay", "--replay", str(tmp_path / "missing.jsonl"), cwd=repo)
    assert proc.returncode == 5 and "cannot read replay file" in proc.stderr


def test_sessions_list_show_resume_and_continue(tmp_path, repo):
    first = mmx(
        "-p",
        "what does add do?",
        "--backend",
        "replay",
        "--output-format",
        "json",
        "--replay",
        replay(
            tmp_path,
            [
                raw_completion("look", "", [("read_file", {"path": "calc.py"})]),
                raw_completion("seen", "It subtracts."),
            ],
        ),
        cwd=repo,
    )
    session_id = json.loads(first.stdout)["session_id"]
    listed = mmx("sessions", "list", "--json", cwd=repo)
    info = json.loads(listed.stdout.splitlines()[0])
    assert info["session_id"] == session_id and info["status"] == "done" and info["cwd"] == str(repo)
    shown = [json.loads(line) for line in mmx("sessions", "show", session_id, cwd=repo).stdout.splitlines()]
    assert shown[0]["type"] == "session_start" and shown[-1]["type"] == "final_result"
    again = write_replay(tmp_path / "again.jsonl", [raw_completion("recall", "Still subtraction.")])
    for flag in (["--resume", session_id], ["--continue"]):
        proc = mmx(
            "-p",
            "sure?",
            "--backend",
            "replay",
            "--replay",
            str(again),
            "--output-format",
            "json",
            *flag,
            cwd=repo,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["session_id"] == session_id
    texts = [
        json.loads(line).get("text")
        for line in mmx("sessions", "show", session_id, cwd=repo).stdout.splitlines()
    ]
    assert texts.count("sure?") == 2


def test_config_precedence_user_project_env_flags(tmp_path, repo, isolated_home):
    config_dir = isolated_home / "config" / "mmx-agent"
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text('backend = "replay"\nmax_turns = 1\n')
    args = ["-p", "fix", "--replay", replay(tmp_path, FIX_SESSION), "--permission-mode", "full-auto"]
    assert mmx(*args, cwd=repo).returncode == 3  # user file: 1 turn
    (repo / ".mmx-agent.toml").write_text("max_turns = 10\n")
    assert mmx(*args, cwd=repo).returncode == 0  # the project file wins over the user's
    assert mmx(*args, cwd=repo, env={"MMX_AGENT_MAX_TURNS": "2"}).returncode == 3  # environment over project
    assert (
        mmx(*args, "--max-turns", "9", cwd=repo, env={"MMX_AGENT_MAX_TURNS": "2"}).returncode == 0
    )  # flags win
    (repo / ".mmx-agent.toml").write_text("max_turn = 10\n")
    proc = mmx(*args, cwd=repo)
    assert proc.returncode == 2 and ".mmx-agent.toml" in proc.stderr and "max_turn" in proc.stderr


def test_sigterm_ends_the_run_like_ctrl_c_and_keeps_the_session(tmp_path, repo):
    import signal
    import time
    import uuid

    marker = f"sleep 4{uuid.uuid4().int % 1000:03d}"
    path = replay(tmp_path, [raw_completion("slow", "", [("bash", {"command": f"{marker}; echo never"})])])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "-p",
            "slow",
            "--backend",
            "replay",
            "--replay",
            path,
            "--permission-mode",
            "full-auto",
            "--output-format",
            "json",
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    result = json.loads(out)
    assert result["status"] == "cancelled"
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode != 0
    events = [
        json.loads(line)
        for line in mmx("sessions", "show", result["session_id"], cwd=repo).stdout.splitlines()
    ]
    assert events[-1]["type"] == "final_result" and events[-1]["status"] == "cancelled"
    assert any(e["type"] == "tool_result" and "Cancelled" in e["output"] for e in events)


def test_unknown_backend_is_bad_usage_and_a_missing_key_is_backend_unavailable(tmp_path, repo):
    proc = mmx("-p", "x", "--backend", "nonsense", cwd=repo)
    assert proc.returncode == 2 and "nonsense" in proc.stderr
    env = {k: v for k, v in os.environ.items() if k != "MINIMAX_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "-p", "x", "--backend", "minimax"],
        cwd=repo,
        text=True,
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 5 and "MINIMAX_API_KEY" in proc.stderr
