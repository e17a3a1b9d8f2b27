"""The process that runs a session's commands inside the confinement: `python -I -m sandbox.confinement.helper`.

It answers sandbox/docker_helper.py's protocol on stdin/stdout (the host end is ConfinedSandbox),
so commands are spawned, capped, timed out and killed exactly as in a Docker sandbox.

- `bwrap`: started inside bwrap, it only serves; the PID namespace around it is the session.
- `landlock WORKSPACE TMPDIR NETWORK LIFELINE_FD`: forks in two.
  The parent, the *reaper*, stays unrestricted and becomes a child subreaper, so every process
  the session starts, however it detaches (`&`, setsid, nohup, double forks), stays its
  descendant. When the helper exits, or the agent goes away (the lifeline pipe, whose write end
  only the agent holds, reads EOF), it kills all of them and exits.
  The child, the *helper*, restricts itself to a Landlock domain that only scopes signals and
  abstract unix sockets to the domain (ABI 6+) and, for network `none`, denies TCP bind and
  connect (ABI 4+): commands can signal each other (bash_kill works) but not the reaper, the agent
  or anything else on the machine. Commands are started by threads that add a nested domain with
  the file-system rules of `CommandRules`, built from the workspace root's entries as they are
  when a command starts (so a directory made at the root by one command is writable for the
  next), drop every capability and refuse unix stream sockets (seccomp.py): see `serve_confined`.

Both set the helper non-dumpable: a command running as the same user cannot open
/proc/HELPER/fd/0 to keep the helper's channel open after the agent is gone.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import stat
import sys
import threading
import time
from typing import Any

from sandbox import docker_helper
from sandbox.confinement import landlock, seccomp

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
KILL_ROUNDS = 1000  # a fork bomb refills the tree between two sweeps: sweep until it is empty
# Device files every command may write (and use terminal ioctls on, so isatty() answers normally).
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl({option}): {os.strerror(code)}")


# -- Landlock: the rules of one command --------------------------------------------------------


class CommandRules:
    """The file-system ruleset of a command: read and execute everywhere; write only in the
    workspace (not its .git) and the private temp dir.

    Landlock rules grant, they cannot deny a sub-path, and whatever the workspace root itself is
    granted holds inside .git too. So each top-level entry but .git gets every right, and the root
    only MAKE_DIR: `mkdir build` works (and build/ is writable from the next command on), but no
    shell command can write, create, delete or rename a file directly at the root. (MAKE_REG there
    would let a command hard-link a sample hook into .git/hooks/ and leave an empty file behind on
    every refused write; MAKE_SYM would let it plant a hook that points into the workspace.)

    Rules hold inodes, so a ruleset is built for one listing of the root's entries (names and inode
    numbers), and reused while the listing stays the same.
    """

    def __init__(self, workspace: str, tmpdir: str, abi: int):
        self.workspace, self.tmpdir, self.abi = workspace, tmpdir, abi
        self._built_for: frozenset[tuple[str, int]] | None = None
        self._ruleset: int | None = None

    def listing(self) -> frozenset[tuple[str, int]]:
        """The root's entries as (name, inode number): what the rules depend on."""
        with os.scandir(self.workspace) as entries:
            return frozenset((entry.name, entry.inode()) for entry in entries)

    def ruleset_for(self, listing: frozenset[tuple[str, int]]) -> int:
        if listing != self._built_for:
            if self._ruleset is not None:
                os.close(self._ruleset)
            self._ruleset = self._built_for = None  # a failed build must not leave the old one in use
            self._ruleset = self._build(sorted(name for name, _ in listing if name != ".git"))
            self._built_for = listing
        assert self._ruleset is not None
        return self._ruleset

    def _build(self, names: list[str]) -> int:
        every = landlock.fs_rights(self.abi)
        ruleset = landlock.create_ruleset(self.abi, fs=every)
        landlock.allow_path(ruleset, "/", landlock.READ_EXECUTE)
        landlock.allow_path(ruleset, self.workspace, landlock.READ_EXECUTE | landlock.MAKE_DIR)
        for name in names:
            _allow_entry(ruleset, self.workspace, name, every)
        landlock.allow_path(ruleset, self.tmpdir, every)
        for device in WRITABLE_DEVICES:
            landlock.allow_path(
                ruleset, device, landlock.READ_FILE | landlock.WRITE_FILE | landlock.IOCTL_DEV
            )
        landlock.allow_path(ruleset, "/dev/shm", every)  # POSIX semaphores, shared memory (multiprocessing)
        return ruleset


