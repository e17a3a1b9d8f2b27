"""The agent's workspace in a container, end to end: copy mode's diff applied back to the host, and
bind mode writing in place as the host user."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from sandbox.base import SandboxError
from sandbox.workspace import apply_diff_to_host, open_workspace_sandbox

LATIN1 = "caf\xe9 cr\xe8me\n".encode("latin-1")  # text that is not UTF-8

# Run inside the container: every kind of change a diff has to carry.
CHANGES = r"""
set -e
printf 'line 1\nline 2 changed\nline 3\n' > edit.txt
rm delete.txt
mkdir -p sub/dir && printf 'brand new\n' > sub/dir/new.txt
printf '\000\001\002\377binary' > new.bin
printf '\377\376changed' > old.bin
chmod +x tool.sh
printf 'caf\351 changed\n' > latin1.txt
echo 'ignored' > debug.log
ln -s edit.txt edit-link
"""


def _make_workspace(parent: Path) -> Path:
    """A workspace that is a sub-directory of a git repository (the patch must stay relative to it)."""
    subprocess.run(["git", "init", "-q", str(parent)], check=True)
    workspace = parent / "project"
    (workspace / "sub").mkdir(parents=True)
    (workspace / "edit.txt").write_text("line 1\nline 2\nline 3\n")
    (workspace / "delete.txt").write_text("doomed\n")
    (workspace / "keep.txt").write_text("untouched\n")
    (workspace / "old.bin").write_bytes(b"\x00old binary\xff")
    (workspace / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (workspace / "latin1.txt").write_bytes(LATIN1)
    (workspace / ".gitignore").write_text("*.log\n")
    return workspace


@pytest.fixture(scope="module")
def copied(docker_client, base_image, tmp_path_factory):
    workspace = _make_workspace(tmp_path_factory.mktemp("outer"))
    pristine = tmp_path_factory.mktemp("pristine") / "project"
    shutil.copytree(workspace, pristine, symlinks=True)
    with open_workspace_sandbox(workspace, "copy", image=base_image, client=docker_client) as sandbox:
        result = sandbox.exec(CHANGES)
        assert result.exit_code == 0, result.output
        yield sandbox, workspace, pristine


def test_the_container_works_on_a_copy(copied):
    sandbox, workspace, _ = copied
    assert sandbox.root == "/workspace"
    assert sandbox.read_file("/workspace/keep.txt") == b"untouched\n"
    assert (workspace / "delete.txt").exists()  # the host is untouched until the diff is applied
    assert (workspace / "edit.txt").read_text() == "line 1\nline 2\nline 3\n"


def test_the_diff_carries_edits_new_deleted_binary_and_mode_changes(copied):
    sandbox, _, _ = copied
    diff = sandbox.workspace_diff()
    assert "diff --git a/edit.txt b/edit.txt" in diff and "+line 2 changed" in diff
    assert "diff --git a/delete.txt b/delete.txt\ndeleted file mode 100644" in diff
    assert "diff --git a/sub/dir/new.txt b/sub/dir/new.txt\nnew file mode 100644" in diff
    assert "GIT binary patch" in diff
    assert "diff --git a/tool.sh b/tool.sh\nold mode 100644\nnew mode 100755" in diff
    assert "new file mode 120000" in diff  # the symlink
    assert "debug.log" not in diff  # ignored by the workspace's .gitignore
    assert "keep.txt" not in diff


def test_the_diff_applied_to_the_host_reproduces_the_container_workspace(copied):
    sandbox, workspace, _ = copied
    apply_diff_to_host(workspace, sandbox.workspace_diff())
    for relative in (
        "edit.txt",
        "sub/dir/new.txt",
        "new.bin",
        "old.bin",
        "latin1.txt",
        "keep.txt",
        "tool.sh",
    ):
        assert (workspace / relative).read_bytes() == sandbox.read_file(f"/workspace/{relative}"), relative
    assert not (workspace / "delete.txt").exists()
    assert stat.S_IMODE((workspace / "tool.sh").stat().st_mode) & 0o100
    assert os.readlink(workspace / "edit-link") == "edit.txt"
    assert not (workspace / "debug.log").exists()
    # Nothing leaked into the repository the workspace sits in.
    assert not (workspace.parent / "edit.txt").exists()


def test_a_diff_that_no_longer_applies_changes_nothing(copied, tmp_path):
    sandbox, _, pristine = copied
    moved_on = tmp_path / "moved-on"
    shutil.copytree(pristine, moved_on, symlinks=True)
    (moved_on / "edit.txt").write_text("someone else rewrote this\n")
    before = {p.name: p.read_bytes() for p in moved_on.iterdir() if p.is_file()}
    with pytest.raises(SandboxError, match="do not apply"):
        apply_diff_to_host(moved_on, sandbox.workspace_diff())
    assert {p.name: p.read_bytes() for p in moved_on.iterdir() if p.is_file()} == before


def test_sync_back_applies_and_starts_a_new_baseline(docker_client, base_image, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "a.txt").write_text("a\n")
    with open_workspace_sandbox(workspace, image=base_image, client=docker_client) as sandbox:
        sandbox.write_file("/workspace/a.txt", b"b\n")
        diff = sandbox.sync_back()
        assert "+b" in diff
        assert (workspace / "a.txt").read_text() == "b\n"
        assert sandbox.workspace_diff() == ""
    # Bind mode: the same workspace, changed in place, files owned by the host user.
    with open_workspace_sandbox(workspace, "bind", image=base_image, client=docker_client) as sandbox:
        assert sandbox.exec("echo made > made.txt && id -u").output == f"{os.getuid()}\n"
        assert (workspace / "made.txt").read_text() == "made\n"
        assert (workspace / "made.txt").stat().st_uid == os.getuid()
        with pytest.raises(SandboxError, match="bind"):
            sandbox.workspace_diff()
