"""DockerSandbox: the Sandbox protocol inside a Docker container with no network and hard limits.

The container's main process is `cat` reading an attached stdin: the "lifeline". When the process
that created the sandbox dies, however it dies, the kernel closes that connection, `cat` sees EOF,
the container stops and Docker removes it (auto-remove). Crashed runs therefore leave nothing;
`mmx-agent sandbox prune` catches the rest (a crash between create and start).

Every operation goes through one long-lived helper process in the container (docker_helper.py),
started with `docker exec` as the sandbox user; see there for why.
"""

from __future__ import annotations

import atexit
import io
import math
import os
import posixpath
import re
import tarfile
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import docker.types

from sandbox import docker_helper, labels
from sandbox.base import ExecResult, FileInfo, FileTooLarge, OutputRedactor, SandboxError
from sandbox.docker_channel import ChannelClosed, ChannelTimeout, HelperChannel
from sandbox.engine import connect, require_image
from sandbox.local import CappedOutput

DEFAULT_ROOT = "/workspace"
HELPER_SOURCE = Path(docker_helper.__file__).read_text()
HELPER_START_SECONDS = 60.0  # python3 start-up on a loaded machine, generously
# How long past its own timeout a command may run before the host stops waiting for the helper:
# the helper's TERM grace and output drain, plus slack for a loaded machine.
HOST_SLACK_SECONDS = docker_helper.KILL_GRACE_SECONDS + docker_helper.DRAIN_SECONDS + 30.0
REMOVAL_WAIT_SECONDS = 30.0


DEFAULT_DISK, DEFAULT_FILES = "2g", 250_000  # of each tmpfs, when a sandbox has a disk quota
SANDBOX_USER = "65534:65534"  # nobody:nogroup in Debian images: unprivileged, with a passwd entry git accepts
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str | int) -> int:
    """Bytes in a Docker size ("512m", "2g", "1048576"); ValueError unless it is a size above 0."""
    match = SIZE.fullmatch(str(text).strip())
    size = int(float(match[1]) * SIZE_UNITS[match[2].lower()]) if match else 0
    if size <= 0:
        raise ValueError("must be a size above 0, like 512m or 2g")
    return size


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox; None lifts a limit. 0 or less is refused (ValueError): Docker
    would read 0 as "no limit", so a typo must not silently remove one.

    `disk` and `files` give the sandbox a disk quota: the workspace (unless it is a bind mount) and
    /tmp are each a tmpfs of `disk` bytes and at most `files` files and directories, and the rest of
    the container is read-only. tmpfs lives in memory, charged to the container, so the memory
    limit is raised by those sizes: a full disk fails writes with ENOSPC and never OOM-kills a
    process. `disk=None` keeps Docker's writable container layer (no quota), which image builds and
    eval task containers need (their repository lives in the image); WORKSPACE_LIMITS has a quota.
    """

    cpus: float | None = 2.0
    memory: str | None = "2g"  # Docker units: 512m, 2g, ...
    pids: int | None = 512
    disk: str | None = None  # Docker units
    files: int | None = DEFAULT_FILES

    def __post_init__(self) -> None:
        for name, kinds in (("cpus", (int, float)), ("pids", (int,)), ("files", (int,))):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, kinds) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a number above 0 (got {value!r})")
        for name in ("memory", "disk"):
            value = getattr(self, name)
            if value is not None:
                try:
                    parse_size(value)
                except ValueError as e:
                    raise ValueError(f"{name} {e} (got {value!r})") from None

    def host_config(self, engine_cpus: int, *, in_memory_files: int = 0) -> dict[str, Any]:
        """Docker's settings for these limits; `in_memory_files`: bytes of tmpfs the container may fill."""
        config: dict[str, Any] = {}
        if self.cpus:
            config["nano_cpus"] = int(min(self.cpus, engine_cpus) * 1e9)
        if self.memory:
            memory = parse_size(self.memory) + in_memory_files
            config["mem_limit"] = memory
            config["memswap_limit"] = memory  # no swap: a hog is OOM-killed, not left thrashing
        if self.pids:
            config["pids_limit"] = self.pids
        return config

    def tmpfs_options(self, *, mode: int, owner: tuple[int, int] | None = None) -> str:
        """Mount options of one size-limited tmpfs (`disk` and `files`)."""
        # exec: Docker mounts tmpfs noexec unless told, and scripts in /tmp are routine.
        options = ["nosuid", "nodev", "exec", f"size={parse_size(self.disk or '0')}", f"mode={mode:o}"]
        if self.files:
            options.append(f"nr_inodes={self.files}")
        if owner is not None:
            options += [f"uid={owner[0]}", f"gid={owner[1]}"]
        return ",".join(options)


