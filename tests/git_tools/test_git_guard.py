"""git_guard: each override really stops its program, even for git commands our tools never run.

For every config key that names a program, the key is planted, then the git command that would
start the program runs in the sandbox with guarded_git_env (bare, without git_argv's flags), and
the canary must stay quiet; plain git then shows the plant works. Then: what the guard reads and
carries over.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field

import pytest

from agent.tools.git_guard import (
    ConfigEntry,
    carried_settings,
    git_argv,
    guarded_git_env,
    parse_scoped_listing,
    program_overrides,
)
from agent.tools.git_tools import GitCheckoutTool, GitCommitTool, GitStatusTool
from tests.git_tools.conftest import FAKE_SIGNATURE

CREDENTIAL_REQUEST = "protocol=https\nhost=example.invalid\n\n"


@dataclass
class Case:
    config: dict[str, str]  # key -> value; "{prog}" is the canary program's path
    trigger: list[str]  # the git command that would start it
    files: dict[str, str] = field(default_factory=dict)  # committed first
    input: str = ""
    body: str = "cat"  # what the program does after touching its canary
    tty: bool = False  # the trigger needs a terminal (pagers)


CASES = {
    "core.fsmonitor": Case({"core.fsmonitor": "{prog}"}, ["status"]),
    "core.hooksPath": Case({"core.hooksPath": "{hooks}"}, ["commit", "--allow-empty", "-m", "x"]),
    "filter clean": Case(
        {"filter.x.clean": "{prog}"},
        ["hash-object", "--path", "a.txt", "a.txt"],
        {".gitattributes": "*.txt filter=x\n"},
    ),
    "filter smudge": Case(
        {"filter.x.smudge": "{prog}"},
        ["cat-file", "--filters", "HEAD:a.txt"],
        {".gitattributes": "*.txt filter=x\n"},
    ),
    "filter process": Case(
        {"filter.x.process": "{prog}"},
        ["hash-object", "--path", "a.txt", "a.txt"],
        {".gitattributes": "*.txt filter=x\n"},
    ),
    "filter named with = and dots": Case(
        {"filter.a=b.C.d.clean": "{prog}"},
        ["hash-object", "--path", "a.txt", "a.txt"],
        {".gitattributes": "*.txt filter=a=b.C.d\n"},
    ),
    "diff.external": Case({"diff.external": "{prog}"}, ["diff", "HEAD~1"]),
    "diff.<driver>.textconv": Case(
        {"diff.x.textconv": "{prog}"},
        ["diff", "--no-ext-diff", "HEAD~1"],
        {".gitattributes": "*.txt diff=x\n"},
    ),
    "diff.<driver>.command": Case(
        {"diff.x.command": "{prog}"}, ["diff", "HEAD~1"], {".gitattributes": "*.txt diff=x\n"}
    ),
    "merge.<driver>.driver": Case(
        {"merge.x.driver": "{prog}"}, ["merge", "side"], {".gitattributes": "*.txt merge=x\n"}
    ),
    "core.pager": Case({"core.pager": "{prog}"}, ["log", "-1"], tty=True),
    "pager.<command>": Case({"pager.log": "{prog}"}, ["log", "-1"], tty=True),
    "core.editor": Case({"core.editor": "{prog}"}, ["commit", "--allow-empty"]),
    "sequence.editor": Case({"sequence.editor": "{prog}"}, ["rebase", "-i", "HEAD~1"]),
    "alias.<name>": Case({"alias.st": "!{prog}"}, ["st"]),
    "core.sshCommand": Case(
        {"core.sshCommand": "{prog}"}, ["ls-remote", "ssh://example.invalid/x"], body="exit 1"
    ),
    "core.gitProxy": Case(
        {"core.gitProxy": "{prog}"}, ["ls-remote", "git://example.invalid/x"], body="exit 1"
    ),
    "protocol ext:: allowed by the repository": Case(
        {"protocol.allow": "always"}, ["ls-remote", "ext::{prog}"], body="exit 1"
    ),
    "remote.<name>.uploadpack": Case(
        {"remote.up.url": "{root}", "remote.up.uploadpack": "{prog}"}, ["fetch", "up"], body="exit 1"
    ),
    "remote.<name>.receivepack": Case(
        {"remote.up.url": "{root}", "remote.up.receivepack": "{prog}"},
        ["push", "up", "HEAD:other"],
        body="exit 1",
    ),
    "credential.helper": Case(
        {"credential.helper": "!{prog}"}, ["credential", "fill"], input=CREDENTIAL_REQUEST
    ),
    "credential.<url>.helper": Case(
        {"credential.https://example.invalid.helper": "!{prog}"},
        ["credential", "fill"],
        input=CREDENTIAL_REQUEST,
    ),
    "trailer.<token>.cmd": Case(
        {"trailer.sign.cmd": "{prog}"}, ["interpret-trailers", "--trailer", "sign=x"], input="message\n"
    ),
    "core.askPass": Case({"core.askPass": "{prog}"}, ["credential", "fill"], input=CREDENTIAL_REQUEST),
    "gpg.program with commit.gpgSign": Case(
        {"gpg.program": "{prog}", "commit.gpgSign": "true"},
        ["commit", "--allow-empty", "-m", "x"],
        body=FAKE_SIGNATURE,
    ),
    "gpg.program with an explicit -S": Case(
        {"gpg.program": "{prog}"}, ["commit", "-S", "--allow-empty", "-m", "x"], body=FAKE_SIGNATURE
    ),
    "gpg.ssh.program": Case(
        {"gpg.format": "ssh", "gpg.ssh.program": "{prog}", "user.signingKey": "{outside}/key"},
        ["commit", "-S", "--allow-empty", "-m", "x"],
        body=FAKE_SIGNATURE,
    ),
    "gpg.ssh.defaultKeyCommand": Case(
        {"gpg.format": "ssh", "gpg.ssh.defaultKeyCommand": "{prog}"},
        ["commit", "-S", "--allow-empty", "-m", "x"],
        body="exit 1",
    ),
    "a filter from include.path": Case(
        {"include.path": "{root}/included.cfg"},
        ["hash-object", "--path", "a.txt", "a.txt"],
        {"included.cfg": '[filter "x"]\n\tclean = {prog}\n', ".gitattributes": "*.txt filter=x\n"},
    ),
}


def plant(arena, case: Case) -> None:
    program = arena.program("planted", case.body)
    hooks = arena.outside / "hooks"
    hooks.mkdir()
    (hooks / "pre-commit").write_text((arena.outside / "planted.sh").read_text())
    (hooks / "pre-commit").chmod(0o755)
    (arena.outside / "key").write_text("not a key\n")
    names = {"prog": program, "hooks": str(hooks), "root": str(arena.root), "outside": str(arena.outside)}
    arena.repo.write("a.txt", "a\n")
    for path, text in case.files.items():
        arena.repo.write(path, text.format(**names))
    arena.repo.commit_all("planted files")
    arena.repo.git("branch", "side")
    arena.repo.write("a.txt", "b\n")
    arena.repo.commit_all("main side")
    arena.repo.git("checkout", "-q", "side")
    arena.repo.write("a.txt", "c\n")
    arena.repo.commit_all("other side")
    arena.repo.git("checkout", "-q", "main")
    arena.repo.write("untracked.txt", "u\n")
    for key, value in case.config.items():
        arena.repo.git("config", key, value.format(**names))


def triggered(arena, case: Case, env: dict[str, str] | None) -> None:
    """Runs the trigger through the sandbox: with the guard's environment, or plain."""
    command = shlex.join(["git", *(part.format(prog=arena.outside / "planted.sh") for part in case.trigger)])
    if case.tty:
        command = shlex.join(["script", "-qec", command, "/dev/null"])
    if case.input:
        command = f"printf %s {shlex.quote(case.input)} | {command}"
    arena.repo.ctx.sandbox.exec(command, timeout=60, env=env or {}, confined=False)


