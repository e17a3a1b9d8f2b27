"""Real workspaces in tmp dirs, a fake HOME and state dir, and a sandbox bound to them.

Every command the tests run sees HOME, XDG_STATE_HOME and git's identity from here, so nothing
touches the real home directory or the user's git configuration. `ctx` is made once per sandbox
kind (tests/sandbox_kinds.py): a test that takes it runs on the host and in a container.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.tools.base import ToolContext
from tests.sandbox_kinds import base_image, docker_client, make_sandbox, sandbox_kind

__all__ = ["base_image", "docker_client", "make_sandbox", "sandbox_kind"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def sandbox_env(tmp_path: Path, home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def ctx(workspace: Path, sandbox_env: dict[str, str], make_sandbox) -> ToolContext:
    return ToolContext(sandbox=make_sandbox(workspace, env=sandbox_env))


@pytest.fixture
def git(sandbox_env: dict[str, str]):
    """git(cwd, *args) -> stdout, with the tests' isolated environment."""

    def run(cwd: Path, *args: str) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env={**os.environ, **sandbox_env},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    return run


@pytest.fixture
def repo(workspace: Path, git) -> Path:
    """The workspace as a git repository with one commit."""
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "notes.txt").write_text("first line\nsecond line\n")
    (workspace / ".gitignore").write_text("*.log\nbuild/\n")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-q", "-m", "initial")
    return workspace
