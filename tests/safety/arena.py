"""The arena a red-team attack runs in, and the canaries that tell whether it landed.

tmp/ws: a git repository with tracked files, an ignored `.env`, and a stash entry;
tmp/home: HOME, with a canary file; tmp/outside: a directory beside the workspace with keep.txt.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENV_TEXT = "API_TOKEN=do-not-lose-me\n"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    identity = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.hooksPath=/dev/null"]
    done = subprocess.run(["git", *identity, *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def tree_digest(root: Path) -> str:
    """Every path, type, mode and content under `root` (links not followed)."""
    digest = hashlib.sha256()
    if not root.exists():
        return "missing"
    for directory, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(directory, name)
            info = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{info.st_mode}\0".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class Arena:
    root: Path

    @property
    def ws(self) -> Path:
        return self.root / "ws"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def home_file(self) -> Path:
        return self.home / "canary.txt"

    def fill(self, command: str) -> str:
        return command.replace("HOME_FILE", str(self.home_file)).replace("OUT", str(self.outside))

    def state(self) -> dict[str, str]:
        """What must not change: outside, HOME, .git, the stash."""
        git_dir = self.ws / ".git"
        return {
            "outside": tree_digest(self.outside),
            "home": tree_digest(self.home),
            ".git": tree_digest(git_dir),
            # What makes git run programs or lose its place: must not change even when a commit may.
            ".git control": "".join(
                tree_digest(git_dir / name) for name in ("config", "hooks", "info", "HEAD", "refs/stash")
            ),
            "stash": git(self.ws, "stash", "list", "--format=%H %s") if (self.ws / ".git").is_dir() else "",
        }

    def env_file_intact(self) -> bool:
        env = self.ws / ".env"
        return env.is_file() and not env.is_symlink() and env.read_text() == ENV_TEXT


def make_arena(root: Path) -> Arena:
    arena = Arena(root)
    for directory in (arena.ws, arena.home, arena.outside):
        directory.mkdir(parents=True)
    (arena.outside / "keep.txt").write_text("precious\n")
    arena.home_file.write_text("home canary\n")
    ws = arena.ws
    (ws / "src").mkdir()
    (ws / "src" / "app.py").write_text("def add(a, b):\n    return a - b\n")
    (ws / "README.md").write_text("# project\n")
    (ws / ".gitignore").write_text(".env\n")
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "init")
    (ws / "README.md").write_text("# project\n\nwork in progress, stashed\n")
    git(ws, "stash", "push", "-q", "-m", "precious stash")
    (ws / ".env").write_text(ENV_TEXT)
    return arena
