"""Firewall rules checked without running anything: system paths, messages, git state, parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.tools.firewall.git_probe import SandboxGitProbe
from agent.tools.firewall.screen import check_command
from agent.tools.shell import Bash


@pytest.fixture
def check(workspace: Path, home: Path):
    def run(command: str, cwd: Path | None = None, probe=None):
        return check_command(
            command, cwd=str(cwd or workspace), root=str(workspace), home=str(home), git_probe=probe
        )

    return run


@pytest.mark.parametrize(
    "command",
    [
        "rm -rf /",
        "rm -rf /*",
        "rm -rf --no-preserve-root /",
        "sudo rm -rf /etc",
        "rm -rf /root",
        "dd if=/dev/zero of=/dev/sda",
        "mkfs.ext4 /dev/sda1",
        "echo x > /etc/passwd",
        "chown -R nobody /",
        "chmod -R 777 /usr",
        "mv /etc/hosts /etc/hosts.bak",
        "find / -name '*.log' -delete",
        "cp /dev/null /etc/hosts",
        "rm -rf ~root",
    ],
)
def test_system_paths_are_refused(check, command):
    verdict = check(command)
    assert not verdict.allowed and verdict.reasons


@pytest.mark.parametrize(
    "command", ["ls 2>/dev/null", "make > /dev/null 2>&1", "echo hi >&2", "echo x | tee /dev/stderr"]
)
def test_harmless_sinks_are_allowed(check, command):
    assert check(command).allowed


def test_the_refusal_says_what_why_and_what_to_do(check, workspace, home):
    verdict = check("rm -rf ~/projects")
    assert verdict.reasons == [f"would delete {home}/projects: outside the workspace ({home}/projects)"]
    message = verdict.message
    assert message.startswith(
        "Refused by the safety firewall (always on, in every permission mode); nothing was run"
    )
    assert f"outside the workspace ({workspace})" in message and f"resolved from {workspace}" in message
    assert "ask the user to run it themselves" in message


def test_unknown_values_are_refused_with_advice(check):
    for command in [
        "rm -rf $BUILD_DIR/",
        "rm -rf $(cat dirs.txt)",
        "read d; rm -rf $d",
        "rm -rf ${X:-/}",
        'rm -- "$@"',
    ]:
        verdict = check(command)
        assert not verdict.allowed, command
        assert "cannot be known before running" in verdict.reasons[0]
    assert "write the path out literally" in check("rm -rf $BUILD_DIR/").reasons[0]


def test_known_variables_and_loop_values_are_followed(check):
    assert check("rm -rf $(pwd)/build `pwd`/dist").allowed
    assert not check("cd .. && rm -rf $(pwd)/ws").allowed
    assert check("X=sub; rm -rf $X").allowed
    assert check("X=sub\nrm -rf $X").allowed
    assert check("for d in build dist; do rm -rf $d; done").allowed
    assert not check("for d in build /tmp; do rm -rf $d; done").allowed
    assert not check("export T=/tmp && rm -rf $T/x").allowed


def test_wrappers_keep_the_wrapped_command_intact(check):
    assert check("command -v rm").allowed
    assert not check("command -p rm -rf ~").allowed
    assert not check("flock -w 5 /tmp/lock -c 'rm -rf ~'").allowed
    assert check("flock /tmp/lock make").allowed
    assert not check('bash -c "rm -rf $SOMETHING"').allowed  # unknown inside a nested string
    assert not check("sudo -u root -- env -i nice -n 5 timeout -s KILL 10 rm -rf ~").allowed


def test_relative_paths_resolve_from_the_current_directory(check, workspace):
    (workspace / "sub").mkdir()
    assert check("rm -rf ../notes.txt", cwd=workspace / "sub").allowed
    assert not check("rm -rf ../../x", cwd=workspace / "sub").allowed
    assert check("cd sub && rm -rf ../notes.txt").allowed
    # the cd may fail: then `rm -rf x` runs in the old directory, which must be safe too
    assert not check("cd sub; rm -rf ../x").allowed
    assert check("cd sub && rm -rf ../x").allowed


def test_symlinks_removed_themselves_or_followed(check, workspace, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (workspace / "link").symlink_to(tmp_path / "elsewhere")
    assert check("rm link").allowed  # removes the link, not the directory it points to
    assert not check("rm -rf link/").allowed  # a trailing slash goes through the link
    assert not check("rm -rf link/*").allowed
    assert not check("echo x > link/file").allowed


def test_globs_at_the_root(check):
    assert check("rm -rf *").allowed
    assert not check("rm -rf .*").allowed
    assert not check("rm -rf .g*").allowed
    assert not check("shopt -s dotglob; rm -rf *").allowed
    assert not check("rm -rf */..").allowed  # names the root itself


def test_find_filters_that_could_reach_git(check):
    assert check("find . -name '*.pyc' -delete").allowed
    assert check("find . -not -path './.git/*' -name '*.bak' -delete").allowed
    assert not check("find . -name '*.pack' -delete").allowed
    assert not check("find . -iname HEAD -delete").allowed
    assert not check("find . -regex '.*~' -delete").allowed
    assert not check("find . -type f -delete").allowed


def test_git_lock_files_may_be_removed_but_nothing_else_in_git(check):
    assert check("rm -f .git/index.lock").allowed
    assert not check("rm -f .git/index").allowed


def test_parse_failures(check):
    assert check("echo 'unterminated").allowed  # no risky verb: bash reports the error itself
    verdict = check("rm -rf notes.txt 'unterminated")
    assert not verdict.allowed and "could not be parsed" in verdict.reasons[0]
    assert not check("echo $(( 2 + 2 )); rm -rf ~").allowed  # bashlex fails; the fallback still sees rm
    assert not check('[[ -n x ]] && echo "$(rm -rf ~)"').allowed


def test_git_commands_without_a_probe_are_refused_conservatively(check):
    verdict = check("git reset --hard")
    assert not verdict.allowed and "not inspected" in verdict.reasons[0]
    assert check("git reset --soft HEAD~1").allowed
    assert check("git restore --staged notes.txt").allowed
    assert check("git clean -n").allowed


def test_git_checks_read_the_real_repository(check, repo, ctx, git):
    probe = SandboxGitProbe(ctx.sandbox)
    index_before = (repo / ".git" / "index").read_bytes()
    assert check("git reset --hard", probe=probe).allowed  # clean tree: nothing to lose
    (repo / "notes.txt").write_text("changed\n")
    (repo / "other.txt").write_text("new\n")
    git(repo, "add", "other.txt")
    index_before = (repo / ".git" / "index").read_bytes()

    verdict = check("git reset --hard", probe=probe)
    assert not verdict.allowed
    assert verdict.reasons == ["git reset --hard would throw away uncommitted changes: notes.txt, other.txt"]
    assert not check("git checkout -- notes.txt", probe=probe).allowed
    assert check("git checkout -- .gitignore", probe=probe).allowed  # that file is clean
    assert check("git checkout -b topic", probe=probe).allowed
    assert not check("git restore notes.txt", probe=probe).allowed
    assert check("git restore --staged other.txt", probe=probe).allowed
    assert not check("git -C sub/.. checkout .", probe=probe).allowed

    (repo / "debug.log").write_text("ignored\n")
    assert check("git clean -fd", probe=probe).allowed  # nothing untracked that is not ignored
    assert not check("git clean -fdx", probe=probe).allowed  # -x would delete debug.log
    (repo / "draft.txt").write_text("untracked\n")
    verdict = check("git clean -f", probe=probe)
    assert verdict.reasons == [
        "git clean would delete untracked files that no commit or checkpoint can bring back: draft.txt"
    ]
    # the probe reads without refreshing the user's index
    assert (repo / ".git" / "index").read_bytes() == index_before


def test_git_reset_runs_once_the_work_is_committed(ctx, repo, git):
    bash = Bash()
    (repo / "notes.txt").write_text("changed\n")
    refused = bash.run({"command": "git reset --hard"}, ctx)
    assert refused.data.get("refused") and "notes.txt" in refused.output
    assert (repo / "notes.txt").read_text() == "changed\n"
    # The check happens before the command runs, so the commit is its own call.
    assert bash.run({"command": "git commit -qam keep"}, ctx).ok
    assert bash.run({"command": "git reset --hard HEAD~1"}, ctx).ok
    assert (repo / "notes.txt").read_text() == "first line\nsecond line\n"


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        ("sed -i.bak -e s/a/b/ ../outside.txt", False),
        ("sed --in-place=.bak --expression=s/a/b/ ../outside.txt", False),
        ("sed -ni s/a/b/p ../outside.txt", False),
        ("sed -e s/a/b/ -i ../outside.txt", False),
        ("sed -f fix.sed --in-place ../outside.txt", False),
        ("sed -i s/a/b/ notes.txt ../outside.txt", False),
        ("sed s/a/b/ ../outside.txt", True),  # prints; writes nothing
        ("sed -i s/a/b/ notes.txt", True),
        ("sed -e s/a/b/ -- ../outside.txt", True),
        ("perl -i.bak -pe s/a/b/ ../outside.txt", False),
        ("perl -pi -e s/a/b/ ../outside.txt", False),
        ("perl -Ilib -i -p fix.pl ../outside.txt", False),
        ("perl -pe s/a/b/ ../outside.txt", True),
        ("perl -i -pe s/a/b/ notes.txt", True),
    ],
)
def test_in_place_editors_are_read_option_by_option(check, command, allowed):
    assert check(command).allowed is allowed
