"""Real `mmx-agent serve` processes on 127.0.0.1 (port 0), on small checkpoints written here.

- the random `tiny` checkpoint: real M2 weights that write random tokens (shapes, greedy parity);
- scripted checkpoints (tests/local/scripted.py): a real M2 network crafted so that greedy decoding
  writes a known completion, e.g. reasoning and then a tool call, which the server must parse.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.local.scripted import build_scripted_checkpoint

ROOT = Path(__file__).resolve().parents[2]
READY_SECONDS = 180  # the first start on a machine builds the CPU kernels

ADD_REASONING = "I will add the numbers with the add tool."
ADD_CHAIN = [  # each piece one token, none twice: the crafted model follows it from the prompt's "\n"
    ADD_REASONING,
    "</think>",
    "\n\n",
    "<minimax:tool_call>",
    '\n<invoke name="add">\n',
    '<parameter name="a">17</parameter>\n',
    '<parameter name="b">25</parameter>\n',
    "</invoke>\n",
    "</minimax:tool_call>",
    "[e~[",
]
ANSWER_REASONING = "The task is simple."
ANSWER_TEXT = "All done: nothing to change."
ANSWER_CHAIN = [ANSWER_REASONING, "</think>", "\n\n", ANSWER_TEXT, "[e~["]


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log: Path
    model: str

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # several servers share the test machine's cores
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextmanager
def serve(checkpoint: Path, tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start `mmx-agent serve CKPT --port 0 ARGS`, wait until /health says ready, stop it afterwards."""
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", "serve", str(checkpoint), "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=env or server_env(),
            cwd=tmp,
        )
    try:
        url = _wait_for_url(process, log)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the server exited {process.returncode}:\n{log.read_text()}")
            # Ready, and its startup line written (it may come a moment after /health says so).
            named = re.search(r"ready at .*\(model ([^,)]+)", log.read_text())
            try:
                if named and httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"the server never became ready:\n{log.read_text()}")
        name = named.group(1)
        yield Server(url, process, log, name)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_url(process: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"the server exited {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"no 'listening on' line:\n{log.read_text()}")


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    from agent.backends.local.checkpoint_writer import init_checkpoint

    out = tmp_path_factory.mktemp("serve-tiny")
    init_checkpoint(out, "tiny", seed=3)
    return out


@pytest.fixture(scope="session")
def add_checkpoint(tmp_path_factory) -> Path:
    """Greedy decoding: reasoning, then a call add(a=17, b=25)."""
    return build_scripted_checkpoint(tmp_path_factory.mktemp("serve-add"), 32768, ADD_CHAIN)


@pytest.fixture(scope="session")
def answer_checkpoint(tmp_path_factory) -> Path:
    """Greedy decoding: reasoning, then a plain answer."""
    return build_scripted_checkpoint(tmp_path_factory.mktemp("serve-answer"), 32768, ANSWER_CHAIN)
