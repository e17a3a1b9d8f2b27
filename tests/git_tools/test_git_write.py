from __future__ import annotations

import jsonschema
import pytest

from agent.tools import git_tools
from agent.tools.base import Permission
from agent.tools.git_tools import GitBranchTool, GitCheckoutTool, GitCommitTool, GitStatusTool


def test_schemas_and_permissions():
    permissions = {tool.name: tool.permission for tool in git_tools.TOOLS}
    assert permissions == {
        "git_status": Permission.READ,
        "git_diff": Permission.READ,
        "git_log": Permission.READ,
        "git_show": Permission.READ,
        "git_commit": Permission.EDIT,
        "git_branch": Permission.EDIT,
        "git_checkout": Permission.EDIT,
    }
    for tool in git_tools.TOOLS:
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
        assert tool.parameters["type"] == "object" and tool.description


def test_commit_given_paths_only(repo):
    repo.write("src/app.py", "def main():\n    return 2\n")
    repo.write("src/new.py", "NEW = 1\n")
    repo.write("other.txt", "not part of it\n")
    repo.write("README.md", "# Staged elsewhere\n")
    repo.git("add", "README.md")
    result = GitCommitTool().run({"message": "Change app", "paths": ["src"]}, repo.ctx)
    assert result.ok, result.output
    assert result.output.startswith(
        f"Committed {repo.git('rev-parse', '--short', 'HEAD').strip()} on main: Change app"
    )
    assert "2 files changed" in result.output
    assert repo.git("show", "--name-only", "--format=", "HEAD").split() == ["src/app.py", "src/new.py"]
    status = GitStatusTool().run({}, repo.ctx).data
    assert [e["path"] for e in status["staged"]] == ["README.md"]  # other staged work is left staged
    assert status["untracked"] == ["other.txt"]


def test_commit_all_and_staged(repo):
    repo.write("a.txt", "a\n")
    repo.write(".gitignore", "*.log\n")
    repo.write("debug.log", "noise\n")
    result = GitCommitTool().run({"message": "Everything", "all": True}, repo.ctx)
    assert result.ok and result.data["branch"] == "main"
    assert sorted(repo.git("show", "--name-only", "--format=", "HEAD").split()) == [".gitignore", "a.txt"]

    repo.write("b.txt", "b\n")
    repo.git("add", "b.txt")
    staged = GitCommitTool().run({"message": "Staged only\n\nWith a body."}, repo.ctx)
    assert staged.ok and staged.data["subject"] == "Staged only"
    assert repo.git("log", "-1", "--format=%B").strip() == "Staged only\n\nWith a body."


def test_commit_refusals(repo):
    nothing = GitCommitTool().run({"message": "x"}, repo.ctx)
    assert not nothing.ok and nothing.output.startswith("Nothing is staged.")
    assert not GitCommitTool().run({"message": "  "}, repo.ctx).ok
    unchanged = GitCommitTool().run({"message": "x", "paths": ["README.md"]}, repo.ctx)
    assert not unchanged.ok and "no changes" in unchanged.output
    assert not GitCommitTool().run({"message": "x", "paths": ["../../etc"]}, repo.ctx).ok


def test_commit_runs_no_hook(repo):
    # Hooks are programs in .git, which the model may have written: git_commit never runs them.
    hook = repo.root / ".git" / "hooks" / "pre-commit"
    hook.write_text('#!/bin/sh\ntouch "$GIT_DIR/../hook-ran"\nexit 1\n')
    hook.chmod(0o755)
    repo.write("a.txt", "a\n")
    result = GitCommitTool().run({"message": "x", "all": True}, repo.ctx)
    assert result.ok, result.output
    assert repo.git("log", "-1", "--format=%s").strip() == "x"
    assert not (repo.root / "hook-ran").exists()


def test_commit_without_identity_uses_fallback(repo):
    (repo.root.parent / "home" / ".gitconfig").write_text("[user]\n\tuseConfigOnly = true\n")
    repo.write("a.txt", "a\n")
    result = GitCommitTool().run({"message": "Anonymous", "all": True}, repo.ctx)
    assert result.ok, result.output
    assert "committed as mmx-agent" in result.output
    assert repo.git("log", "-1", "--format=%an <%ae>").strip() == "mmx-agent <mmx-agent@localhost>"


