"""Life cycle on the real engine: close always removes, crashes leave nothing, prune, copies, users."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import docker.errors
import pytest

from sandbox import labels
from sandbox.base import SandboxError
from sandbox.docker import DockerSandbox
from sandbox.prune import prune
from tests.sandbox_docker.processes import ALIVE

CRASHING_OWNER = """
import os, signal, sys
from sandbox.docker import DockerSandbox
sandbox = DockerSandbox.create(sys.argv[1])
sandbox.exec("sleep 600 >/dev/null 2>&1 &")
print(sandbox.container_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit: a crash
"""


def _exists(client, container_id: str) -> bool:
    try:
        client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return False
    return True


def _wait_until_gone(client, container_id: str, seconds: float = 30) -> bool:
    give_up_at = time.monotonic() + seconds
    while _exists(client, container_id):
        if time.monotonic() > give_up_at:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def sandbox(docker_client, base_image):
    with DockerSandbox.create(base_image, client=docker_client) as sandbox:
        yield sandbox


def test_close_removes_the_container_and_can_be_repeated(docker_client, base_image):
    sandbox = DockerSandbox.create(base_image, client=docker_client)
    assert _exists(docker_client, sandbox.container_id)
    sandbox.close()
    assert not _exists(docker_client, sandbox.container_id)
    sandbox.close()
    with pytest.raises(SandboxError, match="closed"):
        sandbox.exec("true")


def test_a_crashed_owner_leaves_no_container(docker_client, base_image):
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_OWNER, base_image], capture_output=True, text=True, timeout=120
    )
    assert crashed.returncode == -9, crashed.stderr
    container_id = crashed.stdout.strip()
    assert len(container_id) == 64
    # The lifeline connection died with the process: the container stops and removes itself.
    assert _wait_until_gone(docker_client, container_id)


def test_prune_removes_leftovers_of_dead_runs_but_not_live_ones(docker_client, base_image, sandbox):
    finished = subprocess.run(["true"])
    dead_owner = labels.owner_id(os.getpid() + 10_000_000)  # no such pid: a dead run's label
    assert finished.returncode == 0
    # A crash between create and start leaves a created, never started container behind.
    leftover = docker_client.api.create_container(
        base_image,
        ["true"],
        labels={**labels.labels_for("sandbox"), labels.OWNER: dead_owner},
        host_config=docker_client.api.create_host_config(network_mode="none"),
    )["Id"]
    volume = docker_client.volumes.create(labels=labels.labels_for("volume"))
    report = prune(docker_client)
    assert leftover[:12] in report.containers and volume.name in report.volumes
    assert sandbox.container_id[:12] in report.kept
    assert not _exists(docker_client, leftover)
    assert _exists(docker_client, sandbox.container_id)
    assert sandbox.exec("echo alive").output == "alive\n"


def test_changed_files_lists_what_changed_since_creation(sandbox):
    sandbox.exec("echo new > /workspace/added.txt && echo more >> /etc/issue && rm /etc/debian_version")
    changes = {change.path: change.kind for change in sandbox.changed_files()}
    assert changes["/workspace/added.txt"] == "added"
    assert changes["/etc/issue"] == "modified"
    assert changes["/etc/debian_version"] == "deleted"
    assert "/usr/sbin/docker-init" not in changes and "/usr" not in changes


def test_copy_in_and_copy_out_keep_content_modes_and_links(sandbox, tmp_path):
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "data.bin").write_bytes(bytes(range(256)))
    (source / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (source / "run.sh").chmod(0o755)
    (source / "link").symlink_to("sub/data.bin")
    (source / "skipped.log").write_text("left out")
    sandbox.copy_in(source, "/workspace/copied", skip=lambda relative: relative.endswith(".log"))
    assert sandbox.exec("/workspace/copied/run.sh").output == "hi\n"
    assert sandbox.stat("/workspace/copied/link").is_symlink  # read_file follows no links: resolve first
    assert sandbox.read_file(sandbox.realpath("/workspace/copied/link")) == bytes(range(256))
    assert sandbox.listdir("/workspace/copied") == ["link", "run.sh", "sub"]
    sandbox.exec("echo made-inside > /workspace/copied/sub/inside.txt")
    sandbox.copy_out("/workspace/copied", tmp_path / "back")
    back = tmp_path / "back" / "copied"
    assert (back / "sub" / "data.bin").read_bytes() == bytes(range(256))
    assert (back / "sub" / "inside.txt").read_text() == "made-inside\n"
    assert os.readlink(back / "link") == "sub/data.bin"
    assert stat.S_IMODE((back / "run.sh").stat().st_mode) & 0o111


def test_the_helper_is_restarted_after_it_dies(sandbox):
    with pytest.raises(SandboxError, match="died"):
        sandbox.exec("kill -9 $PPID; sleep 5")  # the command's parent is the helper
    assert sandbox.exec("echo back").output == "back\n"
    # Dying between two calls goes unnoticed: the next call just gets a new helper.
    sandbox.exec("(sleep 0.2; kill -9 $PPID) >/dev/null 2>&1 &")
    give_up_at = time.monotonic() + 30
    while not sandbox._channel.gone() and time.monotonic() < give_up_at:
        time.sleep(0.05)
    assert sandbox.exec("echo again").output == "again\n"


def test_a_non_root_user_owns_the_workspace_and_nothing_else(docker_client, base_image, tmp_path):
    with DockerSandbox.create(base_image, user="1000:1000", client=docker_client) as sandbox:
        assert sandbox.exec("id -u").output == "1000\n"
        sandbox.write_file("/workspace/mine.txt", b"ok")
        assert sandbox.exec("stat -c %u /workspace/mine.txt").output == "1000\n"
        with pytest.raises(SandboxError, match="Permission denied"):
            sandbox.write_file("/etc/not-mine", b"no")
        source = tmp_path / "in.txt"
        source.write_text("copied")
        sandbox.copy_in(source, "/workspace/in.txt")
        assert sandbox.exec("stat -c %u /workspace/in.txt").output == "1000\n"


def test_a_missing_image_says_how_to_build_one(docker_client):
    with pytest.raises(SandboxError, match="mmx-agent sandbox base"):
        DockerSandbox.create("mmx-agent-base:no-such-tag", client=docker_client)


def test_an_image_without_python3_is_refused_clearly(docker_client, base_image):
    with DockerSandbox.create(base_image, client=docker_client) as builder:
        builder.exec("rm -f /usr/bin/python3*")
        tag = "mmx-agent-test-no-python:1"
        docker_client.api.commit(
            builder.container_id, "mmx-agent-test-no-python", "1", conf={"Labels": {labels.OWNER: ""}}
        )
    try:
        with pytest.raises(SandboxError, match="needs python3"):
            DockerSandbox.create(tag, client=docker_client)
    finally:
        docker_client.images.remove(tag, force=True)


def test_an_interrupted_command_is_killed_and_the_sandbox_stays_usable(sandbox):
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)  # Ctrl-C while the command runs
    try:
        with pytest.raises(KeyboardInterrupt):
            sandbox.exec("sleep 60 & echo $! > /tmp/interrupted.pid; sleep 60")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert sandbox.exec(ALIVE.format(pid_file="/tmp/interrupted.pid")).exit_code != 0
    assert sandbox.exec("echo usable").output == "usable\n"


def test_concurrent_calls_from_threads_stay_in_step(sandbox):
    sandbox.write_file("/workspace/shared.txt", b"shared")

    def work(n: int) -> tuple[bytes, str, bool]:
        return (
            sandbox.read_file("/workspace/shared.txt"),
            sandbox.exec(f"echo {n}").output,
            sandbox.stat("/workspace/shared.txt").size == 6,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(64)))
    assert results == [(b"shared", f"{n}\n", True) for n in range(64)]


def test_a_container_created_by_a_dead_process_but_never_started_is_swept_up(docker_client, base_image):
    from sandbox import labels
    from sandbox.docker import DockerSandbox

    dead_owner = f"{socket.gethostname()}:999999999:0"
    orphan = docker_client.api.create_container(
        base_image, command="cat", labels={labels.PROJECT: "1", labels.OWNER: dead_owner}
    )
    with DockerSandbox.create(base_image, client=docker_client) as sandbox:
        assert sandbox.exec("true").exit_code == 0
    remaining = docker_client.api.containers(all=True, filters={"id": orphan["Id"]})
    assert remaining == []
