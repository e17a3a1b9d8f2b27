"""Runs the interpreted kernel tests (test_fused_moe.py) in a child pytest with TRITON_INTERPRET=1,
so the interpreter never touches this process's Triton (conftest.py says why)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local_triton.conftest import INTERPRETED

pytestmark = [
    pytest.mark.usefixtures("triton_installed"),
    pytest.mark.skipif(INTERPRETED, reason="this process is interpreted: test_fused_moe.py runs in it"),
]
ROOT = Path(__file__).resolve().parents[2]


def test_fused_moe_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/local_triton/test_fused_moe.py",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
