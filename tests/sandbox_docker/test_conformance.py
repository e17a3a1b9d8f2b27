"""The same behavioural checks against LocalSandbox, ConfinedSandbox and DockerSandbox: the tools
see no difference.

Each test gets a fresh empty directory `box.dir` inside the sandbox's root. The Docker side shares
one container per module (containers are slow to make); the host sides a fresh tmp directory.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from itertools import count

import pytest

from sandbox.base import FileTooLarge, Sandbox, SandboxError
from sandbox.docker import DockerSandbox
from sandbox.local import LocalSandbox
from tests.sandbox_docker.processes import ALIVE
from tests.sandbox_kinds import open_confined

BACKGROUND_NOTE = "\n[background processes still hold the output; stopped reading]\n"
_directory_numbers = count()


@dataclass
class Box:
    sandbox: Sandbox
    dir: str  # a fresh, empty directory for one test

    def run(self, command: str) -> str:
        result = self.sandbox.exec(command, cwd=self.dir, timeout=60)
        assert result.exit_code == 0, result.output
        return result.output

    def path(self, *parts: str) -> str:
        return "/".join([self.dir, *parts])


@pytest.fixture(scope="module")
def docker_sandbox(docker_client, base_image):
    with DockerSandbox.create(base_image, client=docker_client) as sandbox:
        yield sandbox


@pytest.fixture(params=["local", "confined", "docker"])
def box(request, tmp_path) -> Box:
    if request.param == "local":
        sandbox: Sandbox = LocalSandbox(tmp_path)
    elif request.param == "confined":
        sandbox = open_confined(tmp_path)
        request.addfinalizer(sandbox.close)
    else:
        sandbox = request.getfixturevalue("docker_sandbox")
    directory = f"{sandbox.root}/t{next(_directory_numbers)}"
    result = sandbox.exec(f"mkdir {directory}")
    assert result.exit_code == 0, result.output
    return Box(sandbox, directory)


# -- protocol shape ----------------------------------------------------------------------------


def test_is_a_sandbox_with_a_real_absolute_root(box):
    assert isinstance(box.sandbox, Sandbox)
    assert box.sandbox.root.startswith("/")
    assert box.sandbox.realpath(box.sandbox.root) == box.sandbox.root


# -- exec --------------------------------------------------------------------------------------


def test_exit_codes_including_death_by_signal(box):
    assert box.sandbox.exec("true").exit_code == 0
    assert box.sandbox.exec("exit 3").exit_code == 3
    assert box.sandbox.exec("kill -9 $$").exit_code == 137


def test_output_merges_stdout_and_stderr_in_order(box):
    result = box.sandbox.exec("echo one; echo two >&2; echo three")
    assert result.output == "one\ntwo\nthree\n"
    assert not result.timed_out and result.elided == 0


def test_cwd_defaults_to_root_and_can_be_set(box):
    assert box.sandbox.exec("pwd").output == box.sandbox.root + "\n"
    assert box.sandbox.exec("pwd", cwd=box.dir).output == box.dir + "\n"


def test_env_is_added_to_the_sandbox_environment(box):
    result = box.sandbox.exec(
        'printf "%s|%s" "$MMX_CONFORMANCE" "${PATH:+has-path}"', env={"MMX_CONFORMANCE": "a b"}
    )
    assert result.output == "a b|has-path"


def test_the_sandbox_env_reaches_every_command_and_a_call_env_wins(box):
    # What the sandbox adds to every command is also what secret redaction reads (agent.tools.registry).
    box.sandbox.env["MMX_CONFORMANCE"] = "from the sandbox"
    try:
        assert box.run('printf %s "$MMX_CONFORMANCE"') == "from the sandbox"
        call = box.sandbox.exec('printf %s "$MMX_CONFORMANCE"', env={"MMX_CONFORMANCE": "from the call"})
        assert call.output == "from the call"
    finally:
        del box.sandbox.env["MMX_CONFORMANCE"]
    assert box.run('printf %s "${MMX_CONFORMANCE-unset}"') == "unset"


def test_no_stdin(box):
    assert box.sandbox.exec("cat; echo done", timeout=60).output == "done\n"


def test_missing_cwd_is_a_sandbox_error(box):
    with pytest.raises(SandboxError):
        box.sandbox.exec("true", cwd=box.path("missing"))


def test_timeout_kills_the_process_tree_and_returns_partial_output(box):
    result = box.sandbox.exec(
        "echo started; sleep 60 & echo $! > child.pid; sleep 60; echo never", cwd=box.dir, timeout=1
    )
    assert result.timed_out and result.exit_code is None
    assert result.output == "started\n"
    # The background child was in the killed group too.
    assert box.sandbox.exec(ALIVE.format(pid_file=box.path("child.pid"))).exit_code != 0


def test_timeout_escalates_to_kill_when_term_is_ignored(box):
    result = box.sandbox.exec("trap '' TERM; echo stubborn; sleep 60", timeout=1)
    assert result.timed_out and result.output == "stubborn\n"


def test_output_is_capped_to_head_and_tail(box):
    result = box.sandbox.exec("head -c 100000 /dev/zero | tr '\\0' a; echo; echo END", max_output=1000)
    total = 100000 + 1 + 4
    assert result.elided == total - 1000
    assert result.output == "a" * 500 + f"\n[... {total - 1000} bytes elided ...]\n" + "a" * 495 + "\nEND\n"


def test_a_background_child_holding_the_output_does_not_hang_exec(box):
    result = box.sandbox.exec("sleep 30 & echo $! > bg.pid; echo done", cwd=box.dir, timeout=60)
    assert result.exit_code == 0 and not result.timed_out
    assert result.output == "done\n" + BACKGROUND_NOTE
    box.run("kill $(cat bg.pid)")


# -- files -------------------------------------------------------------------------------------


def test_write_file_creates_parents_and_leaves_no_temp_files(box):
    box.sandbox.write_file(box.path("a", "b", "c.txt"), b"hello")
    assert box.sandbox.read_file(box.path("a", "b", "c.txt")) == b"hello"
    assert box.sandbox.listdir(box.path("a", "b")) == ["c.txt"]


def test_write_file_keeps_the_mode_and_new_files_follow_the_umask(box):
    box.run("printf old > run.sh && chmod 754 run.sh")
    box.sandbox.write_file(box.path("run.sh"), b"new")
    assert stat.S_IMODE(box.sandbox.stat(box.path("run.sh")).mode) == 0o754
    assert box.sandbox.read_file(box.path("run.sh")) == b"new"
    umask = int(box.run("umask"), 8)
    box.sandbox.write_file(box.path("fresh.txt"), b"x")
    assert stat.S_IMODE(box.sandbox.stat(box.path("fresh.txt")).mode) == 0o666 & ~umask
    box.sandbox.write_file(box.path("fresh.txt"), b"y", mode=0o600)
    assert stat.S_IMODE(box.sandbox.stat(box.path("fresh.txt")).mode) == 0o600


def test_write_file_replaces_atomically(box):
    # A new inode renamed over the old one: readers see the old file or the new, never half of one.
    box.run("printf old > f.txt")
    before = box.run("stat -c %i f.txt")
    box.sandbox.write_file(box.path("f.txt"), b"new")
    assert box.run("stat -c %i f.txt") != before
    assert box.sandbox.read_file(box.path("f.txt")) == b"new"


def test_read_and_write_refuse_a_symlink_anywhere_on_the_path(box):
    # Callers pass resolved paths; a symlink on one was swapped in after the check: never follow it.
    box.run(
        "mkdir out && printf old > out/f.txt && printf old > real.txt && ln -s real.txt link.txt && ln -s out dir"
    )
    for parts in (("link.txt",), ("dir", "f.txt"), ("dir", "new", "g.txt")):
        with pytest.raises(SandboxError, match="is a symlink, which is not followed"):
            box.sandbox.write_file(box.path(*parts), b"new")
    for parts in (("link.txt",), ("dir", "f.txt")):
        with pytest.raises(SandboxError, match="is a symlink, which is not followed"):
            box.sandbox.read_file(box.path(*parts))
    assert box.sandbox.stat(box.path("link.txt")).is_symlink
    assert box.run("cat real.txt out/f.txt; ls out") == "oldoldf.txt\n"


def test_read_file_over_max_bytes_is_file_too_large_with_the_size(box):
    box.run("head -c 5000 /dev/zero > big.bin")
    with pytest.raises(FileTooLarge) as caught:
        box.sandbox.read_file(box.path("big.bin"), max_bytes=4096)
    assert caught.value.size == 5000
    assert len(box.sandbox.read_file(box.path("big.bin"), max_bytes=5000)) == 5000


def test_read_file_is_binary_safe(box):
    data = bytes(range(256)) * 64
    box.sandbox.write_file(box.path("blob.bin"), data)
    assert box.sandbox.read_file(box.path("blob.bin")) == data
    box.run("printf 'a\\000b\\377' > made.bin")
    assert box.sandbox.read_file(box.path("made.bin")) == b"a\x00b\xff"


def test_read_errors_are_sandbox_errors(box):
    with pytest.raises(SandboxError, match="No such file"):
        box.sandbox.read_file(box.path("missing"))
    with pytest.raises(SandboxError, match="Is a directory"):
        box.sandbox.read_file(box.dir)


def test_read_file_refuses_a_fifo_instead_of_blocking(box):
    box.run("mkfifo pipe")  # no writer: a plain open() for reading would wait forever
    with pytest.raises(SandboxError, match="not a regular file"):
        box.sandbox.read_file(box.path("pipe"))


def test_stat_files_directories_symlinks_and_missing(box):
    box.run("printf 12345 > f.txt && mkdir d && ln -s d dlink && ln -s nowhere dangling")
    info = box.sandbox.stat(box.path("f.txt"))
    assert (info.size, info.is_dir, info.is_symlink, info.path) == (5, False, False, box.path("f.txt"))
    assert stat.S_ISREG(info.mode) and isinstance(info.mtime, float)
    assert box.sandbox.stat(box.path("d")).is_dir
    link = box.sandbox.stat(box.path("dlink"))
    assert link.is_symlink and link.is_dir and stat.S_ISLNK(link.mode)
    dangling = box.sandbox.stat(box.path("dangling"))
    assert dangling.is_symlink and not dangling.is_dir
    assert box.sandbox.stat(box.path("missing")) is None


def test_realpath_resolves_symlinks_and_dots(box):
    box.run("mkdir -p d/e && ln -s d/e short && ln -s short shorter")
    assert box.sandbox.realpath(box.path("shorter")) == box.path("d", "e")
    assert box.sandbox.realpath(box.path("d", "..", "d", ".", "e")) == box.path("d", "e")
    assert box.sandbox.realpath(box.path("missing", "..", "x")) == box.path("x")


def test_listdir_is_sorted_and_includes_hidden_entries(box):
    box.run("touch b a .hidden && mkdir c")
    assert box.sandbox.listdir(box.dir) == [".hidden", "a", "b", "c"]
    with pytest.raises(SandboxError):
        box.sandbox.listdir(box.path("missing"))
    with pytest.raises(SandboxError):
        box.sandbox.listdir(box.path("a"))


def test_walk_is_top_down_does_not_follow_links_and_honours_pruning(box):
    box.run(
        "mkdir -p src/pkg skip/deep && touch top.txt src/a.py src/pkg/b.py skip/deep/x && ln -s src srclink"
    )
    walked = {dirpath: (sorted(dirs), sorted(files)) for dirpath, dirs, files in box.sandbox.walk(box.dir)}
    assert walked == {
        box.dir: (["skip", "src", "srclink"], ["top.txt"]),
        box.path("src"): (["pkg"], ["a.py"]),
        box.path("src", "pkg"): ([], ["b.py"]),
        box.path("skip"): (["deep"], []),
        box.path("skip", "deep"): ([], ["x"]),
    }
    visited = []
    for dirpath, dirs, _ in box.sandbox.walk(box.dir):
        visited.append(dirpath)
        if "skip" in dirs:
            dirs.remove("skip")
    assert box.path("skip") not in visited and box.path("skip", "deep") not in visited
    assert box.path("src", "pkg") in visited
    assert list(box.sandbox.walk(box.path("missing"))) == []


def test_remove_files_links_and_empty_directories_only(box):
    box.run("touch f && mkdir empty full && touch full/x && ln -s full link")
    box.sandbox.remove(box.path("f"))
    box.sandbox.remove(box.path("empty"))
    box.sandbox.remove(box.path("link"))  # the link, not what it points to
    assert box.sandbox.listdir(box.dir) == ["full"]
    assert box.sandbox.listdir(box.path("full")) == ["x"]
    with pytest.raises(SandboxError):
        box.sandbox.remove(box.path("full"))
    with pytest.raises(SandboxError):
        box.sandbox.remove(box.path("missing"))
