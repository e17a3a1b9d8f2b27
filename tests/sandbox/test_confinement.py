"""ConfinedSandbox under real bubblewrap and real Landlock, each forced: what a command may not do.

Every test runs in both modes (MMX_AGENT_CONFINEMENT is what the agent reads; here the mode is
passed directly). A machine that cannot give a mode skips its tests, except under CI=true, where
they fail (tests/sandbox_kinds.py: `unavailable`). Canaries sit outside the workspace, in a fake
HOME, and in the workspace's .git; after each attack they must be byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from agent.tools.base import ToolContext
from agent.tools.shell import Bash
from agent.tools.shell_jobs import kill_all_jobs
from sandbox.base import SandboxError
from sandbox.confinement.detect import ConfinementUnavailable, choose
from sandbox.confinement.sandbox import ConfinedSandbox, UnconfinedWarning
from tests.sandbox_kinds import open_confined

MODES = ("bwrap", "landlock")
GONE_WAIT_SECONDS = 30  # an upper bound for a loaded machine to finish a kill, not a timing claim


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def arena(tmp_path: Path) -> Path:
    """tmp_path/ws (a git repository with a commit), tmp_path/home (HOME) and tmp_path/outside."""
    ws, home, outside = tmp_path / "ws", tmp_path / "home", tmp_path / "outside"
    for directory in (ws, home, outside):
        directory.mkdir()
    (ws / "notes.txt").write_text("notes\n")
    (ws / "src").mkdir()
    (ws / "src" / "main.py").write_text("print('hi')\n")
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=ws, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=ws, check=True, env=env)
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *identity, "commit", "-qm", "init"], cwd=ws, check=True, env=env)
    (home / "canary").write_text("home canary\n")
    (outside / "canary").write_text("outside canary\n")
    return tmp_path


@pytest.fixture
def box(mode: str, arena: Path):
    sandbox = open_confined(arena / "ws", mode=mode, env={"HOME": str(arena / "home")})
    yield sandbox
    sandbox.close()


def run(sandbox: ConfinedSandbox, command: str) -> subprocess.CompletedProcess:
    result = sandbox.exec(command, timeout=60)
    return subprocess.CompletedProcess(command, result.exit_code, result.output)


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file and symlink under `directory` with its content (or target) and mode."""
    found = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            found[str(path)] = f"link {os.readlink(path)}"
        elif path.is_file():
            found[str(path)] = f"{oct(info.st_mode)} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    return found


