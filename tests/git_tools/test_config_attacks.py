"""Config the model can write must not make our git run a program.

Each test plants programs in `.git/config` (or `~/.gitconfig`, a file they include, hooks,
`.gitattributes`), runs our tools on the repository (git tools, the firewall's probe, checkpoints
and run diffs) and checks that no canary was touched. Then it runs plain git on the same
repository and checks that the canary *is* touched: the attack is real, so a quiet canary means
our git held, not that the trap was broken. Canaries live outside the workspace.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agent.tools.git_tools import (
    GitBranchTool,
    GitCheckoutTool,
    GitCommitTool,
    GitDiffTool,
    GitLogTool,
    GitShowTool,
    GitStatusTool,
)
from agent.tools.registry import run_tool
from agent.workspace_diff import diff_since, snapshot
from tests.git_tools.conftest import FAKE_SIGNATURE, Arena


def run_every_read_tool(arena: Arena) -> None:
    ctx = arena.repo.ctx
    for tool, args in [
        (GitStatusTool(), {}),
        (GitDiffTool(), {}),
        (GitDiffTool(), {"staged": True}),
        (GitDiffTool(), {"rev": "HEAD~1"}),
        (GitLogTool(), {"n": 3}),
        (GitShowTool(), {}),
        (GitBranchTool(), {}),
    ]:
        result = tool.run(args, ctx)
        assert result.ok, f"{tool.name} {args}: {result.output}"
        arena.assert_quiet(f"{tool.name} {args}")


def test_fsmonitor_in_repository_config(arena):
    arena.repo.git("config", "core.fsmonitor", arena.program("fsmonitor"))
    arena.repo.write("README.md", "# Changed\n")
    run_every_read_tool(arena)
    assert GitCommitTool().run({"message": "x", "all": True}, arena.repo.ctx).ok
    arena.assert_quiet("git_commit")
    # The firewall's probe: `git reset --hard` over uncommitted work is refused after a `git status`.
    # The firewall's probes; the commands are refused, so only the probes run git.
    arena.repo.write("README.md", "# Changed again\n")
    refused = run_tool("bash", {"command": "git reset --hard"}, arena.repo.ctx)
    assert not refused.ok and refused.data.get("refused"), refused.output
    arena.assert_quiet("the firewall's git status probe")
    arena.repo.write("untracked.txt", "would be lost\n")
    refused = run_tool("bash", {"command": "git clean -f"}, arena.repo.ctx)
    assert not refused.ok and refused.data.get("refused"), refused.output
    arena.assert_quiet("the firewall's git clean -n probe")
    arena.control("fsmonitor", "status")


def test_hooks_and_hooks_path(arena):
    hooks = arena.root / ".git" / "hooks"
    planted = ["pre-commit", "commit-msg", "post-commit", "reference-transaction", "post-checkout"]
    for hook in planted:
        (hooks / hook).write_text(Path(arena.program("hook")).read_text())
        (hooks / hook).chmod(0o755)
    ctx = arena.repo.ctx
    arena.repo.write("a.txt", "a\n")
    assert GitCommitTool().run({"message": "with hooks", "all": True}, ctx).ok
    assert GitBranchTool().run({"action": "create", "name": "side"}, ctx).ok
    assert GitCheckoutTool().run({"target": "side"}, ctx).ok
    arena.assert_quiet("git tools with hooks in .git/hooks")
    arena.control("hook", "commit", "--allow-empty", "-m", "control")

    in_workspace = arena.root / "githooks"
    in_workspace.mkdir()
    (in_workspace / "pre-commit").write_text(Path(arena.program("hooks-path")).read_text())
    (in_workspace / "pre-commit").chmod(0o755)
    arena.repo.git("config", "core.hooksPath", str(in_workspace))
    arena.repo.write("b.txt", "b\n")
    assert GitCommitTool().run({"message": "hooksPath", "paths": ["b.txt"]}, ctx).ok
    arena.assert_quiet("git_commit with core.hooksPath")
    arena.control("hooks-path", "commit", "--allow-empty", "-m", "control")


def test_clean_and_smudge_filters(arena):
    arena.repo.git("config", "filter.evil.clean", arena.program("clean"))
    arena.repo.git("config", "filter.evil.smudge", arena.program("smudge"))
    arena.repo.write(".gitattributes", "*.md filter=evil\n*.py filter=evil\n")
    ctx = arena.repo.ctx
    arena.stat_dirty("README.md", "# Tcejorp\n")
    run_every_read_tool(arena)
    assert GitCommitTool().run({"message": "filtered", "all": True}, ctx).ok
    assert GitCheckoutTool().run({"target": "HEAD~2"}, ctx).ok  # writes README.md and src/app.py
    assert GitCheckoutTool().run({"target": "main"}, ctx).ok
    arena.assert_quiet("git tools with a clean/smudge filter")
    assert (arena.root / "README.md").read_text() == "# Tcejorp\n"  # no filter, and no data lost
    arena.control("clean", "hash-object", "--path", "README.md", "README.md")
    arena.control("smudge", "cat-file", "--filters", "HEAD:README.md")


def test_long_running_filter_process(arena):
    arena.repo.git("config", "filter.proc.process", arena.program("process"))
    arena.repo.write(".gitattributes", "*.dat filter=proc\n")
    arena.repo.write("x.dat", "data\n")
    assert GitDiffTool().run({}, arena.repo.ctx).ok
    assert GitCommitTool().run({"message": "dat", "all": True}, arena.repo.ctx).ok
    arena.assert_quiet("git tools with filter.<driver>.process")
    assert arena.repo.git("show", "HEAD:x.dat") == "data\n"
    arena.control("process", "hash-object", "--path", "x.dat", "x.dat")


def test_external_diff_textconv_and_diff_command(arena):
    arena.repo.write(".gitattributes", "*.md diff=conv\n*.py diff=cmd\n")
    arena.repo.git("config", "diff.conv.textconv", arena.program("textconv"))
    arena.repo.git("config", "diff.cmd.command", arena.program("diff-command"))
    arena.repo.write("README.md", "# Changed\n")
    arena.repo.write("src/app.py", "def main():\n    return 2\n")
    arena.repo.commit_all("Change both")
    arena.repo.write("README.md", "# Changed again\n")
    run_every_read_tool(arena)
    shown = GitShowTool().run({}, arena.repo.ctx)
    assert "-# Project\n+# Changed" in shown.output and "+    return 2" in shown.output  # git's own diff
    arena.control("textconv", "diff", "--no-ext-diff", "HEAD~1", "HEAD", "--", "README.md")
    arena.control("diff-command", "diff", "HEAD~1", "HEAD", "--", "src/app.py")

    arena.repo.git("config", "diff.external", arena.program("external"))
    run_every_read_tool(arena)
    arena.control("external", "diff")


def test_signing_and_signature_checks(arena):
    gpg = arena.program("gpg", FAKE_SIGNATURE)
    arena.repo.git("config", "gpg.program", gpg)
    arena.repo.git("config", "commit.gpgSign", "true")
    arena.repo.write("a.txt", "a\n")
    committed = GitCommitTool().run({"message": "unsigned", "all": True}, arena.repo.ctx)
    assert committed.ok, committed.output
    arena.assert_quiet("git_commit with commit.gpgSign")
    assert "gpgsig" not in arena.repo.git("cat-file", "commit", "HEAD")
    arena.control("gpg", "commit", "--allow-empty", "-m", "signed by the fake gpg")
    assert "gpgsig" in arena.repo.git("cat-file", "commit", "HEAD")

    arena.repo.git("config", "log.showSignature", "true")
    run_every_read_tool(arena)
    arena.control("gpg", "log", "-1")

    arena.repo.git("config", "--unset", "gpg.program")
    arena.repo.git("config", "gpg.format", "ssh")
    arena.repo.git("config", "gpg.ssh.program", arena.program("ssh-keygen", FAKE_SIGNATURE))
    (arena.outside / "key").write_text("not a key\n")
    arena.repo.git("config", "user.signingKey", str(arena.outside / "key"))
    arena.repo.write("b.txt", "b\n")
    assert GitCommitTool().run({"message": "no ssh signature", "all": True}, arena.repo.ctx).ok
    arena.assert_quiet("git_commit with gpg.format=ssh")
    arena.control("ssh-keygen", "commit", "--allow-empty", "-m", "control")


def test_include_and_include_if_of_a_file_the_model_wrote(arena):
    arena.repo.write("evil.cfg", f"[core]\n\tfsmonitor = {arena.program('included')}\n")
    arena.repo.git("config", "include.path", "../evil.cfg")
    arena.repo.write("README.md", "# Changed\n")
    run_every_read_tool(arena)
    arena.control("included", "status")

    arena.repo.git("config", "--unset", "include.path")
    arena.repo.write("cond.cfg", f'[filter "x"]\n\tclean = {arena.program("include-if")}\n')
    arena.repo.write(".gitattributes", "*.md filter=x\n")
    arena.repo.git("config", "includeIf.onbranch:main.path", "../cond.cfg")
    arena.repo.git("config", f"includeIf.gitdir:{arena.root}/.git.path", "../cond.cfg")
    arena.stat_dirty("README.md", "# Degnahc\n")
    run_every_read_tool(arena)
    assert GitCommitTool().run({"message": "x", "all": True}, arena.repo.ctx).ok
    arena.assert_quiet("git tools with includeIf")
    arena.control("include-if", "hash-object", "--path", "README.md", "README.md")


def test_the_same_through_the_global_config(arena, tmp_path):
    home_config = tmp_path / "home" / ".gitconfig"  # GIT_CONFIG_GLOBAL and HOME of the test's env
    arena.repo.write("global.cfg", f"[diff]\n\texternal = {arena.program('global-include')}\n")
    home_config.write_text(
        home_config.read_text()
        + f"[core]\n\tfsmonitor = {arena.program('global-fsmonitor')}\n"
        + f"\thooksPath = {arena.outside}\n"
        + f'[filter "g"]\n\tclean = {arena.program("global-filter")}\n'
        + f"[include]\n\tpath = {arena.root / 'global.cfg'}\n"
    )
    (arena.outside / "pre-commit").write_text(Path(arena.program("global-hook")).read_text())
    (arena.outside / "pre-commit").chmod(0o755)
    arena.repo.write(".gitattributes", "*.md filter=g\n")
    arena.stat_dirty("README.md", "# Tcejorp\n")
    run_every_read_tool(arena)
    committed = GitCommitTool().run({"message": "global", "all": True}, arena.repo.ctx)
    assert committed.ok, committed.output
    arena.assert_quiet("git tools with a hostile ~/.gitconfig")
    # The identity in ~/.gitconfig still names the author.
    assert arena.repo.git("log", "-1", "--format=%an <%ae>").strip() == "Test User <test@example.com>"
    arena.control("global-fsmonitor", "status")
    arena.control("global-filter", "hash-object", "--path", "README.md", "README.md")
    arena.control("global-include", "diff", "HEAD~1")
    arena.control("global-hook", "commit", "--allow-empty", "-m", "control")


def test_programs_our_commands_never_start(arena, tmp_path):
    """Aliases, pagers, editors, transports, credentials and merge drivers: no git command of
    ours reaches them (git runs no alias for a built-in, never pages without a terminal, our
    commits take -m, we never fetch or merge); the overrides stop them anyway (test_git_guard.py)."""
    config = {
        "alias.status": "!" + arena.program("alias"),
        "alias.st": "!" + arena.program("alias"),
        "core.pager": arena.program("pager"),
        "pager.log": arena.program("pager"),
        "core.editor": arena.program("editor"),
        "sequence.editor": arena.program("editor"),
        "core.sshCommand": arena.program("ssh", "exit 1"),
        "core.gitProxy": arena.program("proxy", "exit 1"),
        "credential.helper": "!" + arena.program("credential"),
        "core.askPass": arena.program("askpass"),
        "remote.origin.url": str(tmp_path / "upstream"),
        "remote.origin.fetch": "+refs/heads/*:refs/remotes/origin/*",
        "remote.origin.uploadpack": arena.program("uploadpack", "exit 1"),
        "remote.origin.receivepack": arena.program("receivepack", "exit 1"),
        "merge.drv.driver": arena.program("merge-driver"),
    }
    for key, value in config.items():
        arena.repo.git("config", key, value)
    arena.repo.write(".gitattributes", "*.md merge=drv\n")
    arena.repo.commit_all("attributes")
    arena.repo.git("clone", "-q", "--bare", str(arena.root), str(tmp_path / "upstream"))
    ctx = arena.repo.ctx
    run_every_read_tool(arena)
    arena.repo.write("README.md", "# Ours\n")
    assert GitCommitTool().run({"message": "ours", "all": True}, ctx).ok
    assert GitCheckoutTool().run({"target": "theirs", "create": True, "start_point": "HEAD~1"}, ctx).ok
    arena.repo.write("README.md", "# Theirs\n")
    assert GitCommitTool().run({"message": "theirs", "all": True}, ctx).ok
    assert GitCheckoutTool().run({"target": "main"}, ctx).ok
    arena.assert_quiet("every git tool")

    arena.control("alias", "st")
    subprocess.run(
        ["script", "-qec", "git log -1", "/dev/null"],
        cwd=arena.root,
        env={**os.environ, **arena.repo.env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    assert (arena.outside / "pager.ran").exists(), "git log on a terminal did not run the pager"
    (arena.outside / "pager.ran").unlink()
    arena.control("editor", "commit", "--allow-empty")
    arena.control("ssh", "ls-remote", "ssh://example.invalid/x")
    arena.control("proxy", "ls-remote", "git://example.invalid/x")
    arena.control("credential", "credential", "fill", input="protocol=https\nhost=example.invalid\n\n")
    arena.repo.git("config", "--unset", "credential.helper")
    arena.control("askpass", "credential", "fill", input="protocol=https\nhost=example.invalid\n\n")
    arena.control("uploadpack", "fetch", "origin")
    arena.control("receivepack", "push", "origin", "main:other")
    arena.control("merge-driver", "merge", "theirs")


def test_a_submodule_with_its_own_filter(arena, make_repo):
    sub = make_repo("sub")
    sub.write("s.txt", "sub\n")
    sub.write(".gitattributes", "*.txt filter=subfilter\n")
    sub.commit_all("sub")
    arena.repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.root), "sm")
    arena.repo.git("config", "-f", ".gitmodules", "submodule.sm.ignore", "none")
    arena.repo.commit_all("Add submodule")
    module = arena.root / "sm"
    subprocess.run(
        ["git", "config", "filter.subfilter.clean", arena.program("submodule-filter")],
        cwd=module,
        check=True,
        env={**os.environ, **arena.repo.env},
    )
    (module / "s.txt").write_text("bus\n")
    os.utime(module / "s.txt", (1_000_000_000, 1_000_000_000))
    run_every_read_tool(arena)
    assert GitCheckoutTool().run({"target": "other", "create": True}, arena.repo.ctx).ok
    arena.assert_quiet("git tools on a repository with a submodule")
    arena.control("submodule-filter", "status")


def test_checkpoints_and_run_diffs(arena, tmp_path):
    """The store takes no config from the user's or the model's files; its own config, written
    into the store by an unconfined command, does not survive either."""
    ctx = arena.repo.ctx
    home_config = tmp_path / "home" / ".gitconfig"
    home_config.write_text(
        home_config.read_text() + f'[diff "conv"]\n\ttextconv = {arena.program("global-textconv")}\n'
    )
    arena.repo.write(".gitattributes", "*.md diff=conv filter=evil\n")
    start = snapshot(ctx)
    arena.repo.write("README.md", "# Changed\n")
    patch = diff_since(ctx, start)
    arena.assert_quiet("a run diff with a textconv in ~/.gitconfig")
    assert "+# Changed" in patch

    assert run_tool("write_file", {"path": "a.txt", "content": "1\n"}, ctx).ok  # the store exists now
    store = Path(ctx.checkpoint_store)
    with open(store / "config", "a") as config:
        config.write(
            f"[core]\n\tfsmonitor = {arena.program('store-fsmonitor')}\n\thooksPath = {arena.outside}\n"
            f'[filter "evil"]\n\tclean = {arena.program("store-filter")}\n'
        )
    (store / "info" / "attributes").unlink()
    arena.stat_dirty("README.md", "# Degnahc\n")
    assert run_tool("write_file", {"path": "a.txt", "content": "2\n"}, ctx).ok
    assert run_tool("undo", {}, ctx).ok
    arena.assert_quiet("checkpoints after the store's config was rewritten")

    # Plain git on a store left like that would run them.
    store_env = {
        "GIT_DIR": str(store),
        "GIT_WORK_TREE": str(arena.root),
        "GIT_INDEX_FILE": str(tmp_path / "i"),
    }
    with open(store / "config", "a") as config:
        config.write(f"[core]\n\tfsmonitor = {arena.program('store-fsmonitor')}\n")
    (store / "info" / "attributes").unlink()
    arena.repo.git("config", "-f", str(store / "config"), "filter.evil.clean", arena.program("store-filter"))
    arena.control("store-filter", "add", "-A", **store_env)
    arena.control("store-fsmonitor", "status", **store_env)
    arena.control("global-textconv", "diff", "HEAD", "--", "README.md")
