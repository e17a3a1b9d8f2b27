from __future__ import annotations

import os
import shlex
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


FAKE_SIGNATURE = (
    "cat >/dev/null\n"
    'echo "[GNUPG:] SIG_CREATED D 1 8 00 1 X" >&2\n'
    "printf -- '-----BEGIN PGP SIGNATURE-----\\n\\nxx\\n-----END PGP SIGNATURE-----\\n'\n"
)


class Arena:
    """A repository, programs outside it that leave a canary when they run, and plain git."""

    def __init__(self, repo, outside: Path):
        self.repo = repo
        self.root: Path = repo.root
        self.outside = outside

    def program(self, name: str, body: str = "cat") -> str:
        """An executable that touches the canary `name` (then runs `body`); returns its path."""
        path = self.outside / f"{name}.sh"
        path.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(self.outside / name))}.ran\n{body}\n")
        path.chmod(0o755)
        return str(path)

    def ran(self) -> list[str]:
        return sorted(p.stem for p in self.outside.glob("*.ran"))

    def assert_quiet(self, after: str) -> None:
        assert self.ran() == [], f"{after} ran a planted program: {self.ran()}"

    def plain_git(self, *args: str, input: str = "", **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", *args],
            cwd=self.root,
            env={**os.environ, **self.repo.env, "GIT_TERMINAL_PROMPT": "0", **env},
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def control(self, name: str, *args: str, input: str = "", **env: str) -> None:
        """Plain git does run the program `name` planted: the trap works."""
        self.plain_git(*args, input=input, **env)
        assert (self.outside / f"{name}.ran").exists(), f"plain `git {' '.join(args)}` did not run {name}"
        (self.outside / f"{name}.ran").unlink()

    def stat_dirty(self, rel: str, text: str) -> None:
        """Same size, other content, other mtime: git must re-read the file (through its filters)."""
        path = self.root / rel
        assert len(text) == len(path.read_text())
        path.write_text(text)
        os.utime(path, (1_000_000_000, 1_000_000_000))


@pytest.fixture
def arena(repo, tmp_path) -> Arena:
    outside = tmp_path / "outside"
    outside.mkdir()
    return Arena(repo, outside)
