from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.tools.base import ToolContext
from tests.sandbox_kinds import base_image, docker_client, make_sandbox, sandbox_kind

__all__ = ["base_image", "docker_client", "make_sandbox", "sandbox_kind"]

ENGINES = ["rg", "python"]


def has_rg(ctx: ToolContext) -> bool:
    """Whether ripgrep is installed in this context's sandbox (on the host, or in the container)."""
    return ctx.sandbox.exec("command -v rg", timeout=30).exit_code == 0


def require_engine(ctx: ToolContext, engine: str) -> None:
    if engine == "rg" and not has_rg(ctx):
        pytest.skip("ripgrep is not installed in the sandbox")


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create `files` (relative path -> text or bytes) under `root`."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


@pytest.fixture
def make_ctx(tmp_path, make_sandbox):
    """make_ctx(files) -> ToolContext over a fresh workspace holding `files` (a sandbox of each kind)."""

    def make(files: dict[str, str | bytes], *, root_name: str = "ws") -> ToolContext:
        root = write_tree(tmp_path / root_name, files)
        return ToolContext(make_sandbox(root))

    return make


@pytest.fixture
def tricky_ctx(make_ctx, tmp_path):
    """A tree with every filter rg applies: nested ignores, hidden, binary, symlinks, encodings."""
    ctx = make_ctx(
        {
            ".gitignore": "*.log\nbuild/\n/top_only.txt\n!keep.log\n",
            ".hidden.py": "needle hidden\n",
            ".config/settings.py": "needle in hidden dir\n",
            ".ignore": "ignored_by_dot_ignore.txt\n",
            "ignored_by_dot_ignore.txt": "needle\n",
            "top_only.txt": "needle top\n",
            "sub/top_only.txt": "needle sub, not ignored: the pattern is anchored\n",
            "debug.log": "needle in log\n",
            "keep.log": "needle kept by negation\n",
            "build/out.py": "needle built\n",
            "src/build.py": "needle: a file named build is fine\n",
            "src/.gitignore": "generated_*.py\n!generated_keep.py\n",
            "src/generated_a.py": "needle generated\n",
            "src/generated_keep.py": "needle generated keep\n",
            "src/main.py": "import os\n\ndef needle():\n    return 1\n\n\nclass Needle:\n    pass\nneedle()\n",
            "src/deep/a/b/c.py": "x = 1\nNEEDLE = 2\nneedle_count = 3\n",
            "src/space name.py": "needle with space\n",
            "src/ünï.py": "needle unicode name\n",
            "a.py": "needle a\n",
            "a-b.py": "needle a-b\n",
            "a/b.py": "needle a/b\n",
            "binary.bin": b"needle\x00\x01\x02 needle\n",
            "late_binary.dat": b"needle\n" * 50 + b"\x00",
            "bom.txt": b"\xef\xbb\xbfneedle after bom\n",
            "latin1.txt": b"caf\xe9 needle\n",
            "crlf.txt": b"needle one\r\nneedle two\r\n",
            "no_newline.txt": b"first\nneedle last",
            "empty.txt": b"",
            "long.txt": "needle " + "x" * 1000 + "\n",
            "context.txt": "".join(f"line {i}{' needle' if i in (5, 7, 20) else ''}\n" for i in range(1, 31)),
        }
    )
    root = Path(ctx.root)
    (root / ".git" / "info").mkdir(parents=True)
    (root / ".git" / "info" / "exclude").write_text("excluded_by_git.txt\n")
    (root / "excluded_by_git.txt").write_text("needle excluded\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("needle outside\n")
    os.symlink(outside / "secret.txt", root / "link_to_outside.txt")
    os.symlink(outside, root / "link_dir")
    os.symlink(root / "a.py", root / "link_to_a.py")
    return ctx
