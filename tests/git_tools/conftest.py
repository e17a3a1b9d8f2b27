from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.tools.base import ToolContext
from sandbox.base import Sandbox
from tests.sandbox_kinds import base_image, docker_client, make_sandbox, sandbox_kind

__all__ = ["base_image", "docker_client", "make_sandbox", "sandbox_kind"]


def isolated_env(home: Path) -> dict[str, str]:
    """No global or system git config leaks into the test (identity, hooks, aliases)."""
    return {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GIT_AUTHOR_DATE": "2024-01-02T03:04:05+00:00",
        "GIT_COMMITTER_DATE": "2024-01-02T03:04:05+00:00",
    }


class Repo:
    def __init__(self, root: Path, env: dict[str, str], sandbox: Sandbox):
        self.root = root
        self.env = env
        self.ctx = ToolContext(sandbox)

    def git(self, *args: str) -> str:
        import os

        result = subprocess.run(
            ["git", *args],
            cwd=self.root,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def commit_all(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture
def make_repo(tmp_path, make_sandbox):
    """make_repo(name) -> a Repo under tmp_path whose tools run in a sandbox of each kind."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )

    def make(name: str = "repo", *, init: bool = True) -> Repo:
        root = tmp_path / name
        root.mkdir()
        env = isolated_env(home)
        repo = Repo(root, env, make_sandbox(root, env=env))
        if init:
            repo.git("init", "-q")
        return repo

    return make


@pytest.fixture
def repo(make_repo) -> Repo:
    """A repository with two commits on main: README.md, then src/app.py."""
    repo = make_repo()
    repo.write("README.md", "# Project\n")
    repo.commit_all("Add readme")
    repo.write("src/app.py", "def main():\n    return 1\n")
    repo.commit_all("Add app")
    return repo
