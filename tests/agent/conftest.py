import os

import pytest

from agent.backends.local.cpu_kernels import cache_root

# Built CPU kernels are a cache keyed by everything that changes them: the runs share the user's one
# rather than building them again (30 s) in every test's private home.
KERNEL_CACHE = str(cache_root())


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Sessions, checkpoints, config and history go under tmp, never the real home (built kernels
    excepted: see KERNEL_CACHE)."""
    home = tmp_path / "home"
    home.mkdir()
    for name, sub in (
        ("XDG_STATE_HOME", "state"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", KERNEL_CACHE)
    for key in [k for k in os.environ if k.startswith("MMX_AGENT_")]:
        monkeypatch.delenv(key)
    return home
