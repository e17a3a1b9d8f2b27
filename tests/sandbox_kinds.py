"""The two kinds of sandbox the tool suites run on, and the Docker engine fixtures they share.

"confined" is the agent's default: a ConfinedSandbox on the host, whose commands run under bwrap,
or Landlock where bwrap cannot work (MMX_AGENT_CONFINEMENT=landlock forces it, to run a suite
under the fallback). "docker" is a DockerSandbox whose container bind-mounts a host directory (the
test's tmp_path) at the same absolute path: `root` is then the host path, so the tests prepare and
check files on the host exactly as they do for the confined kind. The container runs as the host
user, sees only the environment the test passes (no network, as always), and is removed at
teardown. (The unconfined LocalSandbox has its own tests in tests/sandbox/.)

Conftests import the fixtures they need from here (pytest finds fixtures by name in a conftest).
Without a Docker engine, or without any confinement, those variants skip locally, with the
reason, but fail in CI (CI=true), where .ci/run has installed bubblewrap, started dockerd and
built the base image.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from sandbox import labels
from sandbox.base import Sandbox, SandboxError
from sandbox.base_image import ensure_base_image
from sandbox.confinement.detect import ConfinementUnavailable, choose
from sandbox.confinement.sandbox import ConfinedSandbox
from sandbox.docker import DockerSandbox
from sandbox.engine import DockerUnavailable, connect
from sandbox.prune import leftover_containers

KINDS = ("confined", "docker")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LEFTOVER_WAIT_SECONDS = 30  # auto-remove of a container whose owner just exited is asynchronous


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: these tests must run here, not skip)")
    pytest.skip(reason)


def local_only(reason: str) -> pytest.MarkDecorator:
    """Runs a test that takes a sandbox fixture on this host only (the confined kind). `reason` says
    why the test cannot hold for a container; it documents the choice (no docker variant is generated)."""
    assert reason
    return pytest.mark.parametrize("sandbox_kind", ["confined"], indirect=True)


def open_confined(root: str | os.PathLike[str], *, mode: str | None = None, **options) -> ConfinedSandbox:
    """A ConfinedSandbox that really confines (mode None: $MMX_AGENT_CONFINEMENT, else auto); a
    machine that cannot confine skips the test, or fails it in CI."""
    try:
        if choose(mode, options.get("network", "host")).mode == "none":
            unavailable("no confinement works on this machine (neither bwrap nor Landlock)")
        return ConfinedSandbox(root, mode=mode, **options)
    except ConfinementUnavailable as e:
        unavailable(str(e))
        raise


# -- the Docker engine -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = connect(timeout=900)
    except DockerUnavailable as e:
        unavailable(str(e))
    session_started = time.time() - 1
    yield client
    leaks = _wait_for_leftovers(client, session_started)
    if leaks:
        pytest.fail(f"the Docker tests left project-labelled containers or volumes behind: {leaks}")


def _leftovers(client, since: float) -> list[str]:
    """Containers made during the session whose owner is gone or is this test process; our volumes."""
    me = labels.owner_id()
    dead, live = leftover_containers(client)
    dead = [c for c in dead if c["Created"] >= since]  # other runs' debris is not ours to report
    mine = [c for c in live if (c.get("Labels") or {}).get(labels.OWNER) == me]
    volumes = client.volumes.list(filters=labels.PROJECT_FILTER)
    return [f"container {c['Id'][:12]} ({c['State']})" for c in dead + mine] + [
        f"volume {v.name}" for v in volumes
    ]


def _wait_for_leftovers(client, since: float) -> list[str]:
    give_up_at = time.monotonic() + LEFTOVER_WAIT_SECONDS
    while (leaks := _leftovers(client, since)) and time.monotonic() < give_up_at:
        time.sleep(0.5)
    if leaks:
        for container in leftover_containers(client)[0]:
            client.api.remove_container(container["Id"], force=True)
        for volume in client.volumes.list(filters=labels.PROJECT_FILTER):
            volume.remove(force=True)
    return leaks


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The default base image, built on first use (debootstrap needs root and a Debian mirror)."""
    try:
        return ensure_base_image(docker_client)
    except SandboxError as e:
        unavailable(f"no base image and cannot build it: {e}")


# -- sandboxes of either kind ------------------------------------------------------------------


def open_sandbox(
    kind: str,
    root: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    shared: str | os.PathLike[str] | None = None,
    request: pytest.FixtureRequest,
) -> Sandbox:
    """A sandbox of `kind` with `root` as its workspace; the caller closes it.

    For docker, `shared` (default: `root`), a host directory that holds `root`, is bind-mounted at
    its own path, so everything the test puts beside the workspace (a fake HOME, a state
    directory, a sacrificial "outside") is there too, under the same paths.
    """
    if kind == "confined":
        return open_confined(root, env=dict(env or {}))
    if kind != "docker":
        raise ValueError(f"unknown sandbox kind {kind!r}")
    client = request.getfixturevalue("docker_client")
    image = request.getfixturevalue("base_image")
    real_root = os.path.realpath(root)
    real_shared = os.path.realpath(shared if shared is not None else root)
    if not Path(real_root).is_relative_to(real_shared):
        raise ValueError(f"the workspace {real_root} is not inside the shared directory {real_shared}")
    env = dict(env or {})
    if os.getuid() != 0:
        env.setdefault("HOME", "/tmp")  # a host uid without a passwd entry in the image gets HOME=/
    return DockerSandbox.create(
        image,
        root=real_root,
        user=f"{os.getuid()}:{os.getgid()}",
        env=env,
        binds={real_shared: real_shared},
        client=client,
    )


@pytest.fixture(params=KINDS)
def sandbox_kind(request) -> str:
    return request.param


@pytest.fixture
def make_sandbox(sandbox_kind, request, tmp_path) -> Iterator:
    """make_sandbox(root, env=None) -> a sandbox of this test's kind over `root` (inside tmp_path),
    closed at teardown."""
    opened: list[Sandbox] = []

    def make(root: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Sandbox:
        sandbox = open_sandbox(sandbox_kind, root, env=env, shared=tmp_path, request=request)
        opened.append(sandbox)
        return sandbox

    yield make
    for sandbox in opened:
        sandbox.close()
