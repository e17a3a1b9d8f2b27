"""Undo you can trust: small ignored files come back, what cannot is reported,
and the store survives a killed run and garbage left in it."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.tools import checkpoint_store
from agent.tools.checkpoints import (
    MAX_IGNORED_FILE,
    CheckpointError,
    checkpoint,
    list_checkpoints,
    store_path,
    undo,
)
from agent.tools.registry import run_tool
from tests.sandbox_kinds import local_only

MIB = 1024 * 1024


def store_git(ctx, *args: str) -> str:
    store = store_path(ctx)
    return subprocess.run(
        ["git", "--git-dir", store, *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def wiped(ctx, repo):
    """A workspace with every kind of file, checkpointed, then emptied of all but .git (what a
    dotglob `rm -rf *` leaves once .git is out of its reach)."""
    (repo / ".gitignore").write_text(".env\n*.log\nbig.bin\nbuild/\nvendor/\n")
    (repo / ".env").write_text("API_URL=http://localhost\n")
    (repo / "debug.log").write_text("log line\n")
    (repo / "big.bin").write_bytes(b"\0" * (MAX_IGNORED_FILE + 1))
    (repo / "build").mkdir()
    (repo / "build" / "out.o").write_bytes(b"object")
    nested = repo / "vendor" / "lib"
    nested.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(nested)], check=True)
    (nested / "lib.c").write_text("int x;\n")
    subprocess.run(["git", "-C", str(nested), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(nested), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lib"],
        check=True,
    )
    taken = checkpoint(ctx, "before the wipe")
    assert taken.notes == []
    for entry in repo.iterdir():
        if entry.name != ".git":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return repo


def test_undo_brings_back_small_ignored_files_after_everything_was_deleted(ctx, wiped):
    result = undo(ctx)
    assert (wiped / ".env").read_text() == "API_URL=http://localhost\n"
    assert (wiped / "debug.log").read_text() == "log line\n"
    assert (wiped / "notes.txt").read_text() == "first line\nsecond line\n"
    assert sorted(result.changes) == [
        "restored .env",
        "restored .gitignore",
        "restored debug.log",
        "restored notes.txt",
    ]
    # What it cannot bring back, it says.
    assert not (wiped / "big.bin").exists() and not (wiped / "build").exists()
    assert sorted(result.not_restored) == [
        "big.bin: ignored file larger than 1 MiB, not saved",
        "build/: ignored directory, not saved",
        "vendor/: ignored directory, not saved",
    ]


def test_the_undo_tool_lists_what_it_could_not_bring_back(ctx, wiped):
    result = run_tool("undo", {}, ctx)
    assert result.ok
    assert "could not be brought back:\n  big.bin: ignored file larger than 1 MiB, not saved" in result.output
    assert "build/: ignored directory, not saved" in result.data["not_restored"]


def test_a_nested_repository_is_reported_when_gone(ctx, workspace):
    nested = workspace / "lib"
    nested.mkdir()
    subprocess.run(["git", "init", "-q", str(nested)], check=True)
    (nested / "a.c").write_text("int a;\n")
    subprocess.run(["git", "-C", str(nested), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(nested), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"],
        check=True,
    )
    checkpoint(ctx, "before")
    shutil.rmtree(nested)
    result = undo(ctx)
    assert result.not_restored == ["lib: nested git repository, only its commit id is saved"]


def test_ignored_files_keep_to_a_total(ctx, workspace):
    (workspace / ".gitignore").write_text("data/\n*.dat\n")
    size = 1000 * 1024  # under the per-file cap; 17 of them pass the 16 MiB total
    names = [f"f{i:02}.dat" for i in range(20)]
    for name in names:
        (workspace / name).write_bytes(name.encode() * (size // len(name)))
    checkpoint(ctx, "before")
    for name in names:
        (workspace / name).unlink()
    result = undo(ctx)
    kept = [name for name in names if (workspace / name).exists()]
    assert kept == names[:16]
    assert result.not_restored == [
        f"{n}: ignored file past the 16 MiB kept for ignored files, not saved" for n in names[16:]
    ]


def test_undo_leaves_ignored_files_it_did_not_save_and_keeps_what_it_overwrites(ctx, repo):
    (repo / ".gitignore").write_text("*.log\nbig.bin\n")
    (repo / "keep.log").write_text("saved\n")
    (repo / "big.bin").write_bytes(b"a" * (MAX_IGNORED_FILE + 1))
    checkpoint(ctx, "before")
    (repo / "keep.log").write_text("changed after\n")
    (repo / "big.bin").write_bytes(b"b" * (MAX_IGNORED_FILE + 1))
    (repo / "new.log").write_text("created after\n")
    undo(ctx)
    assert (repo / "keep.log").read_text() == "saved\n"
    assert (repo / "big.bin").read_bytes() == b"b" * (MAX_IGNORED_FILE + 1)  # never saved: untouched
    assert (repo / "new.log").read_text() == "created after\n"  # ignored and new: left alone
    assert store_git(ctx, "show", "refs/mmx/undone:keep.log") == "changed after\n"


def test_the_store_belongs_to_its_user_alone(ctx, workspace):
    checkpoint(ctx, "first")
    assert os.stat(store_path(ctx)).st_mode & 0o777 == 0o700


def test_files_the_user_ignores_everywhere_stay_out(ctx, workspace, home):
    (home / "global-ignore").write_text("*.swp\n")
    (home / ".gitconfig").write_text(f"[core]\n\texcludesFile = {home / 'global-ignore'}\n")
    (workspace / "a.txt").write_text("a\n")
    (workspace / "a.txt.swp").write_bytes(b"\0" * (MAX_IGNORED_FILE + 1))
    checkpoint(ctx, "first")
    assert store_git(ctx, "ls-tree", "-r", "--name-only", "refs/mmx/checkpoints").split() == ["a.txt"]


# -- a store left in a mess -------------------------------------------------------------------


def test_stale_git_locks_are_removed_when_nobody_holds_the_store(ctx, workspace):
    (workspace / "a.txt").write_text("one\n")
    assert run_tool("write_file", {"path": "a.txt", "content": "two\n"}, ctx).ok
    store = Path(store_path(ctx))
    for lock in ("index.lock", "HEAD.lock", "refs/mmx/checkpoints.lock", "packed-refs.lock", "config.lock"):
        (store / lock).write_text("left by a killed git\n")
    result = run_tool("write_file", {"path": "a.txt", "content": "three\n"}, ctx)
    assert result.ok and "warning" not in result.output and "note" not in result.output
    assert run_tool("undo", {"n": 2}, ctx).ok
    assert (workspace / "a.txt").read_text() == "one\n"
    assert not list(store.glob("*.lock"))


def _start_checkpoint(workspace: Path, env: dict[str, str]) -> subprocess.Popen:
    script = textwrap.dedent(
        f"""
        from agent.tools.base import ToolContext
        from agent.tools.checkpoints import checkpoint
        from sandbox.local import LocalSandbox
        checkpoint(ToolContext(LocalSandbox({str(workspace)!r}, env={env!r})), "interrupted")
        """
    )
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@local_only("signals the checkpoint's host processes; the store code is the same for a container")
@pytest.mark.parametrize("how", ["ctrl-c of the agent", "kill -9 of the checkpoint's processes"])
def test_a_checkpoint_killed_mid_write_leaves_nothing_that_breaks_the_next(ctx, workspace, sandbox_env, how):
    (workspace / "a.txt").write_text("before\n")
    checkpoint(ctx, "first")  # the store exists, so the next one is slow only in `git add`
    index_lock = Path(store_path(ctx)) / "index.lock"
    size = 64 * MIB
    for _attempt in range(20):  # until a kill lands while git holds index.lock
        with open(workspace / "big.bin", "wb") as big:
            big.truncate(size)  # a big file keeps `git add`, and so its index.lock, busy
        child = _start_checkpoint(workspace, sandbox_env)
        while child.poll() is None and not index_lock.exists():
            time.sleep(0.001)
        if child.poll() is not None:  # done before we saw the lock: try a bigger file
            size = min(size * 4, 4096 * MIB)
            continue
        if how == "ctrl-c of the agent":
            child.send_signal(signal.SIGINT)  # the sandbox then kills the command's process group
        else:
            for pid in _children(child.pid):
                os.killpg(pid, signal.SIGKILL)
            child.kill()
        child.wait()
        if index_lock.exists():  # what git leaves when it dies in the middle
            break
    else:
        pytest.fail("no kill landed while git held index.lock")

    (workspace / "big.bin").unlink()
    taken = checkpoint(ctx, "after the kill")
    assert taken.notes == []
    (workspace / "a.txt").write_text("after\n")
    undo(ctx)
    assert (workspace / "a.txt").read_text() == "before\n"


def test_a_store_in_use_makes_the_next_wait_then_fail_with_a_reason(ctx, workspace, monkeypatch):
    checkpoint(ctx, "first")
    monkeypatch.setattr(checkpoint_store, "LOCK_WAIT_SECONDS", 1)
    with open(store_path(ctx) + ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(CheckpointError, match="in use by another mmx-agent"):
            checkpoint(ctx, "second")
    assert checkpoint(ctx, "second").commit


@pytest.mark.parametrize("garbage", [b"not an index at all", b"DIRC\0\0\0\2\0\0\0\5truncated"])
def test_an_unreadable_index_is_rebuilt(ctx, workspace, garbage):
    (workspace / "a.txt").write_text("one\n")
    assert run_tool("write_file", {"path": "a.txt", "content": "two\n"}, ctx).ok
    (Path(store_path(ctx)) / "index").write_bytes(garbage)
    result = run_tool("write_file", {"path": "a.txt", "content": "three\n"}, ctx)
    assert result.ok
    assert "[note: the checkpoint store's index could not be read" in result.output
    assert "no checkpoint was lost" in result.output
    assert run_tool("undo", {"n": 2}, ctx).ok
    assert (workspace / "a.txt").read_text() == "one\n"


@pytest.mark.parametrize(
    "damage", ["update-ref -d", "garbage in the ref", "ref moved to an older checkpoint"]
)
def test_a_deleted_or_moved_ref_is_set_back_from_the_record(ctx, workspace, damage):
    for content in ("one\n", "two\n", "three\n"):
        assert run_tool("write_file", {"path": "a.txt", "content": content}, ctx).ok
    oldest = list_checkpoints(ctx)[-1].commit
    store = Path(store_path(ctx))
    if damage == "update-ref -d":
        store_git(ctx, "update-ref", "-d", "refs/mmx/checkpoints")
    elif damage == "garbage in the ref":
        (store / "refs" / "mmx" / "checkpoints").write_text("garbage\n")
    else:
        store_git(ctx, "update-ref", "refs/mmx/checkpoints", oldest)
    result = run_tool("undo", {}, ctx)
    assert result.ok, result.output
    assert "set back from the store's record, no checkpoint was lost" in result.output
    assert (workspace / "a.txt").read_text() == "two\n"
    assert len(list_checkpoints(ctx)) == 2


def test_lost_history_is_said_and_checkpoints_start_again(ctx, workspace):
    for content in ("one\n", "two\n"):
        assert run_tool("write_file", {"path": "a.txt", "content": content}, ctx).ok
    store = Path(store_path(ctx))
    store_git(ctx, "update-ref", "-d", "refs/mmx/checkpoints")
    (store / "mmx-checkpoints").write_text("0123456789abcdef0123456789abcdef01234567\n")
    result = run_tool("write_file", {"path": "a.txt", "content": "three\n"}, ctx)
    assert result.ok and "[note: the checkpoint history was lost" in result.output
    assert [c.label.split()[0] for c in list_checkpoints(ctx)] == ["write_file"]
    assert run_tool("undo", {}, ctx).ok
    assert (workspace / "a.txt").read_text() == "two\n"


def test_garbage_config_and_attributes_in_the_store_do_not_survive(ctx, workspace):
    (workspace / "a.txt").write_text("one\n")
    checkpoint(ctx, "first")
    store = Path(store_path(ctx))
    (store / "config").write_text("[[[ not a config\n")
    (store / "info" / "exclude").write_text("*.txt\n")  # would hide every text file from checkpoints
    (store / "commondir").write_text(str(workspace / ".elsewhere"))
    (workspace / "a.txt").write_text("two\n")
    taken = checkpoint(ctx, "second")
    assert store_git(ctx, "show", f"{taken.commit}:a.txt") == "two\n"
    undo(ctx)
    assert (workspace / "a.txt").read_text() == "one\n"


def test_an_index_naming_objects_the_store_lost_is_rebuilt(ctx, workspace):
    (workspace / "a.txt").write_text("one\n")
    os.utime(workspace / "a.txt", (1_000_000_000, 1_000_000_000))  # not racy: git trusts its stat
    assert run_tool("write_file", {"path": "b.txt", "content": "b\n"}, ctx).ok
    blob = store_git(ctx, "rev-parse", "refs/mmx/checkpoints:a.txt").strip()
    (Path(store_path(ctx)) / "objects" / blob[:2] / blob[2:]).unlink()
    (workspace / "b.txt").write_text("x\n")  # the next snapshot must write the root tree again
    result = run_tool("write_file", {"path": "b.txt", "content": "c\n"}, ctx)
    assert result.ok and "[note: the checkpoint store's index could not be used" in result.output
    (workspace / "a.txt").write_text("changed\n")
    assert run_tool("undo", {}, ctx).ok
    assert (workspace / "a.txt").read_text() == "one\n" and (workspace / "b.txt").read_text() == "x\n"