@pytest.mark.parametrize("name", CASES)
def test_each_override_stops_its_program(arena, name):
    case = CASES[name]
    plant(arena, case)
    triggered(arena, case, guarded_git_env(arena.repo.ctx.sandbox, str(arena.root)))
    arena.assert_quiet(f"git {' '.join(case.trigger)} with the guard")
    triggered(arena, case, None)
    assert arena.ran() == ["planted"], f"plain `git {' '.join(case.trigger)}` did not run the planted {name}"


def test_with_git_argv_the_empty_diff_commands_are_not_even_consulted(arena):
    plant(arena, CASES["diff.external"])
    arena.repo.git("config", "diff.x.textconv", str(arena.outside / "planted.sh"))
    arena.repo.write(".gitattributes", "*.txt diff=x\n")
    env = guarded_git_env(arena.repo.ctx.sandbox, str(arena.root))
    for args in (["diff", "HEAD~1"], ["show"], ["log", "-p", "-1"]):
        result = arena.repo.ctx.sandbox.exec(shlex.join(git_argv(args)), env=env, confined=False)
        assert result.exit_code == 0 and "diff --git a/a.txt b/a.txt" in result.output, result.output
    arena.assert_quiet("diff, show and log -p")


def test_tracing_to_a_file_is_off_because_the_global_config_is_not_read(arena, tmp_path):
    trace = arena.outside / "trace.txt"
    (tmp_path / "home" / ".gitconfig").write_text(f"[trace2]\n\tnormalTarget = {trace}\n")
    assert GitStatusTool().run({}, arena.repo.ctx).ok
    assert not trace.exists()
    arena.plain_git("status")
    assert trace.exists()


