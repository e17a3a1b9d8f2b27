"""The file tools against a hostile model: .git, swapped symlinks, huge targets, FIFOs, odd bytes.

Every test runs on both sandbox kinds (the same helper functions serve the host and the container).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.tools.files import EditFile, MultiEdit, ReadFile, WriteFile
from agent.tools.outline import OutlineTool
from agent.tools.registry import run_tool
from agent.tools.workspace_paths import writable_workspace_target
from sandbox.base import SandboxError

read, write, edit, multi = ReadFile(), WriteFile(), EditFile(), MultiEdit()
GIT_REFUSAL = "Use the git tools"


def tree_digest(root: Path) -> str:
    """Names, link targets and bytes of everything under root."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def no_lone_surrogates(result) -> bool:
    json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return True


# -- .git is not the file tools' to change -----------------------------------------------------


@pytest.fixture
def git_workspace(workspace, git) -> Path:
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "a.txt").write_text("a\n")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-q", "-m", "one")
    return workspace


GIT_PATHS = [
    ".git/config",
    ".git/HEAD",
    ".git/hooks/x",  # a new file
    ".git/hooks/pre-commit",
    ".git/info/attributes",
    "./.git/../.git/config",
    ".git",
    "sub/../.git/config",
    "link/config",  # link -> .git
    "link/hooks/post-checkout",
    "nested/.git/config",  # a nested repository (git status recurses into submodules)
]


@pytest.mark.parametrize("path", GIT_PATHS)
def test_write_edit_and_multi_edit_refuse_anything_inside_git(ctx, git_workspace, path):
    (git_workspace / "sub").mkdir()
    (git_workspace / "link").symlink_to(".git")
    (git_workspace / "nested" / ".git").mkdir(parents=True)
    (git_workspace / "nested" / ".git" / "config").write_text("[core]\n")
    before = tree_digest(git_workspace)
    calls = [
        (write, {"path": path, "content": "[core]\n\tfsmonitor = touch /tmp/pwned\n"}),
        (edit, {"path": path, "old": "[core]", "new": "[core]\n\tfsmonitor = touch /tmp/pwned"}),
        (multi, {"path": path, "edits": [{"old": "[core]", "new": "[core]\n\thooksPath = /tmp"}]}),
    ]
    for tool, args in calls:
        result = tool.run(args, ctx)
        assert not result.ok, (tool.name, result.output)
        assert "inside .git" in result.output and GIT_REFUSAL in result.output
    assert tree_digest(git_workspace) == before


def test_git_files_can_still_be_read_and_git_lookalikes_written(ctx, git_workspace):
    assert "[core]" in read.run({"path": ".git/config"}, ctx).output
    for path in (".gitignore", ".gitattributes", "docs/.github/x.yml", "x.git/config"):
        assert write.run({"path": path, "content": "ok\n"}, ctx).ok, path


def test_a_git_dir_reached_by_another_name_is_refused_too(ctx, workspace, git):
    # `.git` as a symlink to a directory of the workspace, and as a file naming its git dir.
    git(workspace, "init", "-q", "--separate-git-dir", str(workspace / "store"))
    assert (workspace / ".git").is_file()
    before = tree_digest(workspace / "store")
    result = write.run({"path": "store/config", "content": "[core]\n\tfsmonitor = x\n"}, ctx)
    assert not result.ok and GIT_REFUSAL in result.output
    (workspace / ".git").unlink()
    (workspace / ".git").symlink_to("store")
    result = edit.run({"path": "store/config", "old": "[core]", "new": "[core]\n\tfsmonitor = x"}, ctx)
    assert not result.ok and GIT_REFUSAL in result.output
    assert tree_digest(workspace / "store") == before


