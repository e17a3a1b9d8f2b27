"""The CPU kernels' build cache: each torch installation builds once, never again, and never rebuilds
another's; concurrent first uses build once. Counted by builds (the notice each build prints), not timed."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

BUILD_NOTICE = "building the CPU decode kernels"


def venv_with_this_torch(path: Path) -> Path:
    """A second virtual environment holding the same packages at another path (links, not copies): its
    torch has its own include path, as a torch installed into another venv would."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    (site,) = path.glob("lib/python*/site-packages")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not (site / entry.name).exists():
            (site / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return path / "bin" / "python"


def generate(python: Path, checkpoint: Path, cache: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_EXTENSIONS_DIR", "MMX_AGENT_CPU_KERNELS")}
    env["XDG_CACHE_HOME"] = str(cache)
    command = [str(python), "-m", "agent", "model", "generate", str(checkpoint), "--prompt-ids", "1,2,3"]
    return subprocess.Popen(
        [*command, "--max-new-tokens", "2", "--greedy"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def builds(*processes: subprocess.Popen) -> int:
    count = 0
    for process in processes:
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, err
        assert "unavailable" not in err, err  # the kernels were used, not the fallback
        count += err.count(BUILD_NOTICE)
    return count


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs the tests to run in a virtual environment")
def test_two_venvs_alternating_build_once_each_and_concurrent_first_uses_build_once(
    tmp_path, random_checkpoint
):
    cache = tmp_path / "cache"
    first = Path(sys.executable)
    second = venv_with_this_torch(tmp_path / "second-venv")
    # Two processes at once on a cold cache: one builds, the other waits for it and loads its build.
    assert builds(generate(first, random_checkpoint, cache), generate(first, random_checkpoint, cache)) == 1
    assert builds(generate(second, random_checkpoint, cache)) == 1  # another torch path: its own build
    for _ in range(2):  # alternating from now on never builds again
        assert builds(generate(first, random_checkpoint, cache)) == 0
        assert builds(generate(second, random_checkpoint, cache)) == 0
    built = sorted(path.name for path in (cache / "mmx-agent" / "cpu-kernels").iterdir())
    assert len(built) == 2 and all(name.startswith("mmx_cpu_kernels_") for name in built), built
