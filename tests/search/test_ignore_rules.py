from __future__ import annotations

from agent.tools.search.ignore_rules import IgnoreRules, walk_workspace
from tests.search.conftest import write_tree


def test_nested_ignore_files_and_precedence(tmp_path, make_sandbox):
    root = write_tree(
        tmp_path / "ws",
        {
            ".gitignore": "*.tmp\nout/\n",
            "pkg/.gitignore": "!keep.tmp\nlocal_only.py\n",
            "pkg/.ignore": "ignored_by_ignore.py\n",
            "pkg/.rgignore": "!ignored_by_ignore.py\n",  # .rgignore beats .ignore in one directory
        },
    )
    rules = IgnoreRules(make_sandbox(root), str(root))
    assert rules.is_ignored("a.tmp", False)
    assert rules.is_ignored("pkg/a.tmp", False)
    assert not rules.is_ignored("pkg/keep.tmp", False)  # the deeper file decides
    assert rules.is_ignored("pkg/local_only.py", False)
    assert not rules.is_ignored("local_only.py", False)
    assert not rules.is_ignored("pkg/ignored_by_ignore.py", False)
    assert rules.is_ignored("out", True)
    assert not rules.is_ignored("out", False)  # "out/" only names directories


def test_walk_prunes_ignored_and_hidden_directories(tmp_path, make_sandbox):
    root = write_tree(
        tmp_path / "ws",
        {
            ".gitignore": "node_modules/\n",
            "node_modules/x/index.js": "",
            ".venv/lib.py": "",
            "src/app.py": "",
        },
    )
    sandbox = make_sandbox(root)
    entries = sorted(walk_workspace(sandbox, str(root), IgnoreRules(sandbox, str(root))))
    assert entries == [("src", True), ("src/app.py", False)]
    with_hidden = sorted(
        walk_workspace(sandbox, str(root), IgnoreRules(sandbox, str(root)), include_hidden=True)
    )
    assert (".gitignore", False) in with_hidden and (".venv/lib.py", False) in with_hidden


def test_ignore_files_through_symlinks_count_only_inside_the_workspace(tmp_path, make_sandbox):
    root = write_tree(tmp_path / "ws", {"shared.ignore": "*.tmp\n", "sub/x": ""})
    (tmp_path / "outside.ignore").write_text("*.py\n")
    (root / ".gitignore").symlink_to("shared.ignore")
    (root / "sub" / ".gitignore").symlink_to(tmp_path / "outside.ignore")  # not the workspace's to say
    rules = IgnoreRules(make_sandbox(root), str(root))
    assert rules.is_ignored("a.tmp", False) and rules.is_ignored("sub/a.tmp", False)
    assert not rules.is_ignored("sub/a.py", False)
