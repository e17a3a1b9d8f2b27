from __future__ import annotations

from agent.tools.git_tools import (
    GitDiffTool,
    GitLogTool,
    GitShowTool,
    GitStatusTool,
    parse_numstat,
    parse_status,
)


def test_status_clean(repo):
    result = GitStatusTool().run({}, repo.ctx)
    assert result.ok
    assert result.output == "On branch main\nNothing to commit, working tree clean."
    assert result.data["branch"] == "main" and result.data["staged"] == []


def test_status_groups_every_kind_of_change(repo):
    repo.write("src/app.py", "def main():\n    return 2\n")
    repo.write("staged new.py", "x = 1\n")
    repo.git("add", "staged new.py")
    repo.git("mv", "README.md", "READ ME.md")
    repo.write("untracked/ü.txt", "u\n")
    result = GitStatusTool().run({}, repo.ctx)
    assert result.output.splitlines() == [
        "On branch main",
        "Staged (2):",
        "  renamed: README.md -> READ ME.md",
        "  added: staged new.py",
        "Not staged (1):",
        "  modified: src/app.py",
        "Untracked (1):",
        "  untracked/",
    ]
    assert result.data["staged"][0] == {"path": "READ ME.md", "status": "renamed", "orig_path": "README.md"}


def test_status_tracking_and_conflicts(make_repo, repo):
    clone = make_repo("clone", init=False)
    repo.git("clone", "-q", str(repo.root), str(clone.root))
    clone.write("new.txt", "n\n")
    clone.commit_all("Ahead")
    status = GitStatusTool().run({}, clone.ctx)
    assert status.output.splitlines()[0] == "On branch main, tracking origin/main (1 ahead)"
    assert (status.data["upstream"], status.data["ahead"], status.data["behind"]) == ("origin/main", 1, 0)

    repo.git("checkout", "-q", "-b", "other")
    repo.write("README.md", "# Other\n")
    repo.commit_all("Other side")
    repo.git("checkout", "-q", "main")
    repo.write("README.md", "# Main\n")
    repo.commit_all("Main side")
    # Setting the scene as the project's own helpers would: a confined command cannot write .git.
    repo.ctx.sandbox.exec("git merge other", cwd=str(repo.root), confined=False)
    conflicted = GitStatusTool().run({}, repo.ctx)
    assert "Conflicts (resolve, then commit) (1):\n  UU README.md" in conflicted.output


def test_status_outside_a_repository(make_repo):
    plain = make_repo("plain", init=False)
    result = GitStatusTool().run({}, plain.ctx)
    assert not result.ok and "not a git repository" in result.output


def test_parsers_handle_renames_and_binary():
    status = parse_status("## main...origin/main [ahead 2, behind 1]\0R  new name\0old name\0?? x\0")
    assert status["ahead"] == 2 and status["behind"] == 1
    assert status["staged"] == [{"path": "new name", "status": "renamed", "orig_path": "old name"}]
    assert parse_status("## No commits yet on main\0")["no_commits"] is True
    files = parse_numstat("1\t2\ta.py\0-\t-\timg.png\0" + "0\t0\t\0old.py\0new.py\0")
    assert files == [
        {"path": "a.py", "orig_path": None, "added": 1, "deleted": 2},
        {"path": "img.png", "orig_path": None, "added": None, "deleted": None},
        {"path": "new.py", "orig_path": "old.py", "added": 0, "deleted": 0},
    ]


def test_diff_unstaged_staged_paths_and_rev(repo):
    repo.write("src/app.py", "def main():\n    return 2\n")
    repo.write("README.md", "# Project\nMore.\n")
    unstaged = GitDiffTool().run({}, repo.ctx)
    assert unstaged.ok and "-    return 1\n+    return 2" in unstaged.output
    assert [f["path"] for f in unstaged.data["files"]] == ["README.md", "src/app.py"]

    only_app = GitDiffTool().run({"paths": ["src"]}, repo.ctx)
    assert [f["path"] for f in only_app.data["files"]] == ["src/app.py"]

    repo.git("add", "src/app.py")
    staged = GitDiffTool().run({"staged": True}, repo.ctx)
    assert [f["path"] for f in staged.data["files"]] == ["src/app.py"]
    assert staged.data["files"][0]["added"] == 1

    none_unstaged = GitDiffTool().run({"paths": ["src/app.py"]}, repo.ctx)
    assert none_unstaged.output == (
        "No unstaged changes in src/app.py. There are staged changes: use staged=true to see them."
    )
    against_first = GitDiffTool().run({"rev": "HEAD~1"}, repo.ctx)
    assert {f["path"] for f in against_first.data["files"]} == {"README.md", "src/app.py"}


def test_diff_is_capped(repo):
    repo.write("big.txt", "".join(f"line {i}\n" for i in range(5000)))
    repo.commit_all("Big")
    repo.write("big.txt", "".join(f"changed {i}\n" for i in range(5000)))
    result = GitDiffTool().run({}, repo.ctx)
    assert result.data["truncated"] is True
    assert len(result.output) < 31_000
    assert result.output.endswith("more lines not shown; narrow it with paths]")


def test_diff_refuses_bad_input(repo):
    assert "outside the workspace" in GitDiffTool().run({"paths": ["../x"]}, repo.ctx).output
    refused = GitDiffTool().run({"rev": "--output=/tmp/pwned"}, repo.ctx)
    assert not refused.ok and "starts with '-'" in refused.output
    unknown = GitDiffTool().run({"rev": "no-such-branch"}, repo.ctx)
    assert not unknown.ok and unknown.output.startswith("git failed:")


def test_log(repo):
    result = GitLogTool().run({}, repo.ctx)
    assert result.output.splitlines() == [
        f"{c['short_sha']} 2024-01-02 Test User: {s}"
        for c, s in zip(result.data["commits"], ["Add app", "Add readme"], strict=True)
    ]
    assert GitLogTool().run({"n": 1}, repo.ctx).data["commits"][0]["subject"] == "Add app"
    assert [c["subject"] for c in GitLogTool().run({"path": "README.md"}, repo.ctx).data["commits"]] == [
        "Add readme"
    ]
    assert GitLogTool().run({"rev": "HEAD~1"}, repo.ctx).data["commits"][0]["subject"] == "Add readme"


def test_log_of_an_empty_repository(make_repo):
    empty = make_repo("empty")
    result = GitLogTool().run({}, empty.ctx)
    assert result.ok and result.output == "No commits yet."


def test_show_commit_file_and_stat(repo):
    head = repo.git("rev-parse", "HEAD").strip()
    shown = GitShowTool().run({}, repo.ctx)
    assert shown.data["commit"] == head
    assert shown.output.startswith(f"commit {head}\nAuthor: Test User <test@example.com>\nDate:   2024-01-02")
    assert "+def main():" in shown.output
    stat = GitShowTool().run({"rev": "HEAD", "stat_only": True}, repo.ctx)
    assert "Add app\n\n src/app.py | 2 ++" in stat.output and "+def main" not in stat.output
    old_file = GitShowTool().run({"rev": "HEAD~1:README.md"}, repo.ctx)
    assert old_file.output == "# Project" and old_file.data["commit"] is None
    assert not GitShowTool().run({"rev": "nope"}, repo.ctx).ok
