"""A seccomp filter for the Landlock mode: no unix stream sockets, no io_uring.

Landlock (up to ABI 7) does not control connecting to a named unix socket, and a read-only file
system does not either: a command could talk to /run/docker.sock and start a container that mounts
the host (root and the docker group), or to D-Bus. bwrap hides /run and /tmp; Landlock cannot hide
anything, so in its mode `socket(AF_UNIX, SOCK_STREAM or SOCK_SEQPACKET)` fails with EACCES.
`socketpair` (pipes between processes) and datagram sockets (syslog) still work. io_uring is
refused too, because it can open sockets without the socket system call. Other architectures than
the native one (32-bit programs on x86-64) get no system calls at all.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
# BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
AND_K = 0x54
RET_K = 0x06
AF_UNIX, SOCK_DGRAM, SOCK_TYPE_MASK = 1, 2, 0xF
IO_URING_SYSCALLS = (425, 426, 427)  # setup, enter, register: the same numbers on every architecture
X32_SYSCALL_BIT = 0x40000000
# machine -> (AUDIT_ARCH_*, the socket syscall's number)
ARCHITECTURES = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}
_libc = ctypes.CDLL(None, use_errno=True)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def supported() -> bool:
    return platform.machine() in ARCHITECTURES


def _filter(audit_arch: int, socket_nr: int) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) instructions; jumps count instructions skipped."""
    refuse = SECCOMP_RET_ERRNO | errno.EACCES
    program = [
        (LD_W_ABS, 0, 0, 4),  # arch
        (JEQ_K, 1, 0, audit_arch),
        (RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
        (LD_W_ABS, 0, 0, 0),  # syscall number
        (JGE_K, 0, 1, X32_SYSCALL_BIT),
        (RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
    ]
    for number in IO_URING_SYSCALLS:
        program += [(JEQ_K, 0, 1, number), (RET_K, 0, 0, refuse)]
    program += [
        (JEQ_K, 1, 0, socket_nr),
        (RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (LD_W_ABS, 0, 0, 16),  # args[0], the low half: the address family
        (JEQ_K, 1, 0, AF_UNIX),
        (RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (LD_W_ABS, 0, 0, 24),  # args[1]: the type, with SOCK_NONBLOCK / SOCK_CLOEXEC flags
        (AND_K, 0, 0, SOCK_TYPE_MASK),
        (JEQ_K, 0, 1, SOCK_DGRAM),
        (RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (RET_K, 0, 0, refuse),
    ]
    return program


def deny_unix_stream_sockets() -> None:
    """Installs the filter on the calling thread (no_new_privs must be set: restrict_self does)."""
    audit_arch, socket_nr = ARCHITECTURES[platform.machine()]
    code = b"".join(struct.pack("=HBBI", *instruction) for instruction in _filter(audit_arch, socket_nr))
    buffer = ctypes.create_string_buffer(code, len(code))
    program = SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"prctl(PR_SET_SECCOMP): {os.strerror(number)}")
