"""The interactive agent in a real terminal (tmux): Ctrl-C kills a running shell command and the
session goes on; /undo takes back the last edit."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.agent.helpers import make_buggy_repo, raw_completion, write_replay

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None and not os.environ.get("CI"), reason="tmux is not installed (CI installs it)"
)


class Pane:
    def __init__(self, cwd: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = "mmx-" + uuid.uuid4().hex[:8]
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        command = f"cd {shlex.quote(cwd)} && env {exports} {shlex.join(argv)}; sleep 30"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", "160", "-y", "50", command], check=True
        )

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-S", "-200", "-t", self.name], capture_output=True, text=True
        ).stdout

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def sleeping(marker: str) -> bool:
    """The `sleep` process itself is running (anchored: the launcher's and the confinement's command
    lines also hold the marker, for a moment, before the sleep starts)."""
    return subprocess.run(["pgrep", "-f", f"^{marker}$"], capture_output=True).returncode == 0


def test_ctrl_c_kills_the_running_command_and_undo_reverts_the_edit(tmp_path, isolated_home):
    repo = make_buggy_repo(tmp_path)
    marker = f"sleep 3{uuid.uuid4().int % 1000:03d}"
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion("run the slow command", "", [("bash", {"command": f"{marker}; echo never"})]),
            raw_completion(
                "now fix the operator",
                "",
                [("edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})],
            ),
            raw_completion("done", "Edited calc.py."),
        ],
    )
    env = {k: os.environ[k] for k in ("PATH", "HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env["TERM"] = "xterm-256color"
    argv = [
        sys.executable,
        "-m",
        "agent",
        "--backend",
        "replay",
        "--replay",
        str(replay),
        "--permission-mode",
        "full-auto",
    ]
    pane = Pane(str(repo), argv, env)
    try:
        pane.wait_for("/help")
        pane.send("run something slow", "Enter")
        pane.wait_for(f"bash {marker}")
        deadline = time.monotonic() + 30
        while not sleeping(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sleeping(marker), f"no {marker!r} process after 30 s; screen:\n{pane.screen()}"
        pane.send("C-c")
        pane.wait_for("the session goes on")
        deadline = time.monotonic() + 10
        while sleeping(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not sleeping(marker), "the shell command outlived Ctrl-C"

        pane.send("now fix it", "Enter")
        pane.wait_for("Edited calc.py.")
        assert "a + b" in (repo / "calc.py").read_text()
        pane.send("/undo", "Enter")
        pane.wait_for("undone 1")
        assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
        pane.send("/exit", "Enter")
    finally:
        pane.close()


def test_a_plan_is_approved_after_feedback_and_then_carried_out(tmp_path, isolated_home):
    repo = make_buggy_repo(tmp_path)
    todo = [{"content": "change - to + in add()", "status": "pending"}]
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion("look", "", [("read_file", {"path": "calc.py"})]),
            raw_completion(
                "edit now?", "", [("edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})]
            ),
            raw_completion("plan it", "", [("todo_write", {"todos": todo})]),
            raw_completion("ready", "PLAN-ONE: flip the operator."),
            raw_completion("feedback taken", "PLAN-TWO: flip the operator, then run the test."),
            raw_completion(
                "approved: edit", "", [("edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})]
            ),
            raw_completion("done", "Edited calc.py."),
        ],
    )
    env = {k: os.environ[k] for k in ("PATH", "HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env |= {"TERM": "xterm-256color", "MMX_AGENT_INTERACTIVE_PERMISSION_MODE": "full-auto"}
    argv = [
        sys.executable,
        "-m",
        "agent",
        "--backend",
        "replay",
        "--replay",
        str(replay),
        "--permission-mode",
        "plan",
    ]
    pane = Pane(str(repo), argv, env)
    try:
        pane.wait_for("/help")
        pane.send("fix the bug", "Enter")
        pane.wait_for("PLAN-ONE")
        screen = pane.wait_for("Approve the plan?")
        assert "does not run in plan mode" in screen and "change - to + in add()" in screen
        assert "a - b" in (repo / "calc.py").read_text()
        pane.send("also say how to check it", "Enter")
        pane.wait_for("PLAN-TWO")
        pane.wait_for("Approve the plan?")
        assert "a - b" in (repo / "calc.py").read_text()
        pane.send("y", "Enter")
        pane.wait_for("plan approved; permission mode full-auto")
        pane.wait_for("Edited calc.py.")
        assert "a + b" in (repo / "calc.py").read_text()
        pane.send("/exit", "Enter")
    finally:
        pane.close()


def test_a_custom_command_runs_with_its_allowed_tools_and_help_lists_it(tmp_path, isolated_home):
    repo = make_buggy_repo(tmp_path)
    commands = repo / ".mmx-agent" / "commands"
    commands.mkdir(parents=True)
    (commands / "mark").write_text("not a command: no .md")
    (commands / "mark.md").write_text(
        "---\ndescription: Leave a mark file\nallowed-tools: bash(touch *)\n---\nTouch mark-$ARGUMENTS.txt\n"
    )
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion("touch", "", [("bash", {"command": "touch mark-one.txt"})]),
            raw_completion("done", "MARKED-ONE"),
            raw_completion("again", "", [("bash", {"command": "touch mark-two.txt"})]),
            raw_completion("done", "SECOND-DONE"),
        ],
    )
    env = {k: os.environ[k] for k in ("PATH", "HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env["TERM"] = "xterm-256color"
    argv = [sys.executable, "-m", "agent", "--backend", "replay", "--replay", str(replay)]
    pane = Pane(str(repo), argv, env)
    try:
        pane.wait_for("/help")
        pane.send("/help", "Enter")
        pane.wait_for("/mark              Leave a mark file (project)")
        pane.send("/mark one", "Enter")
        screen = pane.wait_for("MARKED-ONE")
        assert "Allow bash" not in screen  # the command's allowed tools ran without asking
        assert (repo / "mark-one.txt").exists()
        pane.send("touch another", "Enter")  # outside the command: its rules no longer apply
        pane.wait_for("Allow bash touch mark-two.txt?")
        pane.send("n", "Enter")
        pane.wait_for("SECOND-DONE")
        assert not (repo / "mark-two.txt").exists()
        pane.send("/exit", "Enter")
    finally:
        pane.close()