def test_branch_list_and_create(repo):
    created = GitBranchTool().run(
        {"action": "create", "name": "feature/x", "start_point": "HEAD~1"}, repo.ctx
    )
    assert created.ok and created.output.startswith("Created branch feature/x at ")
    listed = GitBranchTool().run({}, repo.ctx)
    assert [(b["name"], b["current"]) for b in listed.data["branches"]] == [
        ("feature/x", False),
        ("main", True),
    ]
    assert listed.output.splitlines()[1].startswith("* main ")
    assert listed.output.splitlines()[0].endswith(" Add readme")
    for bad in ("-x", "a..b", "bad name", ""):
        assert not GitBranchTool().run({"action": "create", "name": bad}, repo.ctx).ok
    assert not GitBranchTool().run({"action": "create", "name": "main"}, repo.ctx).ok  # exists already
    assert not GitBranchTool().run({"action": "delete"}, repo.ctx).ok


def test_branch_list_in_an_empty_repository(make_repo):
    empty = make_repo("empty")
    result = GitBranchTool().run({}, empty.ctx)
    assert result.ok and result.output == "No branches yet (no commits); HEAD is on main."


def test_checkout_branch_create_and_detached(repo):
    first = repo.git("rev-parse", "HEAD~1").strip()
    made = GitCheckoutTool().run({"target": "topic", "create": True}, repo.ctx)
    assert made.ok and made.output == "Now on branch topic"
    back = GitCheckoutTool().run({"target": "main"}, repo.ctx)
    assert back.ok and back.data == {
        "branch": "main",
        "sha": repo.git("rev-parse", "HEAD").strip(),
        "detached": False,
        "carried_over": [],
    }
    repo.git("tag", "v1", first)
    tagged = GitCheckoutTool().run({"target": "v1"}, repo.ctx)
    assert tagged.ok and tagged.data["detached"] and tagged.data["sha"] == first
    assert tagged.output == f"Now at {first[:12]} (detached HEAD)"
    by_sha = GitCheckoutTool().run({"target": first[:8]}, repo.ctx)
    assert by_sha.ok and by_sha.data["sha"] == first


def test_checkout_carries_non_conflicting_changes(repo):
    repo.git("branch", "side")
    repo.write("README.md", "# Edited, not committed\n")
    result = GitCheckoutTool().run({"target": "side"}, repo.ctx)
    assert result.ok and result.data["carried_over"] == ["README.md"]
    assert "Uncommitted changes carried over: README.md" in result.output
    assert (repo.root / "README.md").read_text() == "# Edited, not committed\n"


@pytest.mark.parametrize("untracked", [False, True])
def test_checkout_refuses_to_overwrite_work(repo, untracked):
    repo.git("checkout", "-q", "-b", "side")
    repo.write("src/app.py", "def main():\n    return 'side'\n")
    repo.write("notes.txt", "side notes\n")
    repo.commit_all("Side change")
    repo.git("checkout", "-q", "main")
    if untracked:
        repo.write("notes.txt", "my precious untracked notes\n")
        precious = repo.root / "notes.txt"
    else:
        repo.write("src/app.py", "def main():\n    return 'my precious edit'\n")
        precious = repo.root / "src" / "app.py"
    before = precious.read_text()
    result = GitCheckoutTool().run({"target": "side"}, repo.ctx)
    assert not result.ok
    assert result.output.startswith("Checkout refused: it would overwrite")
    assert ("notes.txt" if untracked else "src/app.py") in result.output
    assert "Nothing was changed" in result.output
    assert precious.read_text() == before
    assert repo.git("rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_checkout_bad_targets(repo):
    unknown = GitCheckoutTool().run({"target": "nope"}, repo.ctx)
    assert not unknown.ok and unknown.output.startswith("No branch, tag or commit by that name.")
    assert "starts with '-'" in GitCheckoutTool().run({"target": "-f"}, repo.ctx).output
    assert not GitCheckoutTool().run({"target": "x y", "create": True}, repo.ctx).ok
