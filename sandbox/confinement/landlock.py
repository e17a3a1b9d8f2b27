"""Landlock (Linux 5.13+) through ctypes: the kernel's ABI version, rulesets, restricting a process.

Only what the confinement needs: rules "beneath a path" for the file system, TCP bind/connect for
the network (ABI 4+), and scopes (ABI 6+: signals and abstract unix sockets stay inside the
domain). The syscall numbers are the same on every architecture. Also here: dropping every
capability, because Landlock limits paths, not what root may do without them (mount is refused to
a Landlock domain, but reboot, module loading, sethostname are not).

Stdlib only: the confinement helper imports it in a fresh `python -I`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

# File system rights (ABI 1 has the first 13; REFER came with 2, TRUNCATE 3, IOCTL_DEV 5).
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13
TRUNCATE = 1 << 14
IOCTL_DEV = 1 << 15
# The rights that mean something on a file that is not a directory (the kernel refuses others there).
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ_EXECUTE = EXECUTE | READ_FILE | READ_DIR

NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
LAST_CAPABILITY = 63  # higher than any the kernel knows; unknown ones answer EINVAL

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class LandlockError(OSError):
    pass


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise LandlockError(code, f"{what}: {os.strerror(code)}")
    return result


def abi_version() -> int:
    """The Landlock ABI the kernel offers; 0 when it has none (too old, or Landlock is not enabled)."""
    result = _libc.syscall(
        SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION)
    )
    if result < 0:
        if ctypes.get_errno() in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        _check(result, "landlock_create_ruleset (version)")
    return int(result)


def fs_rights(abi: int) -> int:
    """Every file system right the kernel's ABI knows."""
    if abi >= 5:
        return (IOCTL_DEV << 1) - 1
    if abi >= 3:
        return (TRUNCATE << 1) - 1
    if abi >= 2:
        return (REFER << 1) - 1
    return (MAKE_SYM << 1) - 1


def create_ruleset(abi: int, *, fs: int = 0, net: int = 0, scoped: int = 0) -> int:
    """A ruleset fd handling these rights (what it handles and allows nowhere is denied)."""
    attr = struct.pack("=QQQ", fs, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # an older kernel refuses fields it does not know
    buffer = ctypes.create_string_buffer(attr[:size], size)
    fd = _libc.syscall(SYS_CREATE_RULESET, buffer, ctypes.c_size_t(size), ctypes.c_uint32(0))
    return _check(fd, "landlock_create_ruleset")


def allow_beneath(ruleset: int, path_fd: int, rights: int) -> None:
    """Allows `rights` on the file `path_fd` is open on, or everything beneath that directory."""
    attr = struct.pack("=Qi", rights, path_fd)  # struct landlock_path_beneath_attr is packed
    buffer = ctypes.create_string_buffer(attr, len(attr))
    _check(
        _libc.syscall(
            SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH), buffer, ctypes.c_uint32(0)
        ),
        "landlock_add_rule",
    )


def allow_path(ruleset: int, path: str, rights: int) -> bool:
    """allow_beneath by path (symlinks followed); False when there is nothing at `path`."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        allow_beneath(ruleset, fd, rights if _is_directory(fd) else rights & FILE_RIGHTS)
    finally:
        os.close(fd)
    return True


def _is_directory(fd: int) -> bool:
    import stat

    return stat.S_ISDIR(os.fstat(fd).st_mode)


def restrict_self(ruleset: int) -> None:
    """Puts the calling thread (and every process it starts from now on) in the ruleset's domain."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    _check(
        _libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)), "landlock_restrict_self"
    )


def drop_capabilities() -> None:
    """No capability now or after any exec (root included): bounding, ambient, then the sets themselves."""
    for capability in range(LAST_CAPABILITY + 1):
        if _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) < 0:
            code = ctypes.get_errno()
            if code in (errno.EINVAL, errno.EPERM):
                break  # past the last capability the kernel has; or no CAP_SETPCAP, so none to drop
            _check(-1, "prctl(PR_CAPBSET_DROP)")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = struct.pack("=Ii", LINUX_CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two {effective, permitted, inheritable} u32 triples, all empty
    _check(
        _libc.capset(ctypes.create_string_buffer(header, 8), ctypes.create_string_buffer(data, 24)), "capset"
    )
