"""MCP servers in replayed `-p` sessions: reference servers from PyPI, a server written here with the
SDK (stdio and streamable HTTP), and servers that crash, never start, hang or send garbage."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sandbox.confinement.detect import ConfinementUnavailable, choose
from tests.agent.helpers import make_buggy_repo, raw_completion, write_replay

HERE = Path(__file__).resolve().parent
ECHO = str(HERE / "echo_server.py")
MALFORMED = str(HERE / "malformed_server.py")


def configure(repo: Path, servers: dict[str, dict]) -> None:
    lines = []
    for name, fields in servers.items():
        lines.append(f"[mcp_servers.{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in fields.items()]
    (repo / ".mmx-agent.toml").write_text("\n".join(lines) + "\n")


def toml_value(value) -> str:
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def run_session(tmp_path: Path, repo: Path, calls: list[tuple[str, dict]], *flags: str, env=None):
    """Runs a replayed session making `calls` one per round; returns (exit code, events, stderr)."""
    completions = [raw_completion(f"call {name}", "", [(name, args)]) for name, args in calls]
    completions.append(raw_completion("Done.", "Done."))
    replay = write_replay(tmp_path / "replay.jsonl", completions)
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "-p", "use the servers", "--backend", "replay", "--replay", str(replay),
         "--output-format", "stream-json", "--verify", "true", *flags],
        cwd=repo, capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})},
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events, proc.stderr


def results(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "tool_result"]


def statuses(events: list[dict]) -> list[str]:
    return [e["message"] for e in events if e["type"] == "status"]


@pytest.fixture
def repo(tmp_path):
    return make_buggy_repo(tmp_path)


def path_without_node(tmp_path: Path) -> Path:
    """A PATH directory with the confinement's programs (bwrap) and nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for program in ("bwrap",):
        found = shutil.which(program)
        if found:
            (bin_dir / program).symlink_to(found)
    return bin_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reference_servers_from_pypi(tmp_path, repo):
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.html").write_text(
        "<html><body><h1>Local page</h1><p>served for the fetch server</p></body></html>"
    )
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(site))  # noqa: E731
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    configure(
        repo,
        {
            "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
            "git": {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(repo)]},
            "fetch": {
                "command": sys.executable,
                "args": ["-m", "mcp_server_fetch", "--ignore-robots-txt", "--allow-private-ips"],
                # No node on the server's PATH: readabilipy would otherwise run `npm install` into
                # site-packages on its first use (the network, and a read-only tree under
                # confinement); its Python extractor needs neither.
                "env": {"PATH": str(path_without_node(tmp_path))},
            },
        },
    )
    url = f"http://127.0.0.1:{web.server_address[1]}/page.html"
    try:
        code, events, stderr = run_session(
            tmp_path,
            repo,
            [
                ("mcp__time__get_current_time", {"timezone": "UTC"}),
                ("mcp__git__git_status", {"repo_path": str(repo)}),
                ("mcp__fetch__fetch", {"url": url}),
            ],
            "--permission-mode", "full-auto",
        )  # fmt: skip
    finally:
        web.shutdown()
    assert code == 0, stderr
    time_result, git_result, fetch_result = results(events)
    assert time_result["ok"] and '"timezone": "UTC"' in time_result["output"]
    assert git_result["ok"] and "calc.py" in git_result["output"]
    assert fetch_result["ok"] and "Local page" in fetch_result["output"], fetch_result
    assert not any("MCP" in s for s in statuses(events))


