"""`mmx-agent tool NAME --args JSON [--workspace DIR]`, run the way a user types it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.fixture
def mmx(tmp_path, sandbox_env):
    def run(command_line: str, cwd: Path | None = None) -> tuple[int, dict | None, str]:
        env = {**os.environ, **sandbox_env, "PATH": f"{BIN}:{os.environ['PATH']}"}
        done = subprocess.run(
            command_line,
            shell=True,
            cwd=cwd or tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        payload = json.loads(done.stdout) if done.stdout.strip() else None
        return done.returncode, payload, done.stderr

    return run


def test_read_file_as_a_user_types_it(mmx, workspace):
    (workspace / "x").write_text("hello\nworld\n")
    code, payload, _ = mmx(
        f"""mmx-agent tool read_file --args '{{"path": "x"}}' --workspace {shlex.quote(str(workspace))}"""
    )
    assert code == 0
    assert payload == {
        "ok": True,
        "output": "     1\thello\n     2\tworld",
        "path": "x",
        "total_lines": 2,
        "start_line": 1,
        "end_line": 2,
    }


def test_a_tool_that_reports_failure_still_exits_zero(mmx, workspace):
    code, payload, _ = mmx(
        f'mmx-agent tool read_file --args \'{{"path": "missing"}}\' --workspace {workspace}'
    )
    assert code == 0 and payload["ok"] is False and "file not found" in payload["output"]
    code, payload, _ = mmx(f"mmx-agent tool read_file --args '{{\"offset\": 1}}' --workspace {workspace}")
    assert code == 0 and payload["ok"] is False and "'path' is a required property" in payload["output"]


def test_the_workspace_defaults_to_the_current_directory(mmx, workspace):
    (workspace / "here.txt").write_text("here\n")
    code, payload, _ = mmx('mmx-agent tool read_file --args \'{"path": "here.txt"}\'', cwd=workspace)
    assert code == 0 and payload["output"] == "     1\there"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("nope --args '{}'", "unknown tool 'nope'"),
        ("read_file --args '{not json'", "--args is not valid JSON"),
        ("read_file --args '[1, 2]'", "--args must be a JSON object"),
        ("read_file --args '{}' --workspace /definitely/not/here", "is not a directory"),
        (
            """read_file --args '{"path": "a\\ud800"}'""",
            "holds a lone surrogate (\\ud800), which is not text",
        ),
        ("""write_file --args '{"path": "x", "content": "\\udce9"}'""", "holds a lone surrogate (\\udce9)"),
        ("""read_file --args '{"\\udc80": 1}'""", "a key holds a lone surrogate"),
        (f"read_file --args '{'[' * 30_000}{']' * 30_000}'", "nests deeper than 64 levels"),
        ("""read_file --args '{"path": "x", "n": """ + "[" * 65 + "]" * 65 + "}'", "nests deeper than 64"),
    ],
)
def test_bad_usage_exits_2_with_the_reason_on_stderr(mmx, arguments, message):
    code, payload, stderr = mmx(f"mmx-agent tool {arguments}")
    assert code == 2 and payload is None and message in stderr


def test_edit_then_undo_across_invocations(mmx, workspace):
    (workspace / "f.txt").write_text("before\n")
    ws = shlex.quote(str(workspace))
    code, payload, _ = mmx(
        f'mmx-agent tool edit_file --args \'{{"path": "f.txt", "old": "before", "new": "after"}}\' --workspace {ws}'
    )
    assert code == 0 and payload["ok"] and (workspace / "f.txt").read_text() == "after\n"
    code, payload, _ = mmx(f"mmx-agent tool undo --args '{{}}' --workspace {ws}")
    assert code == 0 and payload["ok"] and payload["changes"] == ["reverted f.txt"]
    assert (workspace / "f.txt").read_text() == "before\n"


def test_the_firewall_applies_to_the_cli(mmx, workspace, home):
    (home / "keep").write_text("keep\n")
    code, payload, _ = mmx(
        f'mmx-agent tool bash --args \'{{"command": "rm -rf ~/keep"}}\' --workspace {workspace}'
    )
    assert code == 0 and payload["ok"] is False and payload["refused"] is True
    assert (home / "keep").exists()


def test_editing_a_latin1_file_prints_valid_json_and_keeps_its_bytes(mmx, workspace):
    (workspace / "legacy.py").write_bytes(b"# caf\xe9\nx = 1\n")
    code, payload, stderr = mmx(
        f"""mmx-agent tool edit_file --args '{{"path": "legacy.py", "old": "x = 1", "new": "x = 2"}}' """
        f"--workspace {workspace}"
    )
    assert code == 0, stderr
    assert payload["ok"] and "# caf\ufffd" in payload["output"]
    assert (workspace / "legacy.py").read_bytes() == b"# caf\xe9\nx = 2\n"
