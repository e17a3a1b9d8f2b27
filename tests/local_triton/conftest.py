"""Triton expert-kernel tests. The kernels themselves run on the CPU under the Triton interpreter.

TRITON_INTERPRET is read when a kernel is decorated and when `import triton` decorates Triton's own
library, and both last for the process: a process that imported Triton without it cannot run
interpreted kernels, and one that imported it with it cannot compile for a GPU. So test_fused_moe.py
(the interpreted kernels) is collected in-process only when this process started with
TRITON_INTERPRET=1; otherwise test_interpreted.py runs it in a child pytest with the variable set, and
nothing leaks into the other test directories.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
collect_ignore = [] if INTERPRETED else ["test_fused_moe.py"]


@pytest.fixture
def triton_installed():
    if importlib.util.find_spec("triton") is None:
        if os.environ.get("CI"):
            pytest.fail("Triton is not installed: pip install -e '.[dev]' (triton>=3.6)")
        pytest.skip("Triton is not installed")