def test_sdk_server_over_stdio_and_streamable_http(tmp_path, repo):
    port = free_port()
    env = {**os.environ, "MCP_HEADER_VALUE": "hdr-9f8e7d6c5b4a39281706"}
    web = subprocess.Popen([sys.executable, ECHO, "http", str(port)], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        configure(
            repo,
            {
                "local": {"command": sys.executable, "args": [ECHO]},
                "remote": {
                    "url": f"http://127.0.0.1:{port}/mcp",
                    "headers": {"Authorization": "Bearer ${MCP_HEADER_VALUE}"},
                },
            },
        )
        code, events, stderr = run_session(
            tmp_path,
            repo,
            [
                ("mcp__local__echo", {"text": "over stdio"}),
                ("mcp__remote__echo", {"text": "over http"}),
                ("mcp__local__picture", {}),
                ("mcp__remote__secret", {}),
            ],
            "--permission-mode", "full-auto",
            env={"MCP_HEADER_VALUE": "hdr-9f8e7d6c5b4a39281706"},
        )  # fmt: skip
    finally:
        web.terminate()
        web.wait(10)
    assert code == 0, stderr
    stdio, http_, picture, secret = results(events)
    assert stdio["ok"] and stdio["output"] == "echo: over stdio"
    assert http_["ok"] and http_["output"] == "echo: over http"
    assert picture["ok"] and picture["output"] == "a picture:\n[image (image/png) not shown]"
    # A header's value from the environment is a secret: never in the stream or the session file.
    assert secret["ok"] and "hdr-9f8e7d6c5b4a39281706" not in secret["output"]
    sessions = list((Path(os.environ["XDG_STATE_HOME"])).rglob("*.jsonl"))
    assert sessions and all("hdr-9f8e7d6c5b4a39281706" not in p.read_text() for p in sessions)


def test_failing_servers_leave_the_run_going(tmp_path, repo):
    configure(
        repo,
        {
            "crashy": {"command": sys.executable, "args": [ECHO]},
            "missing": {"command": str(tmp_path / "no-such-server")},
            "slow": {"command": sys.executable, "args": [ECHO], "tool_timeout": 2},
            "stuck": {"command": "sleep", "args": ["600"], "startup_timeout": 3},
            "broken": {"command": sys.executable, "args": [MALFORMED]},
        },
    )
    started = time.monotonic()
    code, events, stderr = run_session(
        tmp_path,
        repo,
        [
            ("mcp__crashy__echo", {"text": "before"}),
            ("mcp__crashy__crash", {}),
            ("mcp__crashy__echo", {"text": "after"}),
            ("mcp__slow__hang", {}),
            ("mcp__slow__echo", {"text": "still there"}),
            ("mcp__broken__broken", {}),
            ("mcp__broken__odd", {"x": 1}),
            ("mcp__missing__anything", {}),
        ],
        "--permission-mode", "full-auto",
    )  # fmt: skip
    assert code == 0, stderr
    assert time.monotonic() - started < 90
    before, crash, after, hang, still, broken, odd, missing = results(events)
    assert before["ok"] and before["output"] == "echo: before"
    assert not crash["ok"] and "MCP server 'crashy'" in crash["output"]
    assert not after["ok"] and "unavailable" in after["output"]
    assert not hang["ok"] and "timed out" in hang["output"]
    assert still["ok"] and still["output"] == "echo: still there"
    assert not broken["ok"] and "MCP server 'broken'" in broken["output"]
    assert odd["ok"] and odd["output"] == "odd answered"
    assert not missing["ok"] and "unknown tool" in missing["output"].lower()  # never started: no tools
    messages = statuses(events)
    for name in ("missing", "stuck"):
        assert sum(f"MCP server {name} did not start" in m for m in messages) == 1, messages
    assert sum("MCP server crashy stopped working" in m for m in messages) == 1, messages
    assert any("missing did not start" in m and "No such file" in m for m in messages), messages
    assert events[-1]["type"] == "final_result" and events[-1]["status"] == "done"


def test_permission_mode_applies_whatever_the_server_hints(tmp_path, repo):
    configure(repo, {"echo": {"command": sys.executable, "args": [ECHO]}})
    calls = [("mcp__echo__peek", {}), ("mcp__echo__echo", {"text": "hi"})]
    code, events, stderr = run_session(tmp_path, repo, calls, "--permission-mode", "auto-edit")
    peek, echo = results(events)
    assert not peek["ok"] and "not permitted" in peek["output"]  # its read-only hint does not count
    assert not echo["ok"] and "not permitted" in echo["output"]
    code, events, stderr = run_session(
        tmp_path, repo, calls, "--permission-mode", "auto-edit", "--allow", "mcp__echo__*"
    )
    peek, echo = results(events)
    assert peek["ok"] and echo["ok"] and echo["output"] == "echo: hi"


def confinement_problem(mode: str) -> str | None:
    try:
        choose(mode)
    except ConfinementUnavailable as e:
        return str(e)
    return None


@pytest.mark.parametrize("mode", ["bwrap", "landlock"])
def test_a_local_server_cannot_write_outside_the_workspace(tmp_path, repo, mode):
    if confinement_problem(mode):
        pytest.skip(confinement_problem(mode))
    outside = tmp_path / "outside.txt"
    home_file = Path(os.environ["HOME"]) / "planted"
    (repo / "out").mkdir()
    configure(repo, {"echo": {"command": sys.executable, "args": [ECHO]}})
    code, events, stderr = run_session(
        tmp_path,
        repo,
        [
            ("mcp__echo__write", {"path": str(repo / "out" / "inside.txt"), "text": "ok"}),
            ("mcp__echo__write", {"path": str(Path.cwd() / "planted.txt"), "text": "no"}),
            ("mcp__echo__write", {"path": str(outside), "text": "no"}),
            ("mcp__echo__write", {"path": str(home_file), "text": "no"}),
        ],
        "--permission-mode", "full-auto",
        env={"MMX_AGENT_CONFINEMENT": mode},
    )  # fmt: skip
    assert code == 0, stderr
    inside, project, tmp, home = results(events)
    assert inside["ok"] and (repo / "out" / "inside.txt").read_text() == "ok"
    # The checkout is read-only to the server; under bwrap a checkout below /tmp (as in CI) is not
    # even there, and the write lands in the server's own private /tmp. Either way it never arrives.
    assert not (Path.cwd() / "planted.txt").exists(), project
    # bwrap: /tmp is the server's own, private; Landlock: not writable at all.
    assert not outside.exists() and not home_file.exists()
