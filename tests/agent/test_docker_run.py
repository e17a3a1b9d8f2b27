"""`mmx-agent -p --sandbox docker`: the tools run in a container over a copy of the workspace, and the
run's changes come back to the host as a diff."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.agent.helpers import git, raw_completion, write_replay
from tests.sandbox_docker.forged import BACKDOOR, forged_image
from tests.sandbox_kinds import base_image, docker_client

__all__ = ["base_image", "docker_client", "forged_image"]


@pytest.fixture
def docker_engine(base_image):
    """A reachable engine with the default base image built (whatever ran before this test)."""
    return base_image


def unittest_repo(root):
    repo = root / "proj"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / ".gitignore").write_text("__pycache__/\n")  # ignored files stay in the container
    (repo / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return repo


def test_fix_runs_in_a_container_and_comes_back_as_a_diff(tmp_path, docker_engine):
    repo = unittest_repo(tmp_path)
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion(
                "where am I?", "", [("bash", {"command": "pwd; cat /proc/1/cgroup >/dev/null; ls"})]
            ),
            raw_completion(
                "fix it", "", [("edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})]
            ),
            raw_completion("verify", "", [("bash", {"command": "python3 -m unittest -q"})]),
            raw_completion("done", "Fixed add."),
        ],
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "-p",
            "fix the test",
            "--sandbox",
            "docker",
            "--backend",
            "replay",
            "--replay",
            str(replay),
            # No --permission-mode: the -p default (auto-edit) runs the shell because it is confined.
            "--output-format",
            "stream-json",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    results = [e for e in events if e["type"] == "tool_result"]
    assert results[0]["output"].startswith("/workspace")  # the tools ran inside the container
    final = events[-1]
    assert final["type"] == "final_result"
    assert final["status"] == "done" and final["verified"] is True
    assert "+    return a + b" in final["diff"]
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert git(repo, "status", "--porcelain") == " M calc.py\n"
    assert any(e["type"] == "status" and "applied the sandbox's changes" in e["message"] for e in events)


def test_a_forged_git_in_the_container_changes_neither_the_host_nor_the_reported_diff(tmp_path, forged_image):
    """The issue's attack: git in the container prints a diff with a backdoor in it. The run's changes
    are still exactly what the container's files hold, and the result reports the diff applied."""
    repo = tmp_path / "proj"
    repo.mkdir()
    (repo / "app.py").write_text("print('app')\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion("look", "", [("bash", {"command": "git diff; echo 'real' > notes.txt"})]),
            raw_completion("done", "Wrote notes."),
        ],
    )
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "-p", "take notes", "--sandbox", "docker", "--backend", "replay"]
        + ["--replay", str(replay), "--output-format", "json"],
        cwd=repo,
        env={**os.environ, "MMX_AGENT_DOCKER_IMAGE": forged_image},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "done"
    assert BACKDOOR not in result["diff"] and "+real" in result["diff"]
    assert (repo / "app.py").read_text() == "print('app')\n"
    assert (repo / "notes.txt").read_text() == "real\n"
    assert git(repo, "status", "--porcelain") == "?? notes.txt\n"