def sleeping(marker: str) -> list[int]:
    """Live (not zombie) `sleep` processes on this host with `marker` as their argument."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            command_line = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if command_line.split(b"\0")[:2] == [b"sleep", marker.encode()] and state != "Z":
            found.append(int(name))
    return found


def started(marker: str, count: int) -> bool:
    """Whether `count` such sleeps are running (a background job needs a moment to get there)."""
    deadline = time.monotonic() + GONE_WAIT_SECONDS
    while len(sleeping(marker)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(sleeping(marker)) == count


def all_gone(marker: str) -> bool:
    deadline = time.monotonic() + GONE_WAIT_SECONDS
    while sleeping(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not sleeping(marker)


def unique_sleep() -> str:
    """A `sleep` whose command line no other process has: 1000.<random digits> seconds."""
    return f"1000.{uuid.uuid4().int % 10**12:012d}"


# -- the file system -----------------------------------------------------------------------------

OUTSIDE_ATTACKS = [
    "echo pwned > {canary}",
    "echo pwned >> {canary}",
    "rm -f {canary}",
    "mv {canary} {canary}.moved",
    "truncate -s 0 {canary}",
    "ln -sf /dev/null {canary}",
    "python3 -c 'import os; os.remove(\"{canary}\")'",
    "cp /etc/hostname {canary}",
    "touch {canary}.new",
]


@pytest.mark.parametrize("attack", OUTSIDE_ATTACKS)
@pytest.mark.parametrize("where", ["outside", "home"])
def test_nothing_outside_the_workspace_can_be_changed(box, arena, attack, where):
    canary = arena / where / "canary"
    before = fingerprint(arena / where)
    run(box, attack.format(canary=canary))  # under bwrap a path under /tmp is not even there
    assert fingerprint(arena / where) == before


GIT_ATTACKS = [
    "echo '[core] fsmonitor = touch /tmp/pwned' >> .git/config",
    "rm -rf .git",
    "rm -f .git/HEAD",
    "mv .git .git-moved",
    "mv .git/config .git/config.old",
    "printf x > .git/HEAD",
    "ln -s ../../src/main.py .git/hooks/pre-commit",
    "ln .git/hooks/pre-commit.sample .git/hooks/pre-commit",
    "ln .git/config src/config-link",
    "touch .git/index.lock",
    "find .git -type f -delete",
    "git -c user.name=t -c user.email=t@t commit --allow-empty -qm sneaky",
    "git update-ref -d refs/heads/main",
    'python3 -c \'open(".git/description", "w").write("x")\'',
]


@pytest.mark.parametrize("attack", GIT_ATTACKS)
def test_dot_git_cannot_be_written_or_deleted(box, arena, attack):
    git_dir = arena / "ws" / ".git"
    before = fingerprint(git_dir)
    result = run(box, attack)
    assert result.returncode != 0, result.stdout
    assert fingerprint(git_dir) == before
    assert not (arena / "ws" / "src" / "config-link").exists()


def test_a_name_for_dot_git_at_the_root_does_not_open_it(mode, arena):
    """A symlink to .git and a second hard link to a file in it, both made outside the model's reach
    (the model cannot make either: see the attacks above), give no way in."""
    ws = arena / "ws"
    os.symlink(".git", ws / "git-alias")
    os.link(ws / ".git" / "description", ws / "description-link")
    before = fingerprint(ws / ".git")
    with open_confined(ws, mode=mode) as sandbox:
        assert run(sandbox, "echo x >> git-alias/config").returncode != 0
        if mode == "landlock":  # bwrap binds by path: a hard link made before the session is a way in
            assert run(sandbox, "echo x >> description-link").returncode != 0
    assert fingerprint(ws / ".git") == before


def test_the_workspace_is_writable(box, arena):
    ws = arena / "ws"
    result = run(
        box,
        "echo more >> notes.txt && echo changed > src/main.py && mkdir -p src/pkg && echo new > src/pkg/a.py && rm src/pkg/a.py && mv src/main.py src/app.py",
    )
    assert result.returncode == 0, result.stdout
    assert (ws / "notes.txt").read_text() == "notes\nmore\n"
    assert (ws / "src" / "app.py").read_text() == "changed\n"
    assert not (ws / "src" / "pkg" / "a.py").exists()


def test_files_at_the_workspace_root(box, mode, arena):
    """bwrap: the root is as writable as the rest. Landlock: a command can make directories there
    (usable from the next command on) but not write, create or delete a file directly there."""
    ws = arena / "ws"
    first = run(box, "mkdir build && echo x > build/out.txt")
    second = run(box, "echo y > build/out.txt && cat build/out.txt")
    assert second.returncode == 0 and second.stdout.strip() == "y"
    created = run(box, "echo new > created.txt")
    removed = run(box, "rm notes.txt")
    if mode == "bwrap":
        assert first.returncode == 0 and created.returncode == 0 and removed.returncode == 0
        assert (ws / "created.txt").read_text() == "new\n" and not (ws / "notes.txt").exists()
    else:
        assert first.returncode != 0 and "Permission denied" in first.stdout
        assert created.returncode != 0 and not (ws / "created.txt").exists()
        assert removed.returncode != 0 and (ws / "notes.txt").exists()


def test_tmp_is_private_to_the_session(box, mode, arena):
    marker = f"mmx-confinement-{uuid.uuid4().hex}"
    result = run(box, f'echo secret > "$TMPDIR/{marker}" && cat "$TMPDIR/{marker}" && echo "$TMPDIR"')
    assert result.returncode == 0, result.stdout
    tmpdir = result.stdout.split()[-1]
    direct = run(box, f"echo x > /tmp/{marker}.direct")
    assert not Path(f"/tmp/{marker}.direct").exists()
    if mode == "bwrap":  # /tmp itself is a tmpfs of the session's: the host's files are not there
        assert direct.returncode == 0 and tmpdir == "/tmp" and not Path(f"/tmp/{marker}").exists()
        assert run(box, f"ls {arena / 'outside'}").returncode != 0
    else:  # a directory of the session's; the rest of /tmp is read-only
        assert direct.returncode != 0 and Path(tmpdir, marker).read_text() == "secret\n"
    box.close()
    assert not Path(tmpdir, marker).exists()


# -- processes -----------------------------------------------------------------------------------


def test_nothing_a_command_starts_outlives_the_session(box):
    seconds = unique_sleep()
    result = run(
        box,
        f"setsid sleep {seconds} & nohup sleep {seconds} >/dev/null 2>&1 & (sleep {seconds} &) ; echo started",
    )
    assert result.returncode == 0 and "started" in result.stdout
    assert started(seconds, 3)
    box.close()
    assert all_gone(seconds)


def test_background_jobs_are_confined_and_die_with_the_session(box, arena):
    ctx = ToolContext(box)
    seconds = unique_sleep()
    # Through the bash tool, so the firewall screens it first: an interpreter is what it cannot see.
    attack = f"python3 -c \"open('{arena / 'outside' / 'canary'}', 'w').write('pwned')\"; sleep {seconds}"
    job = Bash().run({"command": attack, "background": True}, ctx)
    assert job.ok, job.output
    assert started(seconds, 1)
    assert (arena / "outside" / "canary").read_text() == "outside canary\n"
    kill_all_jobs(ctx)
    assert all_gone(seconds)
    seconds = unique_sleep()
    assert Bash().run({"command": f"setsid sleep {seconds}", "background": True}, ctx).ok
    assert started(seconds, 1)
    box.close()
    assert all_gone(seconds)


def test_nothing_outlives_an_agent_killed_with_sigkill(mode, arena):
    seconds = unique_sleep()
    agent = textwrap.dedent(
        f"""
        from sandbox.confinement.sandbox import ConfinedSandbox
        box = ConfinedSandbox({str(arena / "ws")!r}, mode={mode!r})
        box.exec("setsid sleep {seconds} & nohup sleep {seconds} >/dev/null 2>&1 &", timeout=60)
        print("ready", flush=True)
        input()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", agent], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        assert started(seconds, 2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert all_gone(seconds)


