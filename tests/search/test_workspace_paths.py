from __future__ import annotations

import os

import pytest

from agent.tools.workspace_paths import WorkspacePathError, display_path, resolve_workspace_path


@pytest.fixture
def sandbox(tmp_path, make_sandbox):
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "escape")
    os.symlink(root / "src", root / "inside_link")
    return make_sandbox(root)


def test_relative_and_absolute_paths_inside(sandbox):
    root = sandbox.root
    assert resolve_workspace_path(sandbox, None) == root
    assert resolve_workspace_path(sandbox, ".") == root
    assert resolve_workspace_path(sandbox, "src/../src/x.py") == f"{root}/src/x.py"
    assert resolve_workspace_path(sandbox, f"{root}/src") == f"{root}/src"
    assert resolve_workspace_path(sandbox, "inside_link") == f"{root}/inside_link"
    assert display_path(sandbox, f"{root}/src/x.py") == "src/x.py"
    assert display_path(sandbox, root) == "."


@pytest.mark.parametrize("path", ["..", "../ws2", "src/../../x", "/etc/passwd"])
def test_lexical_escapes_are_refused(sandbox, path):
    with pytest.raises(WorkspacePathError, match="outside the workspace"):
        resolve_workspace_path(sandbox, path)


def test_symlink_escapes_are_refused(sandbox):
    with pytest.raises(WorkspacePathError, match="symlink"):
        resolve_workspace_path(sandbox, "escape/file.txt")