def _allow_entry(ruleset: int, workspace: str, name: str, rights: int) -> None:
    try:
        fd = os.open(os.path.join(workspace, name), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # gone since the listing
    try:
        info = os.fstat(fd)  # of what was opened: a name swapped for a symlink meanwhile is not followed
        if stat.S_ISDIR(info.st_mode):
            landlock.allow_beneath(ruleset, fd, rights)
        elif stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            # A rule belongs to the inode: one on a second name of .git/config would open .git/config.
            landlock.allow_beneath(ruleset, fd, rights & landlock.FILE_RIGHTS)
        # Symlinks (their target decides), hard-linked files, sockets and devices get nothing.
    finally:
        os.close(fd)


def serve_confined(rules: CommandRules) -> None:
    """docker_helper.main's loop, served by threads restricted to the workspace's current rules.

    Capabilities, no_new_privs and a Landlock domain belong to a thread, and a command inherits
    those of the thread that starts it. One thread serves for as long as the root's listing stays
    what its rules were built for; an `exec` that finds it changed is handed, with the channel, to
    a new thread restricted to new rules (a thread cannot widen its own), and the old thread ends.
    (A thread per command would cost two thread wake-ups per call: about 1.5 ms on a loaded
    machine, as much again as the rest of a `true`.)
    """
    pending: tuple[dict[str, Any], bytes] | None = None
    while True:
        outcome: dict[str, Any] = {}
        server = threading.Thread(target=_serve_restricted, args=(rules, pending, outcome), name="confined")
        server.start()
        server.join()
        if "error" in outcome:
            raise outcome["error"]
        pending = outcome.get("handed_over")
        if pending is None:
            return  # the host closed the channel


def _serve_restricted(
    rules: CommandRules, pending: tuple[dict[str, Any], bytes] | None, outcome: dict[str, Any]
) -> None:
    try:
        listing = rules.listing()
        ruleset = rules.ruleset_for(listing)
        landlock.drop_capabilities()
        landlock.restrict_self(ruleset)
        if seccomp.supported():
            seccomp.deny_unix_stream_sockets()
        while True:
            header, payload = pending or docker_helper.read_message()
            pending = None
            if header is None:
                return
            if header["op"] == "cancel":
                continue  # arrived after its command had finished
            if header["op"] == "exec" and rules.listing() != listing:
                outcome["handed_over"] = (header, payload)
                return
            docker_helper.answer(header, payload)
    except SystemExit:
        return  # docker_helper's way out when the host goes away during a command
    except BaseException as e:  # noqa: BLE001 - raised again in the helper's main thread
        outcome["error"] = e


def restrict_helper(abi: int, network: str) -> None:
    """The helper's own domain: signals and abstract sockets stay inside it; no TCP for `none`."""
    net = landlock.NET_BIND_TCP | landlock.NET_CONNECT_TCP if network == "none" else 0
    scoped = landlock.SCOPE_SIGNAL | landlock.SCOPE_ABSTRACT_UNIX_SOCKET if abi >= 6 else 0
    if net or scoped:
        ruleset = landlock.create_ruleset(abi, net=net, scoped=scoped)
        landlock.restrict_self(ruleset)
        os.close(ruleset)


# -- Landlock: the reaper ----------------------------------------------------------------------


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _descendants(ancestor: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # processes come and go
        children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [ancestor]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants() -> None:
    for _ in range(KILL_ROUNDS):
        pids = _descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap()
        time.sleep(0.001)


def run_reaper(helper_pid: int, lifeline: int) -> None:
    # The channel is the helper's alone: the agent must see EOF when the helper dies.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    helper = os.pidfd_open(helper_pid)
    while True:
        ready, _, _ = select.select([lifeline, helper], [], [], 1.0)
        _reap()  # orphans re-parented to us
        if ready:
            break
    kill_descendants()


def run_landlock(workspace: str, tmpdir: str, network: str, lifeline: int) -> None:
    abi = landlock.abi_version()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    helper_pid = os.fork()
    if helper_pid:
        run_reaper(helper_pid, lifeline)
        return
    status = 1
    try:
        os.close(lifeline)
        _prctl(PR_SET_DUMPABLE, 0)
        restrict_helper(abi, network)
        serve_confined(CommandRules(workspace, tmpdir, abi))
        status = 0
    except BaseException as e:  # noqa: BLE001 - reported on stderr, which the host shows
        print(f"confinement helper: {e!r}", file=sys.stderr)
    finally:
        os._exit(status)


def main(argv: list[str]) -> None:
    if argv[:1] == ["bwrap"]:
        _prctl(PR_SET_DUMPABLE, 0)
        docker_helper.main()
    elif argv[:1] == ["landlock"] and len(argv) == 5:
        run_landlock(argv[1], argv[2], argv[3], int(argv[4]))
    else:
        sys.exit(
            "usage: python -m sandbox.confinement.helper bwrap | landlock WORKSPACE TMPDIR NETWORK LIFELINE_FD"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
