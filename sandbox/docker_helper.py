"""The program a DockerSandbox runs inside its container: file and process requests over stdin/stdout.

One `docker exec` per operation costs tens of milliseconds and cannot kill anything once a fork
bomb has used up the pids limit; this long-lived helper answers in about a millisecond, spawns
commands the way LocalSandbox does (own session, kill the group on timeout) and can always kill,
because killing needs no new process. Its file operations are the same os calls LocalSandbox
makes, as the sandbox's user, so both sandboxes fail and succeed alike.

Standalone on purpose: its source text is sent to `python3 -c` in the container, so it imports
nothing from this project and sticks to Python 3.7 (the oldest python3 in a supported image).

Framing, both ways: 4-byte big-endian header length, JSON header, then `size` raw payload bytes.
"""

import collections
import errno
import json
import os
import select
import signal
import stat
import struct
import subprocess
import sys
import time

KILL_GRACE_SECONDS = 2.0  # after TERM, before KILL (as in LocalSandbox)
DRAIN_SECONDS = 1.0  # after the shell exits, how long background children may still write
CHUNK = 65536

STDIN_FD = 0
STDOUT_FD = 1


class RequestError(Exception):
    """An operation failed; the message goes back to the host as a SandboxError."""


def read_exactly(size):
    data = bytearray()
    while len(data) < size:
        chunk = os.read(STDIN_FD, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def read_message():
    prefix = read_exactly(4)
    if prefix is None:
        return None, b""
    header = json.loads(read_exactly(struct.unpack(">I", prefix)[0]).decode("utf-8"))
    payload = read_exactly(header.get("size", 0)) if header.get("size") else b""
    return header, payload


def send(header, payload=b""):
    header = dict(header, size=len(payload))
    encoded = json.dumps(header).encode("utf-8")
    data = struct.pack(">I", len(encoded)) + encoded + payload
    view = memoryview(data)
    while view:
        written = os.write(STDOUT_FD, view)
        view = view[written:]


def os_error(action, path, error):
    return RequestError(f"cannot {action} {path}: {error.strerror or error}")


# -- processes ---------------------------------------------------------------------------------


def oom_kill_count():
    """The container's OOM-kill counter (cgroup v2 or v1); None when the kernel hides it."""
    for path, key in (
        ("/sys/fs/cgroup/memory.events", "oom_kill"),
        ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
    ):
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class CappedForwarder:
    """Sends the head of a command's output as it comes and keeps only its tail for the end.

    The same head/tail split as the host's CappedOutput (first limit//2 bytes, last limit - that),
    so the host gets an identical result while a runaway command's middle never crosses the wire.
    """

    def __init__(self, limit):
        self.head_left = limit // 2
        self.tail_limit = limit - limit // 2
        self.tail = collections.deque()
        self.tail_size = 0
        self.elided = 0

    def add(self, chunk):
        if self.head_left > 0:
            head = chunk[: self.head_left]
            send({"kind": "output"}, head)
            self.head_left -= len(head)
            chunk = chunk[len(head) :]
        if not chunk:
            return
        self.tail.append(chunk)
        self.tail_size += len(chunk)
        while self.tail and self.tail_size - len(self.tail[0]) >= self.tail_limit:
            dropped = self.tail.popleft()
            self.tail_size -= len(dropped)
            self.elided += len(dropped)

    def finish(self):
        tail = b"".join(self.tail)
        excess = max(0, len(tail) - self.tail_limit)
        self.elided += excess
        if tail[excess:]:
            send({"kind": "output"}, tail[excess:])


def run_command(request):
    cwd = request.get("cwd") or os.getcwd()
    env = dict(os.environ)
    env.update(request.get("env") or {})
    oom_before = oom_kill_count()
    try:
        proc = subprocess.Popen(
            ["bash", "-c", request["command"]],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills all of it
        )
    except OSError as e:
        raise RequestError(f"cannot run bash in {cwd}: {e}") from e
    try:
        output = CappedForwarder(request.get("max_output", 1_000_000))
        timed_out, cancelled = pump(proc, output, request.get("timeout"))
        output.finish()
    finally:
        proc.stdout.close()
    proc.wait()
    exit_code = None if (timed_out or cancelled) else proc.returncode
    if exit_code is not None and exit_code < 0:
        exit_code = 128 - exit_code  # killed by a signal: report it the way bash does
    oom_after = oom_kill_count()
    oom_killed = None if oom_before is None or oom_after is None else oom_after > oom_before
    return {
        "exit_code": exit_code,
        "timed_out": timed_out,
        "oom_killed": oom_killed,
        "cancelled": cancelled,
        "elided": output.elided,
    }


def stop_group(proc):
    kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    # Children that ignored TERM (or outlived the shell) still hold the group; a fork bomb
    # refills it between two kills, so repeat until it is empty.
    for _ in range(100):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            break
        proc.poll()  # reap the shell: a zombie still counts as a member of its group
        time.sleep(0.01)


def pump(proc, output, timeout):
    """Forwards output until EOF, killing the group at the timeout or when the host cancels."""
    fd = proc.stdout.fileno()
    kill_at = None if timeout is None else time.monotonic() + timeout
    stop_reading_at = None  # set once the shell has exited (or was killed)
    timed_out = cancelled = False
    while True:
        now = time.monotonic()
        if stop_reading_at is None and proc.poll() is not None:
            stop_reading_at = now + DRAIN_SECONDS
        if stop_reading_at is not None and now >= stop_reading_at:
            # A background child still holds the pipe open; stop rather than wait on it.
            output.add(b"\n[background processes still hold the output; stopped reading]\n")
            return timed_out, cancelled
        if kill_at is not None and now >= kill_at and not (timed_out or cancelled):
            timed_out = True
            stop_group(proc)
            continue
        stopping = timed_out or cancelled
        ready, _, _ = select.select([fd] if stopping else [fd, STDIN_FD], [], [], 0.1)
        if STDIN_FD in ready:
            # The host only writes during a command to cancel it (or it went away: EOF).
            header, _ = read_message()
            cancelled = True
            stop_group(proc)
            if header is None:
                sys.exit(0)
            continue
        if fd in ready:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                return timed_out, cancelled
            output.add(chunk)


# -- files -------------------------------------------------------------------------------------


def not_a_regular_file(mode):
    """Why read_file refuses a file of this mode: a FIFO, socket or device can block or never end."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return os.strerror(errno.EISDIR)
    return "not a regular file (a FIFO, socket or device)"


class FileTooLarge(RequestError):
    """read_file's max_bytes was exceeded; `size` is what fstat says the opened file holds."""

    def __init__(self, message, size):
        RequestError.__init__(self, message)
        self.size = size


# read_file and write_file walk their path from "/" one component at a time, each opened relative
# to the directory before it with O_NOFOLLOW: a symlink anywhere on the path is refused, never
# followed. Callers resolve symlinks first (realpath) and check where the result lies; a symlink
# met here means the tree changed after that check (a directory swapped for a link to somewhere
# else), and the operation fails instead of following it there.


def path_parts(path):
    if "\0" in path:
        raise RequestError(f"cannot use {path!r}: a path cannot hold a NUL character")
    normal = os.path.normpath(path)
    if not os.path.isabs(normal):
        raise RequestError(f"cannot use {path}: the sandbox needs an absolute path")
    return [part for part in normal.split("/") if part]


def symlink_error(action, path, name):
    return RequestError(
        f"cannot {action} {path}: {name!r} on the path is a symlink, which is not followed here "
        "(callers pass resolved paths: was it swapped in after the path was checked?)"
    )


def open_directory(action, path, parts, create):
    """An fd on the directory `parts` name, opened without following any symlink."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in parts:
            next_fd = enter_directory(fd, name, action, path, create)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def enter_directory(fd, name, action, path, create):
    try:
        return open_subdirectory(fd, name, action, path)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o777, dir_fd=fd)
    except FileExistsError:
        pass  # made by someone else meanwhile: open whatever is there now, by the same rules
    return open_subdirectory(fd, name, action, path)


def open_subdirectory(fd, name, action, path):
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
    except OSError as e:
        # O_NOFOLLOW with O_DIRECTORY reports a symlink as ENOTDIR. Only a file there now makes
        # that a plain "Not a directory"; a link, or a directory again, means it is being swapped.
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and not is_file_at(fd, name):
            raise symlink_error(action, path, name) from e
        raise


def is_file_at(dir_fd, name):
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return False
    return not (stat.S_ISLNK(mode) or stat.S_ISDIR(mode))


def read_file(path, max_bytes=None):
    """The file's bytes; refuses symlinks on the path, non-regular files and files over max_bytes."""
    parts = path_parts(path)
    try:
        directory = open_directory("read", path, parts[:-1], create=False)
        try:
            # O_NONBLOCK: opening a FIFO that has no writer would otherwise wait forever.
            fd = os.open(
                parts[-1] if parts else ".", os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=directory
            )
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise symlink_error("read", path, parts[-1]) from e
            raise
        finally:
            os.close(directory)
    except OSError as e:
        raise os_error("read", path, e) from e
    try:
        check_opened_file(fd, path, max_bytes)
    except RequestError:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as e:
            raise os_error("read", path, e) from e
    if max_bytes is not None and len(data) > max_bytes:  # it grew after the fstat
        raise too_large(path, len(data), max_bytes)
    return data


def check_opened_file(fd, path, max_bytes):
    info = os.fstat(fd)  # of the file opened, whatever a stat of the path said before
    problem = not_a_regular_file(info.st_mode)
    if problem:
        raise RequestError(f"cannot read {path}: {problem}")
    if max_bytes is not None and info.st_size > max_bytes:
        raise too_large(path, info.st_size, max_bytes)


def too_large(path, size, max_bytes):
    return FileTooLarge(f"cannot read {path}: it holds {size} bytes, more than {max_bytes}", size)


def default_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_file(path, data, mode):
    """Atomic write (temp file, fsync, rename in the same directory); creates missing parents.

    The file keeps its mode unless `mode` is given. Every step works on the directory fd, so a
    component swapped for a symlink meanwhile is refused (see above) and nothing lands elsewhere.
    """
    parts = path_parts(path)
    if not parts:
        raise RequestError(f"cannot write {path}: it is a directory")
    name = parts[-1]
    try:
        directory = open_directory("write", path, parts[:-1], create=True)
    except OSError as e:
        raise os_error("write", path, e) from e
    try:
        write_in_directory(directory, name, path, data, mode)
    finally:
        os.close(directory)


def write_in_directory(directory, name, path, data, mode):
    try:
        existing = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    except OSError as e:
        raise os_error("write", path, e) from e
    if existing is not None:
        if stat.S_ISLNK(existing.st_mode):
            raise symlink_error("write", path, name)
        if stat.S_ISDIR(existing.st_mode):
            raise RequestError(f"cannot write {path}: {os.strerror(errno.EISDIR)}")
        if mode is None:
            mode = stat.S_IMODE(existing.st_mode)
    if mode is None:
        mode = default_mode()
    temp_name, fd = create_temp(directory, name, path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        # Atomic: readers see the old or the new file, never half. rename() replaces a symlink
        # that appeared at `name` meanwhile; it never writes through one.
        os.replace(temp_name, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException as e:  # Ctrl-C included: never leave the temp file behind
        try:
            os.unlink(temp_name, dir_fd=directory)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise os_error("write", path, e) from e
        raise
    try:
        os.fsync(directory)
    except OSError:
        pass


def create_temp(directory, name, path):
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    for _ in range(100):
        temp_name = f".{name[:100]}.{os.urandom(4).hex()}.tmp"  # name[:100]: stay under NAME_MAX
        try:
            return temp_name, os.open(temp_name, flags, 0o600, dir_fd=directory)
        except FileExistsError:
            continue
        except OSError as e:
            raise os_error("write", path, e) from e
    raise RequestError(f"cannot write {path}: no free temporary name")


def file_info(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise os_error("stat", path, e) from e
    is_symlink = stat.S_ISLNK(st.st_mode)
    is_dir = os.path.isdir(path) if is_symlink else stat.S_ISDIR(st.st_mode)
    return {
        "path": path,
        "size": st.st_size,
        "mode": st.st_mode,
        "mtime": st.st_mtime,
        "is_dir": is_dir,
        "is_symlink": is_symlink,
    }


def realpath(path):
    if "\0" in path:
        raise RequestError(f"cannot resolve {path!r}: a path cannot hold a NUL character")
    try:
        return os.path.realpath(path)
    except OSError as e:  # EINVAL: a symlink swapped for a directory while being resolved
        raise RequestError(
            f"cannot resolve {path}: {e.strerror or e} (did the path change while it was resolved?)"
        ) from e


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        raise os_error("list", path, e) from e


def remove(path):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError as e:
        raise os_error("remove", path, e) from e


def hello():
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "python": list(sys.version_info[:3]),
        "root_uid": os.stat(os.getcwd()).st_uid,  # the helper starts in the sandbox root
    }


def handle(header, payload):
    """Answers one request; returns (reply header, reply payload)."""
    op = header["op"]
    if op == "exec":
        return dict(run_command(header), kind="exit"), b""
    if op == "read":
        return {}, read_file(header["path"], header.get("max_bytes"))
    if op == "write":
        write_file(header["path"], payload, header.get("mode"))
        return {}, b""
    if op == "stat":
        return {"info": file_info(header["path"])}, b""
    if op == "realpath":
        return {"path": realpath(header["path"])}, b""
    if op == "listdir":
        return {"names": listdir(header["path"])}, b""
    if op == "walk":
        # The whole walk in one answer: the host replays it (and honours pruning).
        return {"entries": list(os.walk(header["path"], topdown=True, followlinks=False))}, b""
    if op == "remove":
        remove(header["path"])
        return {}, b""
    if op == "hello":
        return hello(), b""
    raise RequestError(f"unknown sandbox operation {op!r}")


def answer(header, payload):
    """Handles one request and sends its reply; a failure becomes an error reply."""
    try:
        reply, data = handle(header, payload)
        send(dict(reply, ok=True), data)
    except FileTooLarge as e:
        send({"ok": False, "error": str(e), "too_large": e.size})
    except RequestError as e:
        send({"ok": False, "error": str(e)})
    except Exception as e:  # a bug here must not kill the channel: report it instead
        send({"ok": False, "error": f"sandbox helper failed on {header.get('op')}: {e!r}"})


def main():
    while True:
        header, payload = read_message()
        if header is None:
            return  # the host closed the channel
        if header["op"] == "cancel":
            continue  # arrived after its command had finished: nothing to cancel, no answer
        answer(header, payload)


if __name__ == "__main__":
    main()
