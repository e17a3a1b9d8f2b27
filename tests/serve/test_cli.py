"""`mmx-agent serve` refuses bad arguments with exit 2 and one line, before loading anything."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.serve.conftest import server_env


def serve_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", "serve", *args],
        capture_output=True,
        text=True,
        env=env or server_env(),
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["/no/such/checkpoint"], "no such checkpoint directory"),
        ([".", "--dtype", "float8"], "--dtype must be float32 or bfloat16"),
        ([".", "--device", "tpu"], "--device must be auto, cpu or cuda"),
        ([".", "--api-key-env", "MMX_SERVE_TEST_UNSET_KEY"], "MMX_SERVE_TEST_UNSET_KEY"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, says):
    env = server_env()
    env.pop("MMX_SERVE_TEST_UNSET_KEY", None)
    run = serve_cli(*args, env=env)
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and says in run.stderr
    assert "Traceback" not in run.stderr


def test_a_port_in_use_is_exit_1(random_checkpoint):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        run = serve_cli(str(random_checkpoint), "--port", port)
    assert run.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr and "Traceback" not in run.stderr


def test_a_directory_that_is_no_checkpoint_fails_after_binding_with_exit_1(tmp_path):
    run = serve_cli(str(tmp_path), "--port", "0")
    assert run.returncode == 1
    assert "listening on http://127.0.0.1:" in run.stderr
    assert "could not load" in run.stderr and "Traceback" not in run.stderr
