"""Fixtures for tests against the real Docker engine, and the session-end leak check.

Without an engine these tests skip locally (with the reason) but fail in CI (CI=true), where
.ci/run has started dockerd and built the base image.
"""

from __future__ import annotations

import os
import time

import pytest

from sandbox import labels
from sandbox.base import SandboxError
from sandbox.base_image import ensure_base_image
from sandbox.engine import DockerUnavailable, connect
from sandbox.prune import leftover_containers

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LEFTOVER_WAIT_SECONDS = 30  # auto-remove of a container whose owner just exited is asynchronous


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the Docker tests must run here, not skip)")
    pytest.skip(reason)


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
