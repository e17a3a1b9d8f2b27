"""Fixtures for the eval tests: the Docker engine, the synthetic suite, the pypi-fixes suite.

Without an engine (or without the package index, which the env image and the pypi-fixes patches
need on the host) these tests skip locally with the reason, and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evals.environments import EnvironmentBuilder
from evals.suite import SuiteError, load_suite
from evals.task import Task
from sandbox import labels
from sandbox.base import SandboxError
from sandbox.base_image import ensure_base_image
from sandbox.engine import DockerUnavailable, connect
from sandbox.prune import leftover_containers
from tests.evals import synthetic

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LEFTOVER_WAIT_SECONDS = 30


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the eval tests must run here, not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = connect(timeout=900)
    except DockerUnavailable as e:
        unavailable(str(e))
    yield client
    me = labels.owner_id()
    give_up_at = time.monotonic() + LEFTOVER_WAIT_SECONDS
    while True:
        dead, live = leftover_containers(client)
        mine = [c for c in live if (c.get("Labels") or {}).get(labels.OWNER) == me]
        if not (dead or mine) or time.monotonic() > give_up_at:
            break
        time.sleep(0.5)
    for container in dead + mine:
        client.api.remove_container(container["Id"], force=True)
    if dead or mine:
        pytest.fail(f"the eval tests left containers behind: {[c['Id'][:12] for c in dead + mine]}")


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    try:
        return ensure_base_image(docker_client)
    except SandboxError as e:
        unavailable(f"no base image and cannot build it: {e}")


@pytest.fixture(scope="session")
def builder(base_image) -> EnvironmentBuilder:
    return EnvironmentBuilder()


@dataclass
class Synthetic:
    repos_dir: Path
    suite: Path
    info: dict[str, Any]
    records: list[dict[str, Any]]

    def tasks(self) -> list[Task]:
        return load_suite(self.suite)

    def task(self, instance_id: str) -> Task:
        return next(t for t in self.tasks() if t.instance_id == instance_id)


@pytest.fixture(scope="session")
def synthetic_suite(tmp_path_factory) -> Synthetic:
    root = tmp_path_factory.mktemp("synthetic")
    repos_dir = root / "repos"
    info = synthetic.build_repositories(repos_dir)
    records = synthetic.tasks(info)
    return Synthetic(repos_dir, synthetic.write_suite(root / "suite.jsonl", records), info, records)


@pytest.fixture(scope="session")
def pypi_fixes(base_image) -> list[Task]:
    try:
        return load_suite("pypi-fixes")
    except SuiteError as e:
        unavailable(f"cannot prepare pypi-fixes (the host needs the package index the first time): {e}")


@pytest.fixture(scope="session")
def env_image(builder, synthetic_suite) -> str:
    """The shared env image (its wheels come from the package index on the host, once)."""
    try:
        return builder.env_image(synthetic_suite.tasks()[0])
    except Exception as e:
        unavailable(f"cannot build the env image: {e}")


@pytest.fixture
def isolated_state(tmp_path, monkeypatch):
    """Agent sessions and config under tmp, never the real home."""
    for name in ("XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for key in [k for k in os.environ if k.startswith("MMX_AGENT_")]:
        monkeypatch.delenv(key)
    return tmp_path
