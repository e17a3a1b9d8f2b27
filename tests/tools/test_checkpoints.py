"""Checkpoints and undo on real workspaces, and proof that the user's git state is never touched."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from agent.tools.checkpoints import (
    CheckpointError,
    checkpoint,
    list_checkpoints,
    snapshot_tree,
    store_path,
    tree_diff,
    undo,
)
from agent.tools.registry import run_tool


def _tree_digest(directory: Path) -> dict[str, str]:
    """Every file under `directory` with a hash of its bytes (and symlink targets)."""
    found = {}
    for parent, _, files in os.walk(directory):
        for name in files:
            path = Path(parent) / name
            data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            found[str(path.relative_to(directory))] = hashlib.sha256(data).hexdigest()
    return found


def _files(workspace: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(workspace)): p.read_bytes()
        for p in workspace.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(workspace).parts
    }


def test_the_store_lives_under_xdg_state_home_per_workspace(ctx, tmp_path, workspace):
    store = store_path(ctx)
    assert store.startswith(str(tmp_path / "state" / "mmx-agent" / "checkpoints") + "/")
    checkpoint(ctx, "first")
    assert (Path(store) / "HEAD").exists()
    assert (Path(store) / "mmx-workspace").read_text().strip() == str(workspace)


def test_undo_restores_an_edit_made_through_the_registry(ctx, repo):
    before = _files(repo)
    assert run_tool("edit_file", {"path": "notes.txt", "old": "first", "new": "FIRST"}, ctx).ok
    assert (repo / "notes.txt").read_text().startswith("FIRST")
    result = run_tool("undo", {}, ctx)
    assert result.ok and "reverted notes.txt" in result.output
    assert result.data["changes"] == ["reverted notes.txt"]
    assert _files(repo) == before


def test_undo_covers_shell_changes_creations_and_deletions(ctx, repo):
    (repo / "untracked.txt").write_text("not committed anywhere\n")
    before = _files(repo)
    command = "rm notes.txt untracked.txt && mkdir -p new/deep && echo x > new/deep/file.txt && echo y >> .gitignore"
    assert run_tool("bash", {"command": command}, ctx).ok
    result = run_tool("undo", {"n": 1}, ctx)
    assert result.ok, result.output
    assert sorted(result.data["changes"]) == [
        "removed new/deep/file.txt",
        "restored notes.txt",
        "restored untracked.txt",
        "reverted .gitignore",
    ]
    assert _files(repo) == before
    assert not (repo / "new").exists()  # emptied directories go too


def test_undo_n_walks_back_several_changes_and_then_runs_out(ctx, workspace):
    for i in range(3):
        assert run_tool("write_file", {"path": "counter.txt", "content": f"{i}\n"}, ctx).ok
    assert run_tool("undo", {"n": 2}, ctx).ok
    assert (workspace / "counter.txt").read_text() == "0\n"
    assert run_tool("undo", {}, ctx).ok
    assert not (workspace / "counter.txt").exists()
    result = run_tool("undo", {}, ctx)
    assert not result.ok and "only 0 recorded" in result.output


def test_calls_that_changed_nothing_do_not_count(ctx, workspace):
    run_tool("write_file", {"path": "a.txt", "content": "v1\n"}, ctx)
    run_tool("write_file", {"path": "a.txt", "content": "v2\n"}, ctx)
    run_tool("bash", {"command": "ls"}, ctx)
    run_tool("bash", {"command": "cat a.txt"}, ctx)
    assert run_tool("undo", {}, ctx).ok
    assert (workspace / "a.txt").read_text() == "v1\n"
    assert [c.label.split()[0] for c in list_checkpoints(ctx)] == ["write_file"]


def test_reads_take_no_checkpoint(ctx, workspace):
    (workspace / "f.txt").write_text("x\n")
    run_tool("read_file", {"path": "f.txt"}, ctx)
    assert list_checkpoints(ctx) == []
    run_tool("write_file", {"path": "f.txt", "content": "y\n"}, ctx)
    assert len(list_checkpoints(ctx)) == 1


def test_small_ignored_files_are_restored_too(ctx, repo):
    # Small ignored files (logs, build output) are checkpointed and restored like tracked ones.
    (repo / "run.log").write_text("log before\n")
    assert run_tool("bash", {"command": "echo more >> run.log && echo changed > notes.txt"}, ctx).ok
    result = run_tool("undo", {}, ctx)
    assert result.ok and sorted(result.data["changes"]) == ["reverted notes.txt", "reverted run.log"]
    assert (repo / "run.log").read_text() == "log before\n"
    assert (repo / "notes.txt").read_text() == "first line\nsecond line\n"


def test_content_comes_back_byte_for_byte_despite_attributes(ctx, repo, git):
    (repo / ".gitattributes").write_text("*.txt text eol=crlf\n")
    (repo / "data.txt").write_bytes(b"line\nmixed\r\n\x00binary")
    checkpoint(ctx, "before")
    (repo / "data.txt").write_bytes(b"gone")
    undo(ctx)
    assert (repo / "data.txt").read_bytes() == b"line\nmixed\r\n\x00binary"


def test_executable_bit_and_symlinks_are_restored(ctx, workspace):
    script = workspace / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (workspace / "link").symlink_to("run.sh")
    checkpoint(ctx, "before")
    script.unlink()
    (workspace / "link").unlink()
    undo(ctx)
    assert os.access(script, os.X_OK) and os.readlink(workspace / "link") == "run.sh"


def test_the_replaced_state_is_kept_for_manual_recovery(ctx, workspace, sandbox_env):
    (workspace / "f.txt").write_text("old\n")
    checkpoint(ctx, "before")
    (workspace / "f.txt").write_text("new\n")
    undo(ctx)
    store = store_path(ctx)
    shown = subprocess.run(
        ["git", "--git-dir", store, "show", "refs/mmx/undone:f.txt"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == "new\n"


def test_user_git_state_is_byte_identical_after_checkpoint_and_undo(ctx, repo, git):
    # A repository with history, a stash, a second branch, staged and unstaged changes, untracked files.
    (repo / "notes.txt").write_text("stash me\n")
    git(repo, "stash", "-q")
    git(repo, "branch", "topic")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "notes.txt").write_text("unstaged edit\n")
    (repo / "untracked.txt").write_text("untracked\n")

    def user_state():
        # --no-optional-locks: our own `git status` must not refresh (rewrite) the index it inspects.
        return {
            "index": (repo / ".git" / "index").read_bytes(),
            "status": git(repo, "--no-optional-locks", "status", "--porcelain=v2", "--branch"),
            "stash": git(repo, "stash", "list"),
            "head": (repo / ".git" / "HEAD").read_text(),
            "refs": git(repo, "for-each-ref"),
        }

    state_before = user_state()
    git_dir_before = _tree_digest(repo / ".git")

    assert run_tool("edit_file", {"path": "staged.txt", "old": "staged", "new": "edited"}, ctx).ok
    assert run_tool("bash", {"command": "rm untracked.txt && echo new > created.txt"}, ctx).ok
    assert run_tool("undo", {"n": 2}, ctx).ok

    assert _tree_digest(repo / ".git") == git_dir_before  # not one byte of .git changed
    assert user_state() == state_before
    assert (repo / "untracked.txt").read_text() == "untracked\n" and not (repo / "created.txt").exists()


def test_works_without_any_git_repository(ctx, workspace):
    (workspace / "plain.txt").write_text("plain\n")
    run_tool("bash", {"command": "echo changed > plain.txt"}, ctx)
    assert run_tool("undo", {}, ctx).ok
    assert (workspace / "plain.txt").read_text() == "plain\n"
    assert not (workspace / ".git").exists()


def test_snapshot_trees_give_a_patch_git_apply_accepts(ctx, workspace, tmp_path):
    (workspace / "a.txt").write_text("one\n")
    start = snapshot_tree(ctx)
    (workspace / "a.txt").write_text("two\n")
    (workspace / "b.bin").write_bytes(b"\x00\x01")
    patch = tree_diff(ctx, start, snapshot_tree(ctx))
    assert "+two" in patch and "GIT binary patch" in patch
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "a.txt").write_text("one\n")
    subprocess.run(["git", "apply", "-"], cwd=copy, input=patch.encode(), check=True)
    assert (copy / "a.txt").read_text() == "two\n" and (copy / "b.bin").read_bytes() == b"\x00\x01"
    assert list_checkpoints(ctx) == []  # snapshots are not checkpoints


def test_a_broken_store_does_not_block_the_call(ctx, workspace, tmp_path):
    (tmp_path / "state").write_text("a file where the state directory should be")
    result = run_tool("write_file", {"path": "x.txt", "content": "x\n"}, ctx)
    assert result.ok and "no checkpoint was taken" in result.output
    assert (workspace / "x.txt").read_text() == "x\n"
    with pytest.raises(CheckpointError):
        undo(ctx)