def test_the_git_refusal_reaches_the_cli_user(ctx, git_workspace):
    result = run_tool("write_file", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\n"}, ctx)
    assert not result.ok and GIT_REFUSAL in result.output
    assert not (git_workspace / ".git" / "hooks" / "pre-commit").exists()


# -- a path changed after the check --------------------------------------------------------------


@pytest.fixture
def swap_arena(tmp_path, workspace) -> tuple[Path, Path]:
    """ws/d (a real directory) and ws/swap (a symlink to an outside canary directory)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text("canary\n")
    (workspace / "d").mkdir()
    (workspace / "d" / "f.txt").write_text("inside\n")
    (workspace / "swap").symlink_to(outside)
    return workspace, outside


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(ctx, swap_arena):
    workspace, outside = swap_arena
    target = writable_workspace_target(ctx.sandbox, "d/f.txt")  # the check: d is a real directory
    (workspace / "d").rename(workspace / "d.real")
    (workspace / "d").symlink_to(outside)  # the swap, before the write
    for operation in (
        lambda: ctx.sandbox.write_file(target.real, b"pwned\n"),
        lambda: ctx.sandbox.write_file(target.real.replace("f.txt", "canary.txt"), b"pwned\n"),
        lambda: ctx.sandbox.read_file(target.real.replace("f.txt", "canary.txt")),
    ):
        with pytest.raises(SandboxError, match="'d' on the path is a symlink, which is not followed"):
            operation()
    assert (
        sorted(os.listdir(outside)) == ["canary.txt"] and (outside / "canary.txt").read_text() == "canary\n"
    )


RACER = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    workspace, stop = sys.argv[1], sys.argv[2]
    os.chdir(workspace)
    print("ready", flush=True)
    while not os.path.exists(stop):
        # Atomically trade places: "d" is the real directory, then the symlink to outside, and so on.
        libc.renameat2(AT_FDCWD, b"d", AT_FDCWD, b"swap", RENAME_EXCHANGE)
    """
)


def test_write_and_edit_racing_a_symlink_swap_never_land_outside(ctx, swap_arena, tmp_path):
    if not hasattr(ctypes.CDLL(None), "renameat2"):
        pytest.fail("this C library has no renameat2 (glibc >= 2.28 has it)")
    workspace, outside = swap_arena
    stop = tmp_path / "stop"
    racer = subprocess.Popen(
        [sys.executable, "-c", RACER, str(workspace), str(stop)], stdout=subprocess.PIPE, text=True
    )
    outcomes: dict[str, int] = {}
    try:
        assert racer.stdout.readline().strip() == "ready"
        for i in range(300):
            for tool, args in (
                (write, {"path": f"d/w{i % 7}.txt", "content": f"write {i}\n"}),
                (write, {"path": "d/canary.txt", "content": "pwned\n"}),  # the name the outside dir has
                (write, {"path": "d/f.txt", "content": "inside\n"}),
                (edit, {"path": "d/f.txt", "old": "inside", "new": "INSIDE"}),
            ):
                kind = _kind(tool.run(args, ctx))
                outcomes[kind] = outcomes.get(kind, 0) + 1
    finally:
        stop.touch()
        racer.wait(timeout=60)
    assert (
        sorted(os.listdir(outside)) == ["canary.txt"] and (outside / "canary.txt").read_text() == "canary\n"
    )
    # Every call either worked inside the workspace or said why it did not; no other failure.
    expected = {"ok", "symlink swapped in", "resolves outside", "changed while resolved", "not found"}
    assert set(outcomes) <= expected, outcomes
    assert outcomes.get("ok")


def _kind(result) -> str:
    if result.ok:
        return "ok"
    if "which is not followed" in result.output:
        return "symlink swapped in"
    if "outside the workspace" in result.output:
        return "resolves outside"
    if "did the path change while it was resolved?" in result.output:
        return "changed while resolved"
    if "`old` was not found" in result.output or "file not found" in result.output:
        return "not found"  # an earlier write failed, or d was the link when it was looked at
    return result.output


# -- sizes, FIFOs and devices -----------------------------------------------------------------


def test_a_symlink_to_a_huge_file_is_refused_by_the_size_of_the_file(ctx, workspace):
    huge = workspace / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: costs no disk, but reading it would cost 1 GiB of memory
    (workspace / "small.py").symlink_to("huge.bin")  # lstat of the link says 8 bytes
    for path in ("small.py", "huge.bin"):
        result = read.run({"path": path}, ctx)
        assert not result.ok and "is 1074 MB, larger than the 50 MiB" in result.output
    result = edit.run({"path": "small.py", "old": "a", "new": "b"}, ctx)
    assert not result.ok and "larger than the 50 MiB" in result.output
    result = OutlineTool().run({"path": "small.py"}, ctx)
    assert not result.ok and f"is {1 << 30} bytes, too big to outline" in result.output


def test_fifos_are_refused_not_waited_on(ctx, workspace):
    os.mkfifo(workspace / "pipe.py")  # no writer: a plain open() for reading would block forever
    (workspace / "alias.py").symlink_to("pipe.py")
    for path in ("pipe.py", "alias.py"):
        assert "not a regular file" in read.run({"path": path}, ctx).output
        assert "not a regular file" in edit.run({"path": path, "old": "a", "new": "b"}, ctx).output
        assert "not a regular file" in OutlineTool().run({"path": path}, ctx).output


