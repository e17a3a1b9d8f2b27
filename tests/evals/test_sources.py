"""Where repositories come from: --repos-dir (clone or bare mirror), a git source, GitHub last."""

from __future__ import annotations

import json

import pytest

from evals import sources
from evals.derive import diff_between
from evals.task import parse_task
from evals.validation import check_task
from tests.evals import synthetic


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def repo(tmp_path):
    """A repository whose tests are export-ignore'd (git archive would drop them) with a later commit."""
    path = tmp_path / "src-repo"
    path.mkdir()
    synthetic.git(path, "init", "-q", "-b", "main")
    synthetic.write(
        path,
        {
            "lib.py": "X = 1\n",
            "tests/test_lib.py": "def test(): pass\n",
            ".gitattributes": "tests export-ignore\n",
        },
    )
    base = synthetic.commit(path, "base", "2024-01-01T00:00:00+0000")
    synthetic.write(path, {"lib.py": "X = 2\n"})
    synthetic.commit(path, "later", "2024-01-02T00:00:00+0000")
    return path, base


def task_for(base: str, **fields) -> object:
    record = {
        "instance_id": "owner__lib-1",
        "repo": "owner/lib",
        "base_commit": base,
        "problem_statement": "x",
        "test_patch": "diff --git a/t b/t\n",
        "FAIL_TO_PASS": ["t::x"],
        **fields,
    }
    return parse_task(record)


def test_repos_dir_entries_may_be_clones_or_bare_mirrors(repo, tmp_path, private_cache):
    path, base = repo
    repos = tmp_path / "repos"
    repos.mkdir()
    synthetic.git(tmp_path, "clone", "-q", "--mirror", str(path), str(repos / "owner__lib"))
    tree = sources.materialize(task_for(base), repos)
    assert (tree.path / "lib.py").read_text() == "X = 1\n"  # the base, not the later commit
    assert (tree.path / "tests" / "test_lib.py").is_file()  # export-ignore does not drop tests
    assert not (tree.path / ".git").exists()
    clone_tree = sources.materialize(task_for(base, source={"git": str(path)}))
    assert clone_tree.digest == tree.digest and clone_tree.path == tree.path  # one cache entry per commit


def test_a_missing_base_commit_is_named(repo, private_cache):
    path, _ = repo
    with pytest.raises(sources.SourceError, match="base commit 0123abc is not in"):
        sources.materialize(task_for("0123abc", source={"git": str(path)}))


def test_without_a_network_the_github_fallback_says_what_to_do(monkeypatch, private_cache):
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")  # refuses https at once: no traffic leaves the machine
    with pytest.raises(sources.SourceError) as error:
        sources.materialize(task_for("abc"))
    message = str(error.value)
    assert (
        "https://github.com/owner/lib.git" in message
        and "--repos-dir" in message
        and "needs a network" in message
    )


def test_tree_digests_see_content_and_executable_bits(tmp_path):
    for name in ("a", "b"):
        synthetic.write(tmp_path / name, {"x.py": "1\n", "sub/y.sh": "echo\n"})
    assert sources.tree_digest(tmp_path / "a") == sources.tree_digest(tmp_path / "b")
    (tmp_path / "b" / "sub" / "y.sh").chmod(0o755)
    assert sources.tree_digest(tmp_path / "a") != sources.tree_digest(tmp_path / "b")


def test_patches_between_two_releases_apply_with_git(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    synthetic.write(old, {"pkg/mod.py": "A = 1\n", "tests/test_mod.py": "def test(): pass\n"})
    synthetic.write(
        new, {"pkg/mod.py": "A = 2\n", "tests/test_mod.py": "def test(): pass\n", "tests/test_new.py": "N\n"}
    )
    patch = diff_between(old, new, ["pkg/mod.py", "tests/test_new.py"])
    assert "diff --git a/pkg/mod.py b/pkg/mod.py" in patch and "new file mode" in patch
    synthetic.git(old, "init", "-q")
    (tmp_path / "p.diff").write_text(patch)
    synthetic.git(old, "apply", str(tmp_path / "p.diff"))
    assert (old / "pkg/mod.py").read_text() == "A = 2\n" and (old / "tests/test_new.py").read_text() == "N\n"


def test_validation_flags_flaky_tests_and_gold_failures(tmp_path):
    task = task_for("abc", FAIL_TO_PASS=["t::new"], PASS_TO_PASS=["t::old"])

    def record(agent: str, run: int, resolved: bool, outcomes: dict) -> None:
        job = tmp_path / agent / f"run-{run}" / task.instance_id
        job.mkdir(parents=True)
        entry = {"resolved": resolved, "infra_failure": None, "patch_is_None": False}
        (job / "report.json").write_text(json.dumps({task.instance_id: entry}))
        (job / "grading.json").write_text(json.dumps({"outcomes": outcomes}))

    record("gold", 1, True, {"t::new": "passed", "t::old": "passed"})
    record("gold", 2, False, {"t::new": "failed", "t::old": "passed"})
    record("empty", 1, False, {"t::new": "failed", "t::old": "passed"})
    record("empty", 2, False, {"t::new": "failed", "t::old": "passed"})
    check = check_task(task, tmp_path / "gold", tmp_path / "empty", 2)
    assert not check.valid
    assert check.flaky_tests == {"gold": {"t::new": ["passed", "failed"]}}
    assert any("resolved it in 1 of 2 runs" in p for p in check.problems)
    assert any("flaky with the gold patch: t::new" in p for p in check.problems)