def test_commands_cannot_signal_or_inspect_the_agent(box):
    me = os.getpid()
    assert run(box, f"kill -0 {me}").returncode != 0
    assert run(box, f"cat /proc/{me}/environ").returncode != 0
    # Nor hold the helper's channel open past the agent's death (the helper is its parent).
    assert run(box, "exec 3</proc/$PPID/fd/0 && echo opened").returncode != 0


def test_a_killed_helper_is_replaced_and_takes_its_processes_along(box):
    seconds = unique_sleep()
    assert run(box, f"setsid sleep {seconds} &").returncode == 0
    with pytest.raises(SandboxError, match="confinement helper died"):
        box.exec("kill -KILL $PPID; sleep 30", timeout=60)
    assert all_gone(seconds)
    assert run(box, "echo again").stdout.strip() == "again"


def test_no_capabilities_and_no_way_to_remount(box, mode):
    assert "CapEff:\t0000000000000000" in run(box, "grep CapEff /proc/self/status").stdout
    assert run(box, "mount -o remount,rw,bind /").returncode != 0
    # Writing the current value back changes nothing even if it were allowed.
    assert run(box, "cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname").returncode != 0


def test_system_sockets_are_hidden_under_bwrap(arena):
    """/run (docker.sock, D-Bus, systemd) is an empty tmpfs. Landlock cannot hide it (docs/safety.md)."""
    with open_confined(arena / "ws", mode="bwrap") as sandbox:
        assert run(sandbox, "ls -A /run").stdout.strip() == ""


def test_unix_sockets_of_the_machine_cannot_be_reached(box, arena):
    """docker.sock and D-Bus are such sockets. bwrap: /run and /tmp are not there. Landlock, which
    cannot hide them, refuses unix stream sockets altogether (seccomp)."""
    path = arena / "outside" / "service.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()
        client = f"import socket; socket.socket(socket.AF_UNIX).connect({str(path)!r}); print('connected')"
        (arena / "ws" / "src" / "client.py").write_text(client)
        result = run(box, "python3 src/client.py")
    assert result.returncode != 0 and "connected" not in result.stdout.splitlines()


# -- the network ---------------------------------------------------------------------------------


@pytest.fixture
def http_server():
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


FETCH = "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3"


@pytest.mark.parametrize("network", ["host", "none"])
def test_the_network_setting(mode, arena, http_server, network):
    with open_confined(arena / "ws", mode=mode, network=network) as sandbox:
        result = run(sandbox, FETCH.format(port=http_server))
    if network == "host":
        assert result.returncode == 0 and result.stdout.startswith("HTTP/1.0 200"), result.stdout
    else:
        assert result.returncode != 0 and "HTTP" not in result.stdout


# -- choosing a mode -----------------------------------------------------------------------------


def test_a_mode_that_cannot_work_is_a_clear_error(tmp_path, monkeypatch):
    from sandbox.confinement import detect

    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap to be found
    detect.bwrap_problem.cache_clear()
    try:
        with pytest.raises(
            ConfinementUnavailable,
            match="bwrap cannot confine commands on this machine: bwrap is not installed",
        ):
            choose("bwrap")
    finally:
        detect.bwrap_problem.cache_clear()
    with pytest.raises(ConfinementUnavailable, match="unknown confinement 'chroot'"):
        choose("chroot")
    with pytest.raises(ConfinementUnavailable, match="network none needs a confinement"):
        choose("none", "none")


def test_none_runs_unconfined_with_a_loud_warning(arena):
    with pytest.warns(UnconfinedWarning, match="UNCONFINED"):
        sandbox = ConfinedSandbox(arena / "ws", mode="none")
    with sandbox:
        assert sandbox.confinement == "none"
        assert run(sandbox, "echo ok").stdout.strip() == "ok"


def test_the_environment_variable_forces_a_mode(mode, arena, monkeypatch):
    monkeypatch.setenv("MMX_AGENT_CONFINEMENT", mode)
    with open_confined(arena / "ws") as sandbox:
        assert sandbox.confinement == mode