def test_devices_are_refused(ctx, workspace):
    (workspace / "zero").symlink_to("/dev/zero")  # outside the workspace: refused by the boundary
    assert "outside the workspace" in read.run({"path": "zero"}, ctx).output
    if os.geteuid() != 0:
        return  # only root can make a device node inside the workspace; the symlink case is above
    os.mknod(workspace / "zero_node", 0o600 | 0o020000, os.makedev(1, 5))  # a character device
    assert "not a regular file" in read.run({"path": "zero_node"}, ctx).output


# -- bytes that are not UTF-8 -------------------------------------------------------------------

LATIN1 = b"# caf\xe9 cr\xe8me\nname = 'x'\ncount = 1\n\xff\xfe tail\n"


def test_editing_a_latin1_file_keeps_every_other_byte(ctx, workspace):
    path = workspace / "legacy.py"
    path.write_bytes(LATIN1)
    result = edit.run({"path": "legacy.py", "old": "count = 1", "new": "count = 2"}, ctx)
    assert result.ok, result.output
    assert path.read_bytes() == LATIN1.replace(b"count = 1", b"count = 2")
    assert no_lone_surrogates(result) and "caf\ufffd cr\ufffdme" in result.output
    result = multi.run(
        {
            "path": "legacy.py",
            "edits": [{"old": "name = 'x'", "new": "name = 'y'"}, {"old": "2", "new": "3"}],
        },
        ctx,
    )
    assert result.ok and no_lone_surrogates(result)
    assert path.read_bytes() == LATIN1.replace(b"count = 1", b"count = 3").replace(b"'x'", b"'y'")


def test_non_ascii_text_is_refused_for_a_file_that_is_not_utf8(ctx, workspace):
    path = workspace / "legacy.py"
    path.write_bytes(LATIN1)
    for tool, args in (
        (edit, {"path": "legacy.py", "old": "name = 'x'", "new": "name = 'é'"}),
        (multi, {"path": "legacy.py", "edits": [{"old": "1", "new": "2"}, {"old": "'x'", "new": "'→'"}]}),
    ):
        result = tool.run(args, ctx)
        assert not result.ok and "is not UTF-8 (4 bytes are not" in result.output
        assert "only ASCII" in result.output and "The file was not changed" in result.output
    assert path.read_bytes() == LATIN1


def test_an_old_text_copied_with_replacement_characters_gets_a_hint(ctx, workspace):
    (workspace / "legacy.py").write_bytes(LATIN1)
    shown = read.run({"path": "legacy.py"}, ctx).output
    assert "caf\ufffd" in shown
    result = edit.run({"path": "legacy.py", "old": "# caf\ufffd cr\ufffdme", "new": "# cafe"}, ctx)
    assert not result.ok and no_lone_surrogates(result)
    assert "read_file shows as U+FFFD; `old` cannot contain them" in result.output


def test_results_never_carry_lone_surrogates(ctx, workspace):
    # A file name that is not UTF-8 comes back from the OS as surrogate escapes.
    os.close(os.open(os.path.join(os.fsencode(workspace), b"caf\xe9.txt"), os.O_CREAT | os.O_WRONLY, 0o644))
    (workspace / "x.txt").write_bytes(b"\xe9t\xe9\n")
    for name, args in (("ls", {}), ("glob", {"pattern": "*.txt"}), ("grep", {"pattern": "t"})):
        result = run_tool(name, args, ctx)
        assert result.ok and no_lone_surrogates(result), name
    assert "caf\ufffd.txt" in run_tool("ls", {}, ctx).output


@pytest.mark.parametrize(
    "args",
    [
        {"path": "x.txt", "content": "a\ud800b"},
        {"path": "x\udce9.txt", "content": "a"},
        {"path": "x.txt", "content": "a\udce9"},  # would smuggle the raw byte 0xE9 into the file
    ],
)
def test_lone_surrogates_in_arguments_are_a_tool_error(ctx, workspace, args):
    result = run_tool("write_file", args, ctx)
    assert not result.ok and result.data["error"] == "bad_arguments"
    assert "holds a lone surrogate" in result.output and no_lone_surrogates(result)
    assert os.listdir(workspace) == []


@pytest.mark.parametrize("tool", ["read_file", "write_file", "edit_file", "grep", "outline", "ls"])
def test_a_nul_in_a_path_is_a_clear_refusal(ctx, tool):
    args = {
        "read_file": {"path": "a\0b"},
        "write_file": {"path": "a\0b", "content": "x"},
        "edit_file": {"path": "a\0b", "old": "x", "new": "y"},
        "grep": {"pattern": "x", "path": "a\0b"},
        "outline": {"path": "a\0b.py"},
        "ls": {"path": "a\0b"},
    }[tool]
    result = run_tool(tool, args, ctx)
    assert not result.ok and "holds a NUL character" in result.output
