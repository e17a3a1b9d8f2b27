"""`mmx-agent sandbox ...` as a new user and as scripts run it: real subprocesses, exact JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXEC_KEYS = {"exit_code", "output", "timed_out", "oom_killed"}


def _mmx_agent() -> list[str]:
    script = Path(sys.executable).with_name("mmx-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent"]


@pytest.fixture
def run(tmp_path):
    """Runs the CLI from an empty directory with a fresh HOME and no project settings in the env."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]

    def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_mmx_agent(), "sandbox", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def test_base_then_exec_as_a_new_user(run, docker_client):
    built = run("base")
    assert built.returncode == 0, built.stderr
    tag = built.stdout.strip()
    assert tag.startswith("mmx-agent-base:bookworm-") and "\n" not in tag
    result = run("exec", "--", "python3", "-c", "print(1)")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "exit_code": 0,
        "output": "1\n",
        "timed_out": False,
        "oom_killed": False,
    }


def test_exec_reports_exit_codes_timeouts_and_oom_kills(run, base_image):
    failed = json.loads(
        run("exec", "--image", base_image, "--", "bash", "-c", "echo out; echo err >&2; exit 7").stdout
    )
    assert failed == {"exit_code": 7, "output": "out\nerr\n", "timed_out": False, "oom_killed": False}
    timed = run("exec", "--timeout", "1", "--", "bash", "-c", "echo partial; sleep 60; echo never")
    assert json.loads(timed.stdout) == {
        "exit_code": 124,
        "output": "partial\n",
        "timed_out": True,
        "oom_killed": False,
    }
    # The memory limit also holds the sandbox's tmpfs (/workspace and /tmp, --disk each): keep them
    # small so that 1 GiB is past the whole limit.
    hog = json.loads(
        run(
            "exec", "--memory", "128m", "--disk", "16m", "--", "python3", "-c", "hog = bytearray(1 << 30)"
        ).stdout
    )
    assert set(hog) == EXEC_KEYS
    assert hog["oom_killed"] is True and hog["exit_code"] == 137


def test_exec_with_a_missing_image_says_how_to_build_one(run, docker_client):
    result = run("exec", "--image", "mmx-agent-base:no-such-tag", "--", "true")
    assert result.returncode == 1 and result.stdout == ""
    assert "mmx-agent sandbox base" in result.stderr and "Traceback" not in result.stderr


def test_images_and_prune(run, base_image):
    listed = run("images")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["TAG", "KIND", "SIZE"]
    assert any(row.startswith(base_image) and " base " in row for row in rows)
    as_json = [json.loads(line) for line in run("images", "--json").stdout.splitlines()]
    assert any(entry["tag"] == base_image and entry["size"] > 0 for entry in as_json)
    pruned = run("prune")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("removed ")


def test_sandbox_help_lists_the_commands(run):
    result = run("--help")
    for command in ("base", "env", "images", "exec", "prune"):
        assert command in result.stdout
