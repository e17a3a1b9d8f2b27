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
import os
import posixpath
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
from sandbox.base import ExecResult, FileInfo, FileTooLarge, SandboxError
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


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox; None lifts a limit."""

    cpus: float | None = 2.0
    memory: str | None = "2g"  # Docker units: 512m, 2g, ...
    pids: int | None = 512

    def host_config(self, engine_cpus: int) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.cpus:
            config["nano_cpus"] = int(min(self.cpus, engine_cpus) * 1e9)
        if self.memory:
            config["mem_limit"] = self.memory
            config["memswap_limit"] = self.memory  # no swap: a hog is OOM-killed, not left thrashing
        if self.pids:
            config["pids_limit"] = self.pids
        return config


@dataclass
class DockerExecResult(ExecResult):
    oom_killed: bool = False  # the kernel's OOM killer stopped a process during this command


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
    ) -> DockerSandbox:
        """Starts a container from `image` (no network, `limits`) with `root` as working directory.

        `user` is anything `docker run --user` takes ("1000:1000", "nobody"); None keeps the
        image's user. `binds` maps host directories to container paths (read-write).
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
        api = client.api
        host_config = api.create_host_config(
            auto_remove=True,
            init=True,  # docker-init as PID 1 reaps orphans and forwards signals
            network_mode="none",
            mounts=mounts,
            security_opt=["no-new-privileges"],
            **limits.host_config(_engine_cpus(client)),
        )
        config = api.create_container_config(
            image,
            ["cat"],  # the lifeline (see the module docstring)
            stdin_open=True,
            working_dir=root,
            user=user or None,
            environment=dict(env or {}),
            labels=labels.labels_for("sandbox"),
            host_config=host_config,
        )
        config["StdinOnce"] = True  # stdin closes when our attached connection does
        try:
            container_id = api.create_container_from_config(config)["Id"]
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot create a container from {image!r}: {e.explanation or e}") from e
        sandbox = cls(client, container_id, image=image, root=root, user=user)
        sandbox.env = dict(env or {})
        _open_sandboxes.add(sandbox)
        # A bind-mounted root belongs to the host: re-owning it would chown the user's own files.
        bound = {posixpath.normpath(target) for target in (binds or {}).values()}
        own_root = posixpath.normpath(root) not in bound and root != "/"
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
    ) -> DockerExecResult:
        output = CappedOutput(max_output)
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
        return DockerExecResult(
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

    def copy_in(
        self, host_path: str | os.PathLike[str], dest: str, *, skip: Callable[[str], bool] | None = None
    ) -> None:
        """Copies a host file or directory tree to `dest` in the container, owned by the sandbox user.

        `skip(relative_path)` can leave entries out (relative to `host_path`, "/"-separated).
        """
        host_path = os.fspath(host_path)
        arcname = posixpath.normpath(dest).lstrip("/")

        def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            relative = posixpath.relpath(info.name, arcname)
            if skip is not None and relative != "." and skip(relative):
                return None
            info.uid, info.gid, info.uname, info.gname = self.uid, self.gid, "", ""
            return info

        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.add(host_path, arcname=arcname, filter=owned)
            spool.seek(0)
            self.put_archive("/", spool)

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

    def close(self) -> None:
        """Removes the container (always, whatever state it is in); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _open_sandboxes.discard(self)
        if self._channel is not None:
            self._channel.close()
        try:
            self._client.api.remove_container(self.container_id, force=True)
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
            client.api.remove_container(container["Id"], force=True)
        except docker.errors.APIError:
            pass  # already going, or removed by someone else's sweep


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
