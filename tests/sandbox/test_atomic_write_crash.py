"""kill -9 in the middle of write_file never leaves a torn file: it is the old or the new version.

A child process rewrites a large file in a loop through the write_file tool; the test kills it
with SIGKILL at random moments and checks the file each time.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

SIZE = 2_000_000
WRITER = """
import sys
from agent.tools.base import ToolContext
from agent.tools.files import WriteFile
from sandbox.local import LocalSandbox

ctx = ToolContext(LocalSandbox(sys.argv[1]))
size = int(sys.argv[2])
tool = WriteFile()
version = 0
while True:
    version += 1
    body = f"version {version}\\n" + "x" * size + f"\\nend {version}\\n"
    assert tool.run({"path": "big.txt", "content": body}, ctx).ok
"""
COMPLETE = re.compile(rb"version (\d+)\n(x*)\nend (\d+)\n", re.S)


def _version_if_complete(data: bytes) -> int | None:
    match = COMPLETE.fullmatch(data)
    if match and match.group(1) == match.group(3) and len(match.group(2)) == SIZE:
        return int(match.group(1))
    return None


def _current_version(path: Path) -> int | None:
    return _version_if_complete(path.read_bytes())


def test_sigkill_during_write_file_leaves_the_old_or_the_new_file(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    target = workspace / "big.txt"
    rng = random.Random(1234)
    versions_seen = set()
    for _ in range(6):
        target.write_bytes(b"version 0\n" + b"x" * SIZE + b"\nend 0\n")
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(workspace), str(SIZE)])
        try:
            deadline = time.monotonic() + 120  # generous: only guards against a stuck child
            while _current_version(target) == 0 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.01)  # wait until the writer is in its loop
            time.sleep(rng.uniform(0, 0.15))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        assert child.returncode == -signal.SIGKILL
        version = _current_version(target)
        assert version is not None, "torn file after SIGKILL"
        versions_seen.add(version)
    assert versions_seen - {0}, "the writer never completed a write"
