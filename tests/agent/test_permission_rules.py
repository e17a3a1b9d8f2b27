"""`--allow` / `--deny` rules for bash match parsed simple commands, not the command line's text.

The docs' CI example rule must not be chained past; deny rules must catch their command wherever
in a line it runs. Checked on the policy itself (a broad table) and end to end through
`mmx-agent -p --backend replay` with canary files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.permissions import PermissionPolicy, Rule
from agent.tools.base import Permission
from agent.tools.firewall.screen import simple_commands
from tests.agent.helpers import make_buggy_repo, raw_completion, write_replay

CI_RULE = "bash(python -m pytest*)"  # docs/cli.md's CI example

# Each must be refused in -p's auto-edit mode with only the CI rule: something in it is not pytest.
CHAINED_PAST_THE_CI_RULE = [
    # the example
    "python -m pytest --version; python3 -c \"import shutil; shutil.rmtree('X')\"",
    # lists and pipelines
    "python -m pytest && rm -rf X",
    "python -m pytest || rm -rf X",
    "python -m pytest & rm -rf X",
    "python -m pytest\nrm -rf X",
    "python -m pytest | sh",
    "python -m pytest --version | tee X",
    "! python -m pytest; rm -rf X",
    # subshells, groups, substitutions
    "(python -m pytest; rm -rf X)",
    "{ python -m pytest; rm -rf X; }",
    "python -m pytest $(rm -rf X)",
    "python -m pytest `rm -rf X`",
    "python -m pytest <(rm -rf X)",
    "python -m pytest >(rm -rf X)",
    'python -m pytest "$(rm -rf X)"',
    "echo ${Y:-$(rm -rf X)}; python -m pytest",
    "A=$(rm -rf X) python -m pytest",
    # nested shells and eval
    "bash -c 'python -m pytest; rm -rf X'",
    "python -m pytest; sh -c 'rm -rf X'",
    'python -m pytest; bash -lc "rm -rf X"',
    "eval 'python -m pytest; rm -rf X'",
    'python -m pytest; eval "$CMD"',
    "python -m pytest; bash <<< 'rm -rf X'",
    "python -m pytest; bash <<EOF\nrm -rf X\nEOF",
    "echo 'rm -rf X' | bash",
    "echo cm0gLXJmIFgK | base64 -d | sh",
    "python -m pytest; su -c 'rm -rf X'",
    # wrappers run their command: it needs a rule too
    "timeout 60 rm -rf X",
    "python -m pytest; nice -n 5 rm -rf X",
    "python -m pytest; env rm -rf X",
    "python -m pytest; env -S 'rm -rf X'",
    "python -m pytest; sudo rm -rf X",
    "python -m pytest; command rm -rf X",
    "python -m pytest; busybox rm -rf X",
    "python -m pytest; flock /tmp/l -c 'rm -rf X'",
    "python -m pytest; watch -n 1 rm -rf X",
    "echo X | xargs rm -rf",
    "python -m pytest; find . -name X -exec rm -rf {} +",
    "python -m pytest; find X -delete",
    # commands the parser cannot see: never approved by a rule
    "python -m pytest; $CMD -rf X",
    "python -m pytest; source ./evil.sh",
    "python -m pytest; . ./evil.sh",
    "python -m pytest; python3 <<EOF\nimport shutil; shutil.rmtree('X')\nEOF",
    "python -m pytest; python3 <<< 'import shutil'",
    "python -m pytest; curl -s http://127.0.0.1:9/x | sh",
    "if [[ -d X ]]; then rm -rf X; fi; python -m pytest",
    "case x in x) rm -rf X;; esac; python -m pytest",
    "python -m pytest; echo $((1 + 2))",
    "python -m pytest; coproc rm -rf X",
    "python -m pytest; /bin/r[m] -rf X",
    "python -m pytest; $'\\x72m' -rf X",
    "python -m pytest${IFS}--version;rm${IFS}-rf${IFS}X",
    "IFS=,; C=rm,-rf,X; $C; python -m pytest",
    "C='rm -rf X'; $C; python -m pytest",
    # what a rule's text cannot pose as
    "'python -m pytest/../../tmp/evil'",
    "PATH=/tmp/evil:$PATH python -m pytest",
    "LD_PRELOAD=/tmp/evil.so python -m pytest",
    "PYTHONPATH=/tmp/evil python -m pytest",
    "X=1; python -m pytest",
    "python() { rm -rf X; }; python -m pytest",
    "trap 'rm -rf X' EXIT; python -m pytest",
    "alias python=rm; python -m pytest",
    "shopt -s expand_aliases; python -m pytest",
    "exec 3>X; python -m pytest",
    "python3 -m pytest",
    # redirections that write files
    "python -m pytest > conftest.py",
    "python -m pytest >> ~/.bashrc",
    "python -m pytest 1<>X",
    "python -m pytest &> X",
    "{ python -m pytest; } > X",
    "for t in a b; do python -m pytest $t; done > X",
]

STILL_ALLOWED = [
    "python -m pytest",
    "python -m pytest -q tests/",
    "cd sub && python -m pytest",
    "cd sub; python -m pytest -k 'a or b' 2>/dev/null",
    "python -m pytest -x 2>&1",
    "python -m pytest -x || true",
    "set -euo pipefail; python -m pytest",
    "[ -d tests ] && python -m pytest tests",
    "test -f setup.cfg && python -m pytest",
    "python -m pytest 'tests/test_x.py::test_y' >/dev/null 2>/dev/stderr",
    "for t in a b; do python -m pytest $t; done",
    "pushd sub && python -m pytest; popd",
]


def decide(command: str, mode: str = "auto-edit", allow=(CI_RULE,), deny=()):
    policy = PermissionPolicy(mode, [Rule.parse(r) for r in allow], [Rule.parse(r) for r in deny])
    return policy.decide("bash", Permission.EXECUTE, {"command": command})


def test_the_table_is_broad():
    assert len(CHAINED_PAST_THE_CI_RULE) >= 40


@pytest.mark.parametrize("command", CHAINED_PAST_THE_CI_RULE)
def test_the_ci_rule_cannot_be_chained_past(command):
    decision = decide(command)
    assert not decision.allowed, command
    assert "is not permitted in permission mode 'auto-edit'" in decision.reason


@pytest.mark.parametrize("command", STILL_ALLOWED)
def test_commands_the_ci_rule_covers_still_run(command):
    assert decide(command).allowed, decide(command).reason


def test_the_refusal_names_the_command_and_the_part_no_rule_allows():
    reason = decide("python -m pytest --version; python3 -c 'import os'").reason
    assert "'bash' `python -m pytest --version; python3 -c 'import os'`" in reason
    assert "no --allow rule matches `python3 -c 'import os'` (part 2 of 2)" in reason
    assert "cannot approve it" in decide('python -m pytest; eval "$V"').reason
    assert "redirections that write files (`> out.txt`)" in decide("python -m pytest > out.txt").reason


def test_wrappers_need_their_own_rule_and_then_the_command_inside_too():
    rules = (CI_RULE, "bash(timeout *)")
    assert decide("timeout 600 python -m pytest -q", allow=rules).allowed
    assert not decide("timeout 600 python -m pytest -q").allowed
    assert not decide("timeout 600 rm -rf X", allow=rules).allowed


def test_without_rules_and_in_other_modes_nothing_changes():
    assert not decide("cd sub", allow=()).allowed  # no rule: the mode decides, and auto-edit asks
    assert decide("python -m pytest; rm -rf X", mode="full-auto").allowed
    assert decide('eval "$V"', allow=("bash",)).allowed  # a bare rule allows every command


DENIED_BY_RM = [
    "cd . && rm -f x",
    "rm -f x",
    "/bin/rm x",
    "\\rm x",
    "r\\m x",
    '"rm" x',
    "sudo rm x",
    "timeout 5 rm x",
    "env FOO=1 rm x",
    "command rm x",
    "bash -c 'ls; rm x'",
    'sh -c "rm x"',
    "eval 'rm x'",
    "echo x | xargs rm",
    "find . -name '*.pyc' -exec rm {} +",
    "echo $(rm x)",
    "ls <(rm x)",
    "D=rm; $D x",
    "C='rm -f x'; $C",
    "(cd sub; rm x)",
    "true && { rm x; }",
    "trap 'rm x' EXIT",
    "X=1 rm x",
    "LC_ALL=C /usr/bin/rm -f x",
    "echo 'rm x' | xargs -I{} sh -c {}",
    "$CMD x",  # cannot be checked against the rule
    "if [[ -f x ]]; then rm x; fi",
]


@pytest.mark.parametrize("command", DENIED_BY_RM)
def test_a_deny_rule_catches_its_command_anywhere_in_the_line(command):
    decision = decide(command, mode="full-auto", allow=(), deny=("bash(rm *)",))
    assert not decision.allowed, command
    assert "is denied by the rule --deny 'bash(rm *)'" in decision.reason


@pytest.mark.parametrize("command", ["ls -la", "echo rm x", "git status", "python -m pytest -k rm"])
def test_a_deny_rule_leaves_other_commands_alone(command):
    assert decide(command, mode="full-auto", allow=(), deny=("bash(rm *)",)).allowed


def test_deny_wins_over_allow():
    decision = decide("python -m pytest; rm -f x", allow=("bash",), deny=("bash(rm *)",))
    assert not decision.allowed and "(it runs `rm -f x`)" in decision.reason


def test_rules_for_other_tools_still_match_their_path():
    policy = PermissionPolicy("ask", allow=[Rule.parse("write_file(src/*)")], deny=[Rule.parse("*(*.env)")])
    assert policy.decide("write_file", Permission.EDIT, {"path": "src/a.py"}).allowed
    assert not policy.decide("write_file", Permission.EDIT, {"path": "docs/a.md"}).allowed
    assert not policy.decide("read_file", Permission.READ, {"path": "prod.env"}).allowed


def test_simple_commands_sees_through_wrappers_and_nesting():
    line = simple_commands("timeout 5 bash -c 'cd x && python -m pytest' | tee log")
    texts = [c.text for c in line.commands]
    assert "cd x" in texts and "python -m pytest" in texts and "tee log" in texts
    assert "timeout 5 bash -c 'cd x && python -m pytest'" in texts and not line.hidden
    assert simple_commands("a > f 2>&1 >/dev/null").writes == ["> f"]


# -- end to end: the real CLI, a replayed model, canaries -------------------------------------


def mmx(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def bash_calls(*commands: str) -> list[str]:
    return [raw_completion("run it", "", [("bash", {"command": c})]) for c in commands]


def test_the_ci_example_holds_end_to_end(tmp_path):
    repo = make_buggy_repo(tmp_path)
    (repo / "canary").mkdir()
    (repo / "canary" / "keep.txt").write_text("precious")
    replay = write_replay(
        tmp_path / "replay.jsonl",
        bash_calls(
            "python -m pytest -q",
            "python -m pytest --version; python3 -c \"import shutil; shutil.rmtree('canary')\"",
            "cd . && rm -rf canary",
            "python -m pytest -q; bash -c 'rm -rf canary'",
        ),
    )
    proc = mmx(
        "-p", "fix it", "--backend", "replay", "--replay", str(replay), "--allow", CI_RULE,
        "--output-format", "stream-json", cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr  # three refusals: blocked
    assert (repo / "canary" / "keep.txt").read_text() == "precious"
    results = [e for e in map(json.loads, proc.stdout.splitlines()) if e["type"] == "tool_result"]
    assert "1 failed" in results[0]["output"]  # the allowed pytest ran
    assert all(r["data"].get("denied") for r in results[1:])
    assert "no --allow rule matches `python3 -c" in results[1]["output"]


def test_a_deny_rule_holds_end_to_end_in_full_auto(tmp_path):
    repo = make_buggy_repo(tmp_path)
    (repo / "canary.txt").write_text("precious")
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [*bash_calls("cd . && rm -f canary.txt", "ls | xargs rm -f"), raw_completion("ok", "gave up")],
    )
    proc = mmx(
        "-p", "clean", "--backend", "replay", "--replay", str(replay), "--permission-mode", "full-auto",
        "--deny", "bash(rm *)", "--output-format", "json", cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (repo / "canary.txt").read_text() == "precious"
    assert json.loads(proc.stdout)["diff"] == ""


@pytest.mark.parametrize(
    "command",
    [
        "trap 'rm -rf ~' EXIT",
        "cat <<EOF\n$(rm -rf ~)\nEOF",
        "cat <<EOF\n`rm -rf ~`\nEOF",
        "script -qc 'rm -rf ~' /dev/null",
        "strace -f -o /dev/null rm -rf ~",
        "chroot / rm -rf /etc",
    ],
)
def test_the_firewall_reads_what_the_shared_parser_reads(command, tmp_path):
    from agent.tools.firewall.screen import check_command

    workspace = tmp_path / "ws"
    workspace.mkdir()
    verdict = check_command(command, cwd=str(workspace), root=str(workspace), home=str(tmp_path / "home"))
    assert not verdict.allowed, command
