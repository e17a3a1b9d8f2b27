"""The host side of copy mode's diff: snapshots and diffs by the host's git in a private store, and the
hardened `git apply`, on real directories and a real git, with canaries for anything git might run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sandbox.base import SandboxError
from sandbox.tree_store import TreeStore
from sandbox.workspace import apply_diff_to_host


@pytest.fixture
def store(tmp_path):
    made = TreeStore(tmp_path / "store")
    yield made
    made.remove()


def _tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """A directory with `files`; a str value starting with '->' is a symbolic link to the rest."""
    root.mkdir(parents=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def _copy(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, symlinks=True)
    return dest


@pytest.fixture
def hostile_git_config(tmp_path, monkeypatch):
    """Config in every place a careless git would read, each running a program that leaves a canary."""
    canary = tmp_path / "canary"
    evil = (
        "[core]\n"
        f"\tfsmonitor = touch {canary}-fsmonitor\n"
        f"\thooksPath = {tmp_path}/hooks\n"
        "\tautocrlf = true\n"
        f'[filter "evil"]\n\tclean = touch {canary}-clean\n\tsmudge = touch {canary}-smudge\n'
        f'[diff "evil"]\n\ttextconv = touch {canary}-textconv\n'
        f"[diff]\n\texternal = touch {canary}-external\n"
    )
    (tmp_path / "evil.gitconfig").write_text(evil)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".gitconfig").write_text(evil)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "evil.gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.fsmonitor")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"touch {canary}-env")
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", f"touch {canary}-GIT_EXTERNAL_DIFF")
    return tmp_path


def _canaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("canary"))


def test_edits_new_deleted_binary_mode_and_symlinks(store, tmp_path):
    base = _tree(
        tmp_path / "base", {"a.txt": "a\n", "gone.txt": "x\n", "tool.sh": "#!/bin/sh\n", "old.bin": b"\0\1"}
    )
    now = _copy(base, tmp_path / "now")
    (now / "a.txt").write_text("a\nb\n")
    (now / "gone.txt").unlink()
    (now / "tool.sh").chmod(0o755)
    (now / "old.bin").write_bytes(b"\0\2\377")
    (now / "passwd").symlink_to("/etc/passwd")
    (now / "sub").mkdir()
    (now / "sub" / "new.txt").write_text("new\n")
    diff = store.diff(store.snapshot(base), store.snapshot(now, rules_from=store.snapshot(base)))
    assert "+b\n" in diff
    assert "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644" in diff
    assert "diff --git a/tool.sh b/tool.sh\nold mode 100644\nnew mode 100755" in diff
    assert "GIT binary patch" in diff
    assert "diff --git a/passwd b/passwd\nnew file mode 120000" in diff and "+/etc/passwd" in diff
    assert "diff --git a/sub/new.txt b/sub/new.txt\nnew file mode 100644" in diff


def test_ignore_rules_come_from_the_baseline_not_from_the_new_tree(store, tmp_path):
    base = _tree(
        tmp_path / "base",
        {
            ".gitignore": "*.log\nbuild/\n",
            "src/.gitignore": "*.tmp\n",
            "src/main.py": "x\n",
            "kept.log": "old\n",
        },
    )
    baseline = store.snapshot(base)
    assert "kept.log" not in store.diff("4b825dc642cb6eb9a060e54bf8d69288fbee4904", baseline)
    now = _copy(base, tmp_path / "now")
    # The new tree un-ignores *.log and ignores *.py: rules a model wrote, not rules to follow.
    (now / ".gitignore").write_text("*.py\n")
    (now / "src" / ".gitignore").unlink()
    (now / "debug.log").write_text("noise\n")
    (now / "build").mkdir()
    (now / "build" / "out.o").write_text("obj\n")
    (now / "src" / "scratch.tmp").write_text("tmp\n")
    (now / "src" / "new.py").write_text("new\n")
    (now / "src" / "main.py").write_text("changed\n")
    diff = store.diff(baseline, store.snapshot(now, rules_from=baseline))
    assert "debug.log" not in diff and "build/out.o" not in diff and "scratch.tmp" not in diff
    assert "diff --git a/src/new.py b/src/new.py" in diff and "+changed" in diff
    # Changes to the rules files are content like any other.
    assert "diff --git a/.gitignore b/.gitignore" in diff and "+*.py" in diff
    assert "diff --git a/src/.gitignore b/src/.gitignore\ndeleted file mode" in diff


def test_odd_names_and_git_attributes_do_not_change_the_bytes(store, tmp_path, hostile_git_config):
    base = _tree(tmp_path / "base", {"crlf.txt": b"one\r\ntwo\r\n", ":!magic": "m\n", "-dash": "d\n"})
    baseline = store.snapshot(base)
    now = _copy(base, tmp_path / "now")
    (now / ".gitattributes").write_text("* text eol=lf filter=evil diff=evil ident\n")
    (now / "crlf.txt").write_bytes(b"one\r\ntwo\r\nthree $Id$\r\n")
    (now / ":!magic").write_text("changed\n")
    diff = store.diff(baseline, store.snapshot(now, rules_from=baseline))
    assert "+three $Id$\r\n" in diff  # neither normalised nor expanded
    assert "+changed" in diff
    assert _canaries(hostile_git_config) == []


def test_apply_runs_nothing_from_any_config_and_writes_the_bytes(tmp_path, hostile_git_config):
    workspace = _tree(tmp_path / "ws", {"crlf.txt": b"one\r\ntwo\r\n", "keep.txt": "k\n"})
    subprocess.run(["git", "init", "-q", str(workspace)], check=True, env={"PATH": os.environ["PATH"]})
    (workspace / ".git" / "config").write_text((hostile_git_config / "evil.gitconfig").read_text())
    git_dir_before = {p: p.read_bytes() for p in (workspace / ".git").rglob("*") if p.is_file()}
    store = TreeStore(tmp_path / "store")
    baseline = store.snapshot(workspace)
    now = _copy(workspace, tmp_path / "now")
    shutil.rmtree(now / ".git")
    (now / ".gitattributes").write_text("* text eol=lf filter=evil\n")
    (now / "crlf.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    (now / "link").symlink_to(str(hostile_git_config / "outside"))
    apply_diff_to_host(workspace, store.diff(baseline, store.snapshot(now, rules_from=baseline)))
    assert (workspace / "crlf.txt").read_bytes() == b"one\r\ntwo\r\nthree\r\n"
    assert os.readlink(workspace / "link") == str(hostile_git_config / "outside")
    assert not (hostile_git_config / "outside").exists()
    assert _canaries(hostile_git_config) == []
    assert {p: p.read_bytes() for p in (workspace / ".git").rglob("*") if p.is_file()} == git_dir_before


@pytest.mark.parametrize(
    "path",
    ["../escape.txt", ".git/config", "link/through.txt", "/tmp/absolute.txt"],
)
def test_apply_refuses_patches_that_leave_the_workspace(tmp_path, path):
    workspace = _tree(tmp_path / "ws", {"link": f"->{tmp_path / 'outside'}"})
    (tmp_path / "outside").mkdir()
    (workspace / ".git").mkdir()
    patch = f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+pwned\n"
    with pytest.raises(SandboxError, match="do not apply"):
        apply_diff_to_host(workspace, patch)
    assert list((tmp_path / "outside").iterdir()) == [] and not (tmp_path / "escape.txt").exists()
    assert list((workspace / ".git").iterdir()) == []
