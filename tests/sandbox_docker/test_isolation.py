"""Isolation and limits, on the real engine: no network, pids and memory limits, labels."""

from __future__ import annotations

import pytest

from sandbox import labels
from sandbox.docker import DockerSandbox, Limits

LIMITS = Limits(cpus=1.0, memory="256m", pids=64)


@pytest.fixture(scope="module")
def sandbox(docker_client, base_image):
    with DockerSandbox.create(base_image, limits=LIMITS, client=docker_client) as sandbox:
        yield sandbox


def test_only_the_loopback_interface_exists(sandbox):
    assert sandbox.exec("ls /sys/class/net").output.split() == ["lo"]
    # 192.0.2.1 is TEST-NET-1: nothing could answer, and with no route nothing is even sent.
    probe = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=5)"
    result = sandbox.exec(f'python3 -c "{probe}"', timeout=60)
    assert result.exit_code != 0 and "Network is unreachable" in result.output


def test_container_settings_and_labels(sandbox, docker_client):
    attrs = docker_client.api.inspect_container(sandbox.container_id)
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["PidsLimit"] == 64
    assert host["Memory"] == 256 * 1024 * 1024 and host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] == 1_000_000_000
    container_labels = attrs["Config"]["Labels"]
    assert container_labels[labels.PROJECT] == "1" and container_labels[labels.KIND] == "sandbox"
    assert container_labels[labels.OWNER] == labels.owner_id()


def test_a_fork_bomb_is_stopped_by_the_pids_limit_and_killed_at_the_timeout(sandbox):
    result = sandbox.exec(":(){ :|:& };: ; sleep 60", timeout=3)
    assert result.timed_out
    assert "Resource temporarily unavailable" in result.output  # fork() hit the pids limit
    # The whole bomb was in the command's process group: nothing of it is left, and the
    # sandbox still runs commands.
    processes = sandbox.exec("ls -d /proc/[0-9]* | wc -l", timeout=60)
    assert processes.exit_code == 0
    assert int(processes.output) < 10
    assert (
        sandbox.exec("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max").output
        == "64\n"
    )


def test_a_memory_hog_is_oom_killed_and_reported(sandbox):
    result = sandbox.exec("python3 -c 'hog = bytearray(1 << 30)'", timeout=120)
    assert result.oom_killed
    assert result.exit_code == 137 and not result.timed_out
    after = sandbox.exec("echo still here")
    assert after.output == "still here\n" and not after.oom_killed


def test_a_command_past_its_timeout_returns_its_partial_output(sandbox):
    result = sandbox.exec("for i in 1 2 3; do echo line $i; done; sleep 60; echo never", timeout=1)
    assert result.timed_out and result.exit_code is None
    assert result.output == "line 1\nline 2\nline 3\n"