def test_identity_comes_from_the_repository_first_then_the_users_global_config(arena):
    arena.repo.write("a.txt", "a\n")
    assert GitCommitTool().run({"message": "global identity", "all": True}, arena.repo.ctx).ok
    assert arena.repo.git("log", "-1", "--format=%an <%ae>").strip() == "Test User <test@example.com>"
    arena.repo.git("config", "user.email", "work@example.com")
    arena.repo.write("a.txt", "b\n")
    assert GitCommitTool().run({"message": "repository email", "all": True}, arena.repo.ctx).ok
    assert arena.repo.git("log", "-1", "--format=%an <%ae>").strip() == "Test User <work@example.com>"


def test_a_config_git_cannot_parse_stops_every_tool_with_gits_reason(arena):
    with open(arena.root / ".git" / "config", "a") as config:
        config.write("[core\n")
    result = GitStatusTool().run({}, arena.repo.ctx)
    assert not result.ok
    assert "git's configuration cannot be read, so no git command runs" in result.output
    assert "bad config line" in result.output


def test_parsing_and_choosing_overrides():
    listing = (
        "global\0user.name\nGlobal Name\0global\0user.email\nglobal@example.com\0"
        "global\0safe.directory\n/a\0global\0safe.directory\n/b\0"
        "local\0user.email\nlocal@example.com\0local\0core.bare\0"
        "local\0filter.lfs.process\ngit-lfs filter-process\0local\0filter.lfs.required\ntrue\0"
        "local\0diff.a.b.textconv\nx\0local\0pager.log\nless\0local\0alias.co\ncheckout\0"
        "local\0core.fsmonitor\nx\0"
    )
    entries = parse_scoped_listing(listing)
    assert ConfigEntry("local", "core.bare", None) in entries
    assert carried_settings(entries) == [
        ("user.name", "Global Name"),
        ("safe.directory", "/a"),
        ("safe.directory", "/b"),
    ]
    assert program_overrides(entries, {"sub.with.dots"}) == [
        ("filter.lfs.process", ""),  # `required` stays: git then refuses rather than store unfiltered
        ("diff.a.b.textconv", ""),
        ("pager.log", "false"),
        ("alias.co", ""),
        ("submodule.sub.with.dots.ignore", "dirty"),
    ]


def test_a_required_filter_makes_git_refuse_rather_than_store_unfiltered_content(arena):
    arena.repo.git("config", "filter.lfs.process", arena.program("lfs"))
    arena.repo.git("config", "filter.lfs.required", "true")
    arena.repo.write(".gitattributes", "*.bin filter=lfs\n")
    arena.repo.write("model.bin", "weights\n")
    result = GitCommitTool().run({"message": "x", "all": True}, arena.repo.ctx)
    assert not result.ok and "clean filter 'lfs' failed" in result.output
    arena.assert_quiet("git_commit with a required filter")
    assert (
        "model.bin"
        not in subprocess.run(
            ["git", "ls-files"], cwd=arena.root, capture_output=True, text=True, check=True
        ).stdout
    )


def test_checkout_writes_files_of_a_required_filter_as_stored_and_says_so(arena, tmp_path):
    home_config = tmp_path / "home" / ".gitconfig"  # what `git lfs install` writes
    home_config.write_text(
        home_config.read_text() + f'[filter "lfs"]\n\tprocess = {arena.program("lfs")}\n\trequired = true\n'
    )
    no_filter = ["-c", "filter.lfs.process=", "-c", "filter.lfs.required=false"]
    arena.repo.write(".gitattributes", "*.bin filter=lfs\n")
    arena.repo.write("model.bin", "stored on main\n")
    arena.repo.git(*no_filter, "add", "-A")
    arena.repo.git(*no_filter, "commit", "-qm", "main model")
    arena.repo.git("branch", "side", "HEAD~1")
    result = GitCheckoutTool().run({"target": "side"}, arena.repo.ctx)
    assert result.ok, result.output
    assert "Content filters (lfs) were not run" in result.output
    assert not (arena.root / "model.bin").exists()
    result = GitCheckoutTool().run({"target": "main"}, arena.repo.ctx)
    assert result.ok and result.data["branch"] == "main"
    assert (arena.root / "model.bin").read_text() == "stored on main\n"
    arena.assert_quiet("git_checkout with a required filter")
    assert arena.repo.git(*no_filter, "status", "--porcelain") == ""
