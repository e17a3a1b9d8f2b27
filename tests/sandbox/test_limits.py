"""Sandbox limits of 0 or less: Docker reads 0 as "no limit", so every place that takes a limit refuses
them (a ValueError in the API, exit status 2 on the command line and in settings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.docker import WORKSPACE_LIMITS, Limits, parse_size


@pytest.mark.parametrize(
    "field, value",
    [
        ("cpus", 0),
        ("cpus", -1.5),
        ("cpus", float("nan")),
        ("cpus", float("inf")),
        ("pids", 0),
        ("pids", -1),
        ("pids", 2.5),
        ("pids", True),
        ("memory", "0"),
        ("memory", "0g"),
        ("memory", "-1g"),
        ("memory", "lots"),
        ("disk", "0"),
        ("disk", ""),
        ("files", 0),
    ],
)
def test_limits_refuse_zero_negative_and_nonsense(field, value):
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})


def test_none_lifts_a_limit_on_purpose_and_sizes_parse_in_docker_units():
    assert Limits(cpus=None, memory=None, pids=None).host_config(4) == {}
    assert parse_size("512m") == 512 << 20 and parse_size("2g") == 2 << 30 and parse_size("1024") == 1024
    assert parse_size("1.5G") == 3 << 29 and parse_size("64MB") == 64 << 20
    # The tmpfs a container may fill is added to its memory: it lives in memory, charged to the container.
    config = Limits(memory="1g").host_config(4, in_memory_files=2 << 30)
    assert config["mem_limit"] == config["memswap_limit"] == 3 << 30
    assert WORKSPACE_LIMITS.disk == "2g" and Limits().disk is None


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock", **(env or {})},  # never reached
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "flag, value", [("--memory", "0"), ("--pids", "0"), ("--cpus", "0"), ("--disk", "0"), ("--cpus", "-2")]
)
def test_sandbox_exec_refuses_them_as_bad_usage(tmp_path, flag, value):
    result = _run("sandbox", "exec", flag, value, "--", "true", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert flag in result.stderr and result.stdout == ""


def test_eval_run_refuses_them_as_bad_usage(tmp_path):
    result = _run(
        "eval", "run", "pypi-fixes", "--output", str(tmp_path / "out"), "--memory", "0", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "--memory" in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "setting, value", [("DOCKER_MEMORY", "0"), ("DOCKER_CPUS", "0"), ("DOCKER_PIDS", "-1")]
)
def test_settings_refuse_them_as_bad_usage(tmp_path, setting, value):
    env = {f"MMX_AGENT_{setting}": value, "MMX_AGENT_SANDBOX": "docker", "HOME": str(tmp_path)}
    result = _run("-p", "hello", "--output-format", "json", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert setting.lower() in result.stdout and '"usage_error"' in result.stdout
    project = tmp_path / "project"
    project.mkdir()
    (project / ".mmx-agent.toml").write_text('docker_disk = "0"\n')
    result = _run("-p", "hello", env={"HOME": str(tmp_path)}, cwd=project)
    assert result.returncode == 2 and "docker_disk" in result.stderr