WORKSPACE_LIMITS = Limits(disk=DEFAULT_DISK)  # the agent's sandbox and `sandbox exec`


@dataclass(frozen=True)
class FileChange:
    path: str
    kind: str  # "modified" | "added" | "deleted"


_CHANGE_KINDS = {0: "modified", 1: "added", 2: "deleted"}
DOCKER_PLUMBING = {"/usr/sbin/docker-init"}  # what `init=True` adds to every container
_open_sandboxes: weakref.WeakSet[DockerSandbox] = weakref.WeakSet()


@atexit.register
def _close_open_sandboxes() -> None:
    for sandbox in list(_open_sandboxes):
        sandbox.close()


class DockerSandbox:
    """A container as a Sandbox: `root` is the workspace path inside it. Create with `create`."""

    confinement = "docker"  # every command runs in the container

    def __init__(
        self, client: docker.DockerClient, container_id: str, *, image: str, root: str, user: str | None
    ):
        self._client = client
        self.container_id = container_id
        self.image = image
        self.root = root
        self.user = user
        self.uid = self.gid = 0  # of the sandbox user, learnt from the helper
        # Extra environment for every command, as LocalSandbox.env: `create` puts its `env` here
        # too, so whoever reads a sandbox's environment (secret redaction) sees what commands see.
        self.env: dict[str, str] = {}
        self.limits = Limits()  # as created (set by `create`)
        self._channel: HelperChannel | None = None
        self._lifeline: Any = None
        self._lock = threading.RLock()  # one helper request at a time; tools may call from threads
        self._closed = False

    @classmethod
    def create(
        cls,
        image: str,
        *,
        root: str = DEFAULT_ROOT,
        user: str | None = None,
        limits: Limits = Limits(),
        env: Mapping[str, str] | None = None,
        binds: Mapping[str, str] | None = None,
        client: docker.DockerClient | None = None,
        image_build: bool = False,
    ) -> DockerSandbox:
        """Starts a container from `image` (no network, `limits`) with `root` as working directory.

        `user` is anything `docker run --user` takes ("65534:65534", "nobody"); None keeps the
        image's user. `binds` maps host directories to container paths (read-write). Every
        capability is dropped and no process can gain privileges (setuid binaries included), so even
        the image's root user cannot mount, chown or reach devices; only `image_build=True` (image
        builds, which install packages as root) keeps Docker's default capabilities.
        With `limits.disk` set, the root file system is read-only and the workspace (unless bound)
        and /tmp are size-limited tmpfs mounts (see Limits); the root then starts empty.
        """
        if not posixpath.isabs(root):
            raise SandboxError(f"sandbox root must be an absolute path, not {root!r}")
        client = client or connect()
        require_image(client, image)
        _reap_unstarted_orphans(client)
        mounts = [
            docker.types.Mount(target, os.path.abspath(source), type="bind")
            for source, target in (binds or {}).items()
        ]
        bound = {posixpath.normpath(target) for target in (binds or {}).values()}
        root_is_bound = _inside_any(posixpath.normpath(root), bound)
        root_in_memory = limits.disk is not None and not root_is_bound
        tmpfs: dict[str, str] = {}
        in_memory = 0
        if limits.disk is not None:
            if posixpath.normpath(root) == "/":
                raise SandboxError("a sandbox with a disk limit needs a root other than /")
            tmpfs["/tmp"] = limits.tmpfs_options(mode=0o1777)
            in_memory += parse_size(limits.disk)
        if root_in_memory:
            mounts.append(_tmpfs_volume(root, limits, _numeric_owner(user)))
            in_memory += parse_size(limits.disk)
        env = dict(env or {})
        if user and user.split(":")[0] not in ("0", "root"):
            env.setdefault("HOME", "/tmp")  # nobody's home does not exist; a bare uid would get HOME=/
        api = client.api
        host_config = api.create_host_config(
            auto_remove=True,
            init=True,  # docker-init as PID 1 reaps orphans and forwards signals
            network_mode="none",
            mounts=mounts,
            tmpfs=tmpfs or None,
            read_only=limits.disk is not None,
            security_opt=["no-new-privileges"],
            cap_drop=None if image_build else ["ALL"],
            **limits.host_config(_engine_cpus(client), in_memory_files=in_memory),
        )
        config = api.create_container_config(
            image,
            ["cat"],  # the lifeline (see the module docstring)
            stdin_open=True,
            working_dir=root,
            user=user or None,
            environment=env,
            labels=labels.labels_for("sandbox"),
            host_config=host_config,
        )
        config["StdinOnce"] = True  # stdin closes when our attached connection does
        try:
            container_id = api.create_container_from_config(config)["Id"]
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot create a container from {image!r}: {e.explanation or e}") from e
        sandbox = cls(client, container_id, image=image, root=root, user=user)
        sandbox.env = env
        sandbox.limits = limits
        _open_sandboxes.add(sandbox)
        # A bind-mounted root belongs to the host: re-owning it would chown the user's own files.
        own_root = not root_is_bound and root != "/"
        try:
            sandbox._start(own_root=own_root)
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def _start(self, *, own_root: bool) -> None:
        api = self._client.api
        try:
            self._lifeline = api.attach_socket(self.container_id, params={"stdin": 1, "stream": 1})
            api.start(self.container_id)
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot start the sandbox container: {e.explanation or e}") from e
        hello = self._helper_hello()
        self.uid, self.gid = hello["uid"], hello["gid"]
        if own_root and hello["root_uid"] != self.uid:
            # Docker made the working directory as root; give it to the sandbox user.
            self.put_archive("/", _tar_of_directory_entry(self.root, self.uid, self.gid))

    def _helper_hello(self) -> dict[str, Any]:
        try:
            return self._call({"op": "hello"}, deadline=time.monotonic() + HELPER_START_SECONDS)[0]
        except ChannelClosed as e:
            raise SandboxError(f"{e} (the sandbox needs python3 >= 3.7 in image {self.image!r})") from e

    # -- the helper connection -------------------------------------------------------------

    def _live_channel(self) -> HelperChannel:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if self._channel is None or self._channel.gone():
            self._channel = self._start_helper()
        return self._channel

    def _start_helper(self) -> HelperChannel:
        api = self._client.api
        try:
            exec_id = api.exec_create(
                self.container_id,
                ["python3", "-I", "-c", HELPER_SOURCE],
                stdin=True,
                user=self.user or "",
                workdir=self.root,
            )["Id"]
            return HelperChannel(api.exec_start(exec_id, socket=True))
        except docker.errors.NotFound:
            raise SandboxError("the sandbox container is gone (stopped or removed)") from None
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot start the sandbox helper: {e.explanation or e}") from e

    def _call(
        self, header: dict[str, Any], payload: bytes = b"", *, deadline: float | None = None
    ) -> tuple[dict[str, Any], bytes]:
        with self._lock:
            channel = self._live_channel()
            channel.send(header, payload)
            reply, data = channel.receive(deadline)
        if not reply.get("ok"):
            message = reply.get("error", "sandbox operation failed")
            if "too_large" in reply:
                raise FileTooLarge(message, reply["too_large"])
            raise SandboxError(message)
        return reply, data

    # -- processes -------------------------------------------------------------------------

    def exec(
        self,
        command: str,
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        max_output: int = 1_000_000,
        confined: bool = True,
        redactor: OutputRedactor | None = None,
    ) -> ExecResult:
        # The helper keeps the same head and tail as this CappedOutput, which drops what may be
        # part of a secret at the cut when it makes the text.
        output = CappedOutput(max_output, redactor)
        request = {
            "op": "exec",
            "command": command,
            "timeout": timeout,
            "cwd": cwd or self.root,
            "env": {**self.env, **(env or {})},
            "max_output": max_output,  # the helper sends only the head and tail: see CappedForwarder
        }
        deadline = None if timeout is None else time.monotonic() + timeout + HOST_SLACK_SECONDS
        started = time.time()
        with self._lock:
            channel = self._live_channel()
            channel.send(request)
            try:
                reply = self._collect_exec(channel, output, deadline)
            except KeyboardInterrupt:
                self._cancel(channel, output)
                raise
            except ChannelTimeout:
                channel.close()  # the helper sees EOF, kills the command's group and exits
                raise SandboxError(f"the sandbox stopped answering during {command!r}") from None
            except ChannelClosed as e:
                raise SandboxError(f"the sandbox helper died during {command!r}: {e}") from e
        output.elided += reply["elided"]  # the middle the helper dropped
        oom_killed = reply.get("oom_killed")
        if oom_killed is None:
            oom_killed = reply.get("exit_code") == 137 and self._oom_event_since(started)
        return ExecResult(
            exit_code=reply["exit_code"],
            output=output.text(),
            timed_out=reply["timed_out"],
            elided=output.elided,
            oom_killed=bool(oom_killed),
        )

    @staticmethod
    def _collect_exec(channel: HelperChannel, output: CappedOutput, deadline: float | None) -> dict[str, Any]:
        while True:
            header, payload = channel.receive(deadline)
            if header.get("kind") == "output":
                output.add(payload)
            elif not header.get("ok"):
                raise SandboxError(header.get("error", "command failed to start"))
            else:
                return header

    def _cancel(self, channel: HelperChannel, output: CappedOutput) -> None:
        """Kills the running command (Ctrl-C on the host) and waits for the helper to settle."""
        try:
            channel.send({"op": "cancel"})
            self._collect_exec(channel, output, time.monotonic() + HOST_SLACK_SECONDS)
        except (SandboxError, KeyboardInterrupt):
            channel.close()

    def _oom_event_since(self, started: float) -> bool:
        """Fallback when the kernel hides the cgroup's OOM counter: ask the engine's event log."""
        try:
            events = self._client.events(
                since=int(started),
                until=int(time.time()) + 1,
                decode=True,
                filters={"container": self.container_id, "event": "oom"},
            )
            return any(True for _ in events)
        except docker.errors.APIError:
            return False

    # -- files -----------------------------------------------------------------------------

    def read_file(self, path: str, *, max_bytes: int | None = None) -> bytes:
        return self._call({"op": "read", "path": path, "max_bytes": max_bytes})[1]

    def write_file(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        self._call({"op": "write", "path": path, "mode": mode}, bytes(data))

    def stat(self, path: str) -> FileInfo | None:
        info = self._call({"op": "stat", "path": path})[0]["info"]
        return None if info is None else FileInfo(**info)

    def realpath(self, path: str) -> str:
        return self._call({"op": "realpath", "path": path})[0]["path"]

    def listdir(self, path: str) -> list[str]:
        return self._call({"op": "listdir", "path": path})[0]["names"]

    def walk(self, path: str) -> Iterator[tuple[str, list[str], list[str]]]:
        """os.walk's contract from one round trip; names the caller removes from `dirnames` are not entered."""
        entries = self._call({"op": "walk", "path": path})[0]["entries"]
        pruned: set[str] = set()
        for dirpath, dirnames, filenames in entries:
            if _inside_any(dirpath, pruned):
                continue
            offered = list(dirnames)
            yield dirpath, dirnames, filenames
            pruned.update(posixpath.join(dirpath, name) for name in offered if name not in dirnames)

    def remove(self, path: str) -> None:
        self._call({"op": "remove", "path": path})

    # -- bulk copies (tar) and changes -----------------------------------------------------

    def put_archive(self, directory: str, data: bytes | IO[bytes]) -> None:
        """Extracts a tar stream into `directory` (which must exist) in the container."""
        try:
            self._client.api.put_archive(self.container_id, directory, data)
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot copy files into {directory}: {e.explanation or e}") from e

    def get_archive(self, path: str, into: IO[bytes]) -> None:
        """Writes a tar stream of `path` (file or directory, not followed if a symlink) to `into`."""
        try:
            stream, _ = self._client.api.get_archive(self.container_id, path)
            for chunk in stream:
                into.write(chunk)
        except docker.errors.NotFound:
            raise SandboxError(f"cannot copy {path} out of the sandbox: no such file or directory") from None
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot copy {path} out of the sandbox: {e.explanation or e}") from e

    def archive_stream(self, path: str) -> Iterator[bytes]:
        """The engine's tar stream of `path` (not followed if a symlink), chunk by chunk; close the
        iterator to stop it early. Made by the engine from the container's file system: no program
        in the container takes part."""
        try:
            stream, _ = self._client.api.get_archive(self.container_id, path, chunk_size=1 << 20)
        except docker.errors.NotFound:
            raise SandboxError(f"cannot copy {path} out of the sandbox: no such file or directory") from None
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot copy {path} out of the sandbox: {e.explanation or e}") from e
        return stream

    def copy_in(
        self, host_path: str | os.PathLike[str], dest: str, *, skip: Callable[[str], bool] | None = None
    ) -> None:
        """Copies a host file or directory tree to `dest` in the container, owned by the sandbox user.

        `skip(relative_path)` can leave entries out (relative to `host_path`, "/"-separated).
        """
        with tempfile.TemporaryFile() as spool:
            self.tar_for_copy_in(host_path, posixpath.normpath(dest).lstrip("/"), spool, skip=skip)
            spool.seek(0)
            self.put_archive("/", spool)

    def tar_for_copy_in(
        self,
        host_path: str | os.PathLike[str],
        arcname: str,
        into: IO[bytes],
        *,
        skip: Callable[[str], bool] | None = None,
        check: Callable[[tarfile.TarInfo], None] | None = None,
    ) -> None:
        """Writes a tar stream of `host_path` as `copy_in` sends it (entries named `arcname/...`,
        owned by the sandbox user); `check(info)` sees each entry first and may raise to stop."""
        host_path = os.fspath(host_path)

        def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            relative = posixpath.relpath(info.name, arcname)
            if skip is not None and relative != "." and skip(relative):
                return None
            if check is not None:
                check(info)
            info.uid, info.gid, info.uname, info.gname = self.uid, self.gid, "", ""
            return info

        with tarfile.open(fileobj=into, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(host_path, arcname=arcname, filter=owned)

    def copy_out(self, path: str, host_dir: str | os.PathLike[str]) -> None:
        """Copies `path` from the container into the host directory `host_dir` (as `docker cp` does)."""
        with tempfile.TemporaryFile() as spool:
            self.get_archive(path, spool)
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r") as tar:
                tar.extractall(host_dir, filter="data")

    def changed_files(self) -> list[FileChange]:
        """Files added, modified or deleted in the container since it was created (bind mounts excluded)."""
        try:
            changes = self._client.api.diff(self.container_id) or []
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot list the sandbox's changes: {e.explanation or e}") from e
        changes = [FileChange(path=c["Path"], kind=_CHANGE_KINDS.get(c["Kind"], "modified")) for c in changes]
        return _without_docker_plumbing(changes)

    # -- life cycle ------------------------------------------------------------------------

    def sync_back(self) -> str | None:
        return None  # no host workspace behind this container (WorkspaceSandbox has one)

    def close(self) -> None:
        """Removes the container (always, whatever state it is in); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _open_sandboxes.discard(self)
        if self._channel is not None:
            self._channel.close()
        try:
            self._client.api.remove_container(self.container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: auto-remove is already at it
                raise SandboxError(
                    f"cannot remove sandbox container {self.container_id[:12]}: {e.explanation or e}"
                ) from e
            self._wait_until_removed()
        finally:
            if self._lifeline is not None:
                _close_quietly(self._lifeline)

    def _wait_until_removed(self) -> None:
        give_up_at = time.monotonic() + REMOVAL_WAIT_SECONDS
        while time.monotonic() < give_up_at:
            try:
                self._client.api.inspect_container(self.container_id)
            except docker.errors.NotFound:
                return
            time.sleep(0.1)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_engine_cpus_by_url: dict[str, int] = {}


def _reap_unstarted_orphans(client: docker.DockerClient) -> None:
    """Removes our containers that a crashed process created but never started.

    A started container goes with its creator (its main process reads the creator's connection),
    but a creator killed between create and start leaves one in state "created", with no process
    to end it. Every new sandbox sweeps those up, so a crashed run's debris does not outlive the
    next run.
    """
    created = client.api.containers(all=True, filters={**labels.PROJECT_FILTER, "status": "created"})
    for container in created:
        if labels.owner_is_alive((container.get("Labels") or {}).get(labels.OWNER)):
            continue
        try:
            client.api.remove_container(container["Id"], force=True, v=True)
        except docker.errors.APIError:
            pass  # already going, or removed by someone else's sweep


def _numeric_owner(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of a numeric `user` ("65534" or "65534:65534"), which can own a tmpfs from the start."""
    uid, _, gid = (user or "").partition(":")
    if uid.isdigit() and (gid.isdigit() or not gid):
        return int(uid), int(gid or uid)
    return None


def _tmpfs_volume(target: str, limits: Limits, owner: tuple[int, int] | None) -> docker.types.Mount:
    """An anonymous volume backed by a size-limited tmpfs, removed with its container.

    A volume rather than a plain tmpfs mount because the engine's archive calls (put_archive,
    get_archive) see volumes but not tmpfs mounts, and copy mode needs both.
    """
    mode = 0o700 if owner else 0o1777  # a named user gets the root re-owned after start instead
    options = limits.tmpfs_options(mode=mode, owner=owner)
    driver = docker.types.DriverConfig("local", {"type": "tmpfs", "device": "tmpfs", "o": options})
    return docker.types.Mount(target, None, type="volume", driver_config=driver)


def _engine_cpus(client: docker.DockerClient) -> int:
    """The engine's CPU count (a CPU limit above it is an error); asked once per engine."""
    url = client.api.base_url
    if url not in _engine_cpus_by_url:
        try:
            _engine_cpus_by_url[url] = int(client.info().get("NCPU") or os.cpu_count() or 1)
        except docker.errors.APIError:
            return os.cpu_count() or 1
    return _engine_cpus_by_url[url]


def _without_docker_plumbing(changes: list[FileChange]) -> list[FileChange]:
    """Drops the init binary Docker mounts in, and the directories listed only because of it."""
    kept = [c for c in changes if c.path not in DOCKER_PLUMBING]
    parents = {parent for path in DOCKER_PLUMBING for parent in _ancestors(path)}
    for parent in sorted(parents, key=len, reverse=True):  # deepest first
        if not any(c.path.startswith(parent + "/") for c in kept):
            kept = [c for c in kept if not (c.path == parent and c.kind == "modified")]
    return kept


def _ancestors(path: str) -> list[str]:
    parents = []
    while (path := posixpath.dirname(path)) != "/":
        parents.append(path)
    return parents


def _inside_any(path: str, directories: set[str]) -> bool:
    while True:
        if path in directories:
            return True
        parent = posixpath.dirname(path)
        if parent == path:
            return False
        path = parent


def _tar_of_directory_entry(path: str, uid: int, gid: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(posixpath.normpath(path).lstrip("/"))
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, uid, gid
        tar.addfile(info)
    return buffer.getvalue()


def _close_quietly(closable: Any) -> None:
    try:
        closable.close()
    except OSError:
        pass
