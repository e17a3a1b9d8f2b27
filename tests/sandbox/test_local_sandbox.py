"""LocalSandbox: process groups, timeouts, output caps and atomic writes, on real processes and files."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from sandbox.base import FileTooLarge, Sandbox, SandboxError
from sandbox.local import LocalSandbox


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (PID 1 may never reap orphans here)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def _dies(pid: int) -> bool:
    """Whether pid is gone or a zombie; a killed process takes a moment to finish exiting."""
    deadline = time.monotonic() + 30  # an upper bound for a loaded machine, not a timing claim
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _alive(pid)


@pytest.fixture
def sandbox(tmp_path: Path) -> LocalSandbox:
    (tmp_path / "ws").mkdir()
    return LocalSandbox(tmp_path / "ws", env={"HOME": str(tmp_path)})


def test_implements_the_protocol(sandbox):
    assert isinstance(sandbox, Sandbox)
    assert os.path.isabs(sandbox.root)


def test_root_must_be_a_directory(tmp_path):
    with pytest.raises(SandboxError, match="not a directory"):
        LocalSandbox(tmp_path / "missing")


def test_exec_runs_in_the_root_with_exit_code_and_merged_output(sandbox):
    result = sandbox.exec("pwd; echo to-stderr >&2; exit 3")
    assert result.exit_code == 3
    assert result.output == f"{sandbox.root}\nto-stderr\n"
    assert not result.timed_out and result.elided == 0


def test_exec_env_and_cwd(sandbox, tmp_path):
    result = sandbox.exec('echo "$HOME $EXTRA"; pwd', cwd=str(tmp_path), env={"EXTRA": "yes"})
    assert result.output == f"{tmp_path} yes\n{tmp_path}\n"


def test_exec_has_no_stdin(sandbox):
    result = sandbox.exec("cat; echo done", timeout=60)
    assert result.output == "done\n"


def test_timeout_kills_the_whole_process_group_and_keeps_partial_output(sandbox):
    result = sandbox.exec("echo started; sleep 60 & echo $! > child.pid; sleep 60; echo never", timeout=1)
    assert result.timed_out and result.exit_code is None
    assert "started" in result.output and "never" not in result.output
    child = int((Path(sandbox.root) / "child.pid").read_text())
    assert _dies(child)


def test_timeout_escalates_to_kill_when_term_is_ignored(sandbox):
    result = sandbox.exec("trap '' TERM; echo stubborn; sleep 60", timeout=1)
    assert result.timed_out
    assert "stubborn" in result.output


def test_output_is_capped_to_head_and_tail_with_the_elided_count(sandbox):
    result = sandbox.exec("head -c 100000 /dev/zero | tr '\\0' a; echo; echo END", max_output=1000)
    total = 100000 + 1 + 4
    assert result.elided == total - 1000
    assert result.output.startswith("a" * 500 + "\n[... ")
    assert f"[... {total - 1000} bytes elided ...]" in result.output
    assert result.output.endswith("a\nEND\n")


def test_a_background_child_holding_the_pipe_does_not_hang_exec(sandbox):
    result = sandbox.exec("sleep 30 & echo $! > bg.pid; echo done", timeout=60)
    assert result.exit_code == 0 and not result.timed_out
    assert result.output.startswith("done\n")
    os.kill(int((Path(sandbox.root) / "bg.pid").read_text()), 9)


def test_a_signal_death_is_reported_like_bash(sandbox):
    assert sandbox.exec("kill -9 $$").exit_code == 137


def test_write_file_creates_parents_and_leaves_no_temp_files(sandbox):
    target = os.path.join(sandbox.root, "a", "b", "c.txt")
    sandbox.write_file(target, b"hello")
    assert Path(target).read_bytes() == b"hello"
    assert os.listdir(os.path.dirname(target)) == ["c.txt"]


def test_write_file_keeps_the_existing_mode_and_default_mode_follows_umask(sandbox):
    script = Path(sandbox.root) / "run.sh"
    script.write_text("old")
    script.chmod(0o754)
    sandbox.write_file(str(script), b"new")
    assert stat.S_IMODE(script.stat().st_mode) == 0o754
    fresh = Path(sandbox.root) / "fresh.txt"
    sandbox.write_file(str(fresh), b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask
    sandbox.write_file(str(fresh), b"y", mode=0o600)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_read_and_write_refuse_a_symlink_anywhere_on_the_path(sandbox, tmp_path):
    # Callers pass resolved paths; a symlink on one means it was swapped in after the check.
    root = Path(sandbox.root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("old")
    (root / "real.txt").write_text("old")
    (root / "link.txt").symlink_to("real.txt")
    (root / "dirlink").symlink_to(outside)
    for path in (root / "link.txt", root / "dirlink" / "secret.txt", root / "dirlink" / "new" / "x.txt"):
        with pytest.raises(SandboxError, match="is a symlink, which is not followed"):
            sandbox.write_file(str(path), b"new")
        if path.name != "x.txt":
            with pytest.raises(SandboxError, match="is a symlink, which is not followed"):
                sandbox.read_file(str(path))
    assert (root / "link.txt").is_symlink() and (root / "real.txt").read_text() == "old"
    assert sorted(os.listdir(outside)) == ["secret.txt"] and (outside / "secret.txt").read_text() == "old"


def test_read_file_over_max_bytes_raises_file_too_large_with_the_size(sandbox):
    root = Path(sandbox.root)
    (root / "big.bin").write_bytes(b"x" * 5000)
    with pytest.raises(FileTooLarge) as caught:
        sandbox.read_file(str(root / "big.bin"), max_bytes=4096)
    assert caught.value.size == 5000
    assert sandbox.read_file(str(root / "big.bin"), max_bytes=5000) == b"x" * 5000


def test_file_operations(sandbox):
    root = Path(sandbox.root)
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_text("12345")
    (root / "l").symlink_to("d")
    assert sandbox.read_file(str(root / "d" / "f.txt")) == b"12345"
    info = sandbox.stat(str(root / "d" / "f.txt"))
    assert info.size == 5 and not info.is_dir and not info.is_symlink
    link_info = sandbox.stat(str(root / "l"))
    assert link_info.is_symlink and link_info.is_dir
    assert sandbox.stat(str(root / "nope")) is None
    assert sandbox.realpath(str(root / "l" / "f.txt")) == str(root / "d" / "f.txt")
    assert sandbox.listdir(str(root)) == ["d", "l"]
    walked = list(sandbox.walk(str(root)))
    assert walked[0] == (str(root), ["d", "l"], []) or sorted(walked[0][1]) == ["d", "l"]
    sandbox.remove(str(root / "d" / "f.txt"))
    sandbox.remove(str(root / "d"))
    assert sandbox.listdir(str(root)) == ["l"]
    with pytest.raises(SandboxError):
        sandbox.read_file(str(root / "d" / "f.txt"))
    with pytest.raises(SandboxError):
        sandbox.listdir(str(root / "missing"))
