import os

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Sessions, checkpoints, config and history go under tmp, never the real home."""
    home = tmp_path / "home"
    home.mkdir()
    for name, sub in (
        ("XDG_STATE_HOME", "state"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.setenv("HOME", str(home))
    for key in [k for k in os.environ if k.startswith("MMX_AGENT_")]:
        monkeypatch.delenv(key)
    return home
