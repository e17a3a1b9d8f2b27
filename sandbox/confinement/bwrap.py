"""The bubblewrap command line that confines a session's commands.

One bwrap per session: its PID namespace holds the helper that runs every command and everything
they start, and dies with it (when the helper exits, bwrap's init exits and the kernel kills the
rest). Inside, the whole file system is read-only except the workspace and a private /tmp; the
workspace's .git is read-only again; /run (system sockets: Docker, D-Bus, systemd) is hidden.
"""

from __future__ import annotations

import os

BWRAP = "bwrap"
# Directories replaced by empty tmpfs inside: /tmp is the session's private temp dir; /run holds the
# machine's service sockets (docker.sock, D-Bus, systemd), which a read-only mount does not stop
# anyone from connecting to.
PRIVATE_DIRECTORIES = ("/tmp", "/run")
TMPDIR = "/tmp"


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _still_needed(workspace: str, env: dict[str, str], keep: list[str]) -> list[str]:
    """What the private directories would hide but is needed, to be shown again read-only: `keep`,
    HOME and PATH entries (a test's fake HOME or bin/ under /tmp), and the resolver's configuration
    (systemd-resolved keeps it under /run)."""
    home, path = env.get("HOME", ""), env.get("PATH", "")
    wanted = [*keep, home, *path.split(":"), os.path.realpath("/etc/resolv.conf")]
    needed = []
    for path in wanted:
        if not os.path.isabs(path) or _within(path, workspace) or path in needed:
            continue
        if any(_within(path, hidden) for hidden in PRIVATE_DIRECTORIES) and os.path.exists(path):
            needed.append(path)
    return needed


def bwrap_arguments(
    workspace: str, *, env: dict[str, str], network: str, keep: list[str] | None = None
) -> list[str]:
    """bwrap's options, up to (not including) `--` and the command; `workspace` is a real path,
    `env` the environment commands will start with (its HOME and PATH stay visible, as do `keep`)."""
    args = [
        BWRAP,
        "--ro-bind", "/", "/",
        "--dev", "/dev",  # a private /dev: null, zero, random, tty, its own pts and shm
        "--proc", "/proc",  # this namespace's processes only
        # Root without capabilities may still write some sysctls (kernel.core_pattern runs a program
        # as root on the next crash): the new /proc is writable, so its sys/ is made read-only again.
        "--ro-bind", "/proc/sys", "/proc/sys",
    ]  # fmt: skip
    for directory in PRIVATE_DIRECTORIES:
        args += ["--tmpfs", directory]
    for path in _still_needed(workspace, env, keep or []):
        args += ["--ro-bind", path, path]
    args += ["--bind", workspace, workspace]
    git = os.path.join(workspace, ".git")
    if os.path.lexists(git):
        # The mount point cannot be removed or renamed, and nothing beneath it written.
        args += ["--ro-bind", git, git]
    args += [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",  # no controlling terminal to push keystrokes into (TIOCSTI)
        "--cap-drop", "ALL",  # as root, bwrap would otherwise keep every capability (remount rw)
        "--chdir", workspace,
    ]  # fmt: skip
    if network == "none":
        args.append("--unshare-net")  # only a loopback device of its own
    return args
