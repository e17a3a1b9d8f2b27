"""The firewall against a corpus of destructive and of ordinary commands, on a real file system.

The arena: a workspace that is a git repository with uncommitted work, a fake HOME and a
sacrificial directory next to the workspace, all under tmp_path. Every destructive command is
first checked to be refused, then handed to the bash tool, and the arena is compared byte for
byte with its snapshot: nothing may have been deleted, moved, truncated or re-permissioned.
Targets outside tmp_path (/, /etc, devices) appear only in test_firewall_rules.py, which never
executes anything.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.tools.base import ToolContext
from agent.tools.firewall.git_probe import SandboxGitProbe
from agent.tools.firewall.screen import check_command
from agent.tools.shell import Bash
from tests.sandbox_kinds import KINDS, open_sandbox

DESTRUCTIVE = [
    # home and the sacrificial directory, plainly
    "rm -rf ~",
    "rm -rf ~/*",
    "rm -rf $HOME",
    'rm -rf "$HOME/docs"',
    "rm -f ${HOME}/.bashrc",
    "rm -rf ../outside",
    "rm -rf {out}",
    "rm -rf {out}/*",
    "rm -f {out}/keep.txt",
    "rmdir {out}/emptydir",
    "unlink {out}/keep.txt",
    # the workspace root and its .git
    "rm -rf .",
    "rm -rf ./",
    "rm -rf {ws}",
    "rm -rf .git",
    "rm -rf .git/objects",
    "rm -rf .*",
    "rm -f .git/HEAD",
    # cd chains and subshells
    "cd .. && rm -rf outside",
    "cd .. ; rm -rf ws",
    "cd {tmp} && rm -rf ws/notes.txt outside",
    "cd sub && rm -rf ../../outside",
    "(cd .. && rm -rf outside)",
    "pushd .. && rm -rf outside",
    "cd link_out && rm -rf *",
    "true && rm -rf ../outside",
    "false || rm -rf ../outside",
    "ls; rm -rf ../outside",
    "ls | rm -rf ../outside",
    # wrappers
    "sudo rm -rf ~/docs",
    "env FOO=1 rm -rf ~/docs",
    "env -C .. rm -rf outside",
    "nice -n 10 rm -rf ../outside",
    "nohup rm -rf ../outside",
    "timeout 5 rm -rf ~/docs",
    "time rm -rf ../outside",
    "command rm -rf ../outside",
    "exec rm -rf ../outside",
    "/bin/rm -rf ../outside",
    "\\rm -rf ../outside",
    "flock lockfile rm -rf ../outside",
    "echo ../outside | xargs rm -rf",
    "echo ~/docs | xargs -I{} rm -rf {}",
    # nested shells, substitutions, functions, loops
    "sh -c 'rm -rf ~/docs'",
    'bash -c "cd .. && rm -rf outside"',
    "bash -lc 'rm -rf $HOME/docs'",
    "sudo bash -c 'rm -rf ../outside'",
    "eval 'rm -rf ../outside'",
    "echo $(rm -rf ../outside)",
    "echo `rm -rf ~/docs`",
    "cat <(rm -rf ../outside)",
    "wipe() { rm -rf ../outside; }; wipe",
    'for d in ~/docs ../outside; do rm -rf "$d"; done',
    'D=../outside; rm -rf "$D"',
    'rm -rf "$UNSET_VARIABLE"/',
    "echo 'rm -rf ../outside' | bash",
    "bash <<'EOF'\nrm -rf ../outside\nEOF",
    # what bashlex cannot parse
    "case x in x) rm -rf ../outside;; esac",
    "[[ -d ../outside ]] && rm -rf ../outside",
    "rm -rf ../outside 'unterminated",
    # find
    "find ~ -delete",
    "find ../outside -name '*.txt' -delete",
    "find {out} -exec rm -f {} +",
    "find . -delete",
    "find . -name '*' -delete",
    "find . -name index -delete",
    # moving, copying and linking over things
    "mv {out}/keep.txt ./stolen.txt",
    "mv notes.txt ~/.bashrc",
    "mv notes.txt ../outside/keep.txt",
    "mv -t ../outside notes.txt",
    "cp notes.txt ~/.bashrc",
    "cp -r sub ../outside/",
    "cp notes.txt .git/config",
    "install notes.txt ~/.bashrc",
    "ln -sf notes.txt ~/.bashrc",
    "rsync -a --delete sub/ ../outside/",
    # truncating and overwriting
    "echo x > ~/.bashrc",
    "echo x > ../outside/keep.txt",
    ": > ../outside/keep.txt",
    "ls >| ~/.bashrc",
    "ls &> ../outside/keep.txt",
    "echo x > link_out/keep.txt",
    "echo x > .git/HEAD",
    "dd if=/dev/zero of=../outside/keep.txt bs=1 count=1",
    "truncate -s 0 ~/.bashrc",
    "shred -u ../outside/keep.txt",
    "tee ../outside/keep.txt < notes.txt",
    "sed -i 's/a/b/' ~/.bashrc",
    "perl -pi -e 's/a/b/' ../outside/keep.txt",
    # recursive permissions
    "chmod -R 000 ../outside",
    "chmod -R 000 .",
    "chown -R nobody ~/docs",
    "chgrp -R nogroup .git",
    # discarding uncommitted work
    "git reset --hard",
    "git reset --hard HEAD~0",
    "git checkout -- notes.txt",
    "git checkout .",
    "git restore notes.txt",
    "cd sub && git checkout -- ../notes.txt",
    "git clean -fdx",
    "git clean -f",
    "git -C {ws} clean -fd",
]

ORDINARY = [
    "ls -la",
    "pytest -q",
    "python -m pytest tests/ -x",
    "make && make test",
    "npm run build",
    "npm test -- --watch=false",
    "cargo build --release",
    "go test ./...",
    "tox -e py311",
    "git status",
    "git add -A && git commit -m 'msg'",
    "git commit -am 'fix: thing'",
    "git log --oneline | head -5",
    "git diff HEAD~1",
    "git checkout -b feature",
    "git switch main",
    "git stash",
    "git checkout main",
    "git reset --soft HEAD~1",
    "git reset --hard HEAD",
    "git restore --staged notes.txt",
    "git checkout -- notes.txt",
    "git clean -n",
    "git clean -fd",
    "git push origin feature",
    "rm notes.txt",
    "rm -f build/out.o",
    "rm -rf build",
    "rm -rf build/*",
    "rm -rf *",
    "cd sub && rm -rf *",
    "rm -r sub/",
    "rm -rf node_modules dist .pytest_cache",
    "rm .git/index.lock",
    "mv notes.txt docs/notes.md",
    "mv a.txt b.txt",
    "mv sub renamed",
    "mv notes.txt .",
    "cp notes.txt backup.txt",
    "cp -r sub sub_copy",
    "cp ~/.bashrc ./bashrc.copy",
    "echo hello > out.txt",
    "echo more >> out.txt",
    "echo log >> ~/.bashrc_history",
    "cat notes.txt 2>/dev/null",
    "ls > listing.txt 2>&1",
    "python script.py > /dev/null 2>&1",
    "find . -name '*.pyc' -delete",
    "find . -type d -name __pycache__ -exec rm -rf {} +",
    "find build -type f -delete",
    "find . -path ./.git -prune -o -name '*.tmp' -exec rm {} \\;",
    "find . -name '*.o' | xargs rm -f",
    "git ls-files -z '*.orig' | xargs -0 rm -f",
    "sed -i 's/foo/bar/' notes.txt",
    "chmod +x run.sh",
    "chmod -R u+w sub",
    "touch new.txt && mkdir -p a/b/c",
    "tar czf out.tgz sub",
    "grep -rn TODO . | head",
    "ln -s notes.txt link.txt",
    "ln -sf notes.txt link.txt",
    "truncate -s 0 out.txt",
    "dd if=/dev/zero of=blob.bin bs=1k count=1",
    "tee out.txt < notes.txt",
    "pip install -e .",
    "docker build -t app .",
    "rsync -a sub/ sub_copy/",
    "cd sub && cd .. && rm -rf build",
    'for f in *.tmp; do rm "$f"; done',
    'X=build; rm -rf "$X"',
    "echo $HOME ~",
    "python -c 'print(1)'",
    "(cd sub && make)",
    "export PATH=$PATH:./bin && make",
    "case $1 in x) echo x;; esac",
]


def _snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Every entry under root: type, permission bits and content (or link target)."""
    entries = {}
    for directory, dirnames, filenames in os.walk(root):
        if Path(directory) == skip or skip in Path(directory).parents:
            continue
        for name in dirnames + filenames:
            path = Path(directory) / name
            info = path.lstat()
            if path.is_symlink():
                entries[str(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[str(path)] = ("dir", info.st_mode)
            else:
                entries[str(path)] = ("file", info.st_mode, path.read_bytes())
    return entries


@pytest.fixture(scope="module", params=KINDS)
def arena(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("arena")
    home, outside, ws, state = root / "home", root / "outside", root / "ws", root / "state"
    for directory in (home / "docs", outside / "emptydir", outside / "nested", ws / "sub"):
        directory.mkdir(parents=True)
    (home / ".bashrc").write_text("export SAFE=1\n")
    (home / "docs" / "important.txt").write_text("do not lose\n")
    (outside / "keep.txt").write_text("sacrificial but must survive\n")
    (outside / "nested" / "deep.txt").write_text("deep\n")
    env = {
        "HOME": str(home),
        "XDG_STATE_HOME": str(state),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }

    def git(*args):
        subprocess.run(["git", *args], cwd=ws, env={**os.environ, **env}, check=True, capture_output=True)

    (ws / "notes.txt").write_text("committed\n")
    (ws / "sub" / "code.py").write_text("print('hi')\n")
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "initial")
    (ws / "notes.txt").write_text("committed\nplus uncommitted work\n")  # dirty
    (ws / "scratch.txt").write_text("untracked work\n")
    (ws / "link_out").symlink_to(outside)
    sandbox = open_sandbox(request.param, ws, env=env, shared=root, request=request)
    yield {
        "root": root,
        "home": home,
        "ws": ws,
        "state": state,
        "sandbox": sandbox,
        "snapshot": _snapshot(root, skip=state),
        "placeholders": {"out": str(outside), "ws": str(ws), "tmp": str(root)},
    }
    sandbox.close()


@pytest.mark.parametrize("template", DESTRUCTIVE, ids=range(len(DESTRUCTIVE)))
def test_destructive_command_is_refused_and_changes_nothing(arena, template):
    command = template
    for key, value in arena["placeholders"].items():
        command = command.replace("{" + key + "}", value)
    sandbox = arena["sandbox"]
    verdict = check_command(
        command,
        cwd=sandbox.root,
        root=sandbox.root,
        home=str(arena["home"]),
        git_probe=SandboxGitProbe(sandbox),
    )
    assert not verdict.allowed, f"allowed: {command}"  # never reaches the shell if this fails
    assert "Refused by the safety firewall" in verdict.message and verdict.reasons

    result = Bash().run({"command": command, "timeout": 20}, ToolContext(sandbox=sandbox))
    assert not result.ok and result.data.get("refused"), result.output
    assert _snapshot(arena["root"], skip=arena["state"]) == arena["snapshot"]


@pytest.fixture(scope="module", params=KINDS)
def clean_repo(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("clean")
    ws, home = root / "ws", root / "home"
    for directory in (ws / "sub", ws / "build", home):
        directory.mkdir(parents=True)
    env = {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    ident = ["-c", "user.name=T", "-c", "user.email=t@example.com"]
    (ws / "notes.txt").write_text("clean\n")
    (ws / "sub" / "code.py").write_text("pass\n")
    (ws / "build" / "Makefile").write_text("all:\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*ident, "commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=ws, env={**os.environ, **env}, check=True, capture_output=True)
    sandbox = open_sandbox(request.param, ws, env=env, shared=root, request=request)
    yield sandbox, str(home)
    sandbox.close()


@pytest.mark.parametrize("command", ORDINARY, ids=range(len(ORDINARY)))
def test_ordinary_command_is_allowed(clean_repo, command):
    sandbox, home = clean_repo
    verdict = check_command(
        command, cwd=sandbox.root, root=sandbox.root, home=home, git_probe=SandboxGitProbe(sandbox)
    )
    assert verdict.allowed, verdict.reasons


def test_corpus_sizes():
    assert len(DESTRUCTIVE) >= 50 and len(ORDINARY) >= 50


def test_ordinary_commands_really_run_inside_the_workspace(ctx, repo, git):
    bash = Bash()
    steps = [
        "mkdir -p build docs && touch build/out.o build/keep.o a.txt",
        "rm -f build/out.o",
        "mv a.txt docs/a.md",
        "cd build && rm -rf *",
        "cd .. && echo data > out.txt",
        "git add -A && git commit -q -m 'work'",
        "rm -rf build",
        "find . -name '*.md' -delete",
    ]
    for step in steps:
        result = bash.run({"command": step}, ctx)
        assert result.ok, (step, result.output)
    assert not (repo / "build").exists() and not (repo / "docs" / "a.md").exists()
    assert (repo / "out.txt").read_text() == "data\n"
    assert git(repo, "log", "--format=%s", "-1").strip() == "work"
