"""The grader's rules that need no container: reading patches, the verdict, the pristine restore."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals import junit
from evals.grading import PRISTINE_SCRIPT, evaluate, patch_paths, unsafe_patch_reason
from evals.task import parse_task

TASK = parse_task(
    {
        "instance_id": "o__r-1",
        "repo": "o/r",
        "base_commit": "abc",
        "problem_statement": "x",
        "test_patch": "diff --git a/t b/t\n",
        "FAIL_TO_PASS": ["t.py::test_new"],
        "PASS_TO_PASS": ["t.py::test_old"],
    }
)


def test_patch_paths_read_headers_not_hunk_bodies():
    patch = (
        "diff --git a/q.sql b/q.sql\n--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,2 @@\n"
        "--- /etc/passwd\n+-- fine\n keep\n"
        'diff --git "a/t\\303\\251st.py" "b/t\\303\\251st.py"\nnew file mode 100644\n--- /dev/null\n'
        '+++ "b/t\\303\\251st.py"\n@@ -0,0 +1 @@\n+x\n'
        "diff --git a/old.py b/new.py\nsimilarity index 90%\nrename from old.py\nrename to new.py\n"
    )
    assert patch_paths(patch) == ["q.sql", "tést.py", "old.py", "new.py"]
    assert unsafe_patch_reason(patch) is None


@pytest.mark.parametrize(
    "patch, reason",
    [
        ("--- a/../outside.py\n+++ b/../outside.py\n", "outside the repository"),
        ("--- /etc/hosts\n+++ /etc/hosts\n", "outside the repository"),
        ("diff --git a/.git/config b/.git/config\n", "git's own files"),
        ("diff --git a/sub/.GIT/hooks/x b/sub/.GIT/hooks/x\n", "git's own files"),
        ("diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n", "symbolic link"),
    ],
)
def test_patches_reaching_outside_the_tree_are_refused(patch, reason):
    assert reason in unsafe_patch_reason(patch)


def test_resolved_needs_every_listed_test_passed_and_exit_status_zero():
    passed = {"t.py::test_new": junit.PASSED, "t.py::test_old": junit.PASSED}
    resolved, status, notes = evaluate(TASK, passed, 0)
    assert resolved and notes == []
    assert status["FAIL_TO_PASS"] == {"success": ["t.py::test_new"], "failure": []}
    assert set(status) == {"FAIL_TO_PASS", "PASS_TO_PASS", "FAIL_TO_FAIL", "PASS_TO_FAIL"}
    for outcome in (junit.SKIPPED, junit.XFAILED, junit.MISSING, junit.FAILED, junit.ERROR):
        resolved, status, _ = evaluate(TASK, {**passed, "t.py::test_new": outcome}, 1)
        assert not resolved and status["FAIL_TO_PASS"]["failure"] == ["t.py::test_new"]
    resolved, _, notes = evaluate(TASK, {**passed, "t.py::test_old": junit.FAILED}, 0)
    assert not resolved and any("tampered" in note for note in notes)
    resolved, _, notes = evaluate(TASK, passed, 1)
    assert not resolved and any("exited 1" in note for note in notes)


# -- pristine.py, run the way the grader runs it (python3 -I, as a script) -------------------------


def pristine(action: str, root: Path, store: Path, *extras: str) -> dict:
    script = store.parent / "pristine.py"
    script.write_bytes(PRISTINE_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-I", str(script), action, str(root), str(store), *extras],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def make_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_restore_puts_back_every_test_influencing_file_and_keeps_source_changes(tmp_path):
    root, store = tmp_path / "repo", tmp_path / "store"
    make_tree(
        root,
        {
            "src/pkg/mod.py": "BUG = 1\n",
            "src/pkg/data.txt": "data\n",
            "tests/test_a.py": "def test_a(): assert False\n",
            "tests/conftest.py": "FIXTURES = 1\n",
            "setup.cfg": "[tool:pytest]\n",
            "testing/helpers.py": "H = 1\n",
            "docs/test_notes.txt": "a doc\n",
            ".git/config": "[core]\n",
        },
    )
    assert pristine("save", root, store, "docs/extra.py") == {"saved": 4}
    # What a cheating patch might do, next to a real fix:
    make_tree(
        root,
        {
            "src/pkg/mod.py": "BUG = 0\n",
            "tests/test_a.py": "def test_a(): assert True\n",
            "tests/__init__.py": "",
            "conftest.py": "# force passes\n",
            "src/sitecustomize.py": "import os\n",
            "src/evil.pth": "import os\n",
            "sub/pytest.ini": "[pytest]\n",
            "src/pkg.egg-info/entry_points.txt": "[pytest11]\nx = pkg.x\n",
            "src/pkg/__pycache__/mod.cpython-311.pyc": "forged",
            "setup.cfg": "[tool:pytest]\naddopts = -p pkg.cheat\n",
            "testing/helpers.py": "H = 2\n",
            "docs/extra.py": "new\n",
        },
    )
    (root / "tests" / "conftest.py").unlink()
    summary = pristine("restore", root, store, "docs/extra.py")
    assert sorted(summary["removed"]) == sorted(
        [
            "conftest.py",
            "docs/extra.py",
            "src/evil.pth",
            "src/pkg.egg-info/entry_points.txt",
            "src/sitecustomize.py",
            "sub/pytest.ini",
            "tests/__init__.py",
        ]
    )
    assert sorted(summary["restored"]) == [
        "setup.cfg",
        "testing/helpers.py",
        "tests/conftest.py",
        "tests/test_a.py",
    ]
    assert summary["pycache_dirs_dropped"] == 1
    assert (root / "src/pkg/mod.py").read_text() == "BUG = 0\n"  # the fix itself stays
    assert (root / "tests/test_a.py").read_text() == "def test_a(): assert False\n"
    assert (root / "tests/conftest.py").read_text() == "FIXTURES = 1\n"
    assert (root / "setup.cfg").read_text() == "[tool:pytest]\n"
    assert (root / ".git/config").read_text() == "[core]\n"


def test_restore_replaces_a_test_directory_swapped_for_a_symlink(tmp_path):
    root, store, elsewhere = tmp_path / "repo", tmp_path / "store", tmp_path / "elsewhere"
    make_tree(root, {"tests/test_a.py": "ORIGINAL\n"})
    make_tree(elsewhere, {"test_a.py": "FAKE\n"})
    pristine("save", root, store)
    (root / "tests" / "test_a.py").unlink()
    (root / "tests").rmdir()
    os.symlink(elsewhere, root / "tests")
    pristine("restore", root, store)
    assert not (root / "tests").is_symlink()
    assert (root / "tests" / "test_a.py").read_text() == "ORIGINAL\n"
    assert (elsewhere / "test_a.py").read_text() == "FAKE\n"  # never written through the link
