"""benchmarks/gpu_moe.py: a clean exit without CUDA, and its GPU code path run by the interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_moe.py"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_and_exits_0():
    done = run()
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout


@pytest.mark.usefixtures("triton_installed")
def test_interpret_smoke_runs_every_case():
    """Tiny shapes, same functions: layer building (FP8 emulated), the correctness check against the
    torch path, both kernel paths, the tile sweep, timing and the report."""
    done = run("--interpret-smoke", "--sweep")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line[:4] in ("fp16", "fp8 ")]
    cases = {(r[0], r[1], r[3]) for r in rows if r[2] == "triton"}
    assert {(d, "1", "decode") for d in ("fp16", "fp8")} <= cases
    assert {(d, "40", "grouped") for d in ("fp16", "fp8")} <= cases
    assert sum(r[2] == "torch" for r in rows) == 6  # 3 token counts x 2 dtypes
    assert ("fp8", "40", "triton", "grouped", "fp8-act") in {tuple(r[:5]) for r in rows}
    assert any(r[2] == "sweep" for r in rows) and "FAILED" not in done.stdout
