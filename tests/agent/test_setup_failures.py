"""Runs that cannot start still keep the -p contract: one result object in json mode, a final_result
line in stream-json mode, the documented status and exit code, one `error:` line and no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.agent.helpers import make_buggy_repo, raw_completion, write_replay
from tests.sandbox_kinds import docker_client

__all__ = ["docker_client"]

DOCS = Path(__file__).resolve().parents[2] / "docs"
RESULT_SCHEMA = json.loads((DOCS / "result-schema.json").read_text())
EVENT_SCHEMA = json.loads((DOCS / "event-schema.json").read_text())


def mmx(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("MINIMAX_API_KEY", "DOCKER_HOST")}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def repo(tmp_path):
    return make_buggy_repo(tmp_path)


def ok_replay(tmp_path: Path) -> str:
    return str(write_replay(tmp_path / "ok.jsonl", [raw_completion("done", "Nothing to do.")]))


def broken_replay(tmp_path: Path) -> str:
    path = tmp_path / "broken.jsonl"
    path.write_text("not json\n")
    return str(path)


def binary_replay(tmp_path: Path) -> str:
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    return str(path)


def config_not_utf8(tmp_path: Path, repo: Path) -> dict[str, str]:
    (repo / ".mmx-agent.toml").write_bytes(b'model = "\xff"\n')
    return {}


def config_is_a_directory(tmp_path: Path, repo: Path) -> dict[str, str]:
    (repo / ".mmx-agent.toml").mkdir()
    return {}


# (name, extra args, env, status, exit code, text that the message must contain)
CASES = [
    ("no api key", [], {}, "backend_unavailable", 5, "MINIMAX_API_KEY is not set"),
    ("replay without a file", ["--backend", "replay"], {}, "backend_unavailable", 5, "--replay"),
    ("malformed replay", ["--backend", "replay", "--replay", broken_replay], {}, "backend_unavailable", 5,
     "broken.jsonl:1"),
    ("binary replay", ["--backend", "replay", "--replay", binary_replay], {}, "backend_unavailable", 5,
     "binary.jsonl is not UTF-8"),
    ("missing checkpoint", ["--backend", "local", "--model", "no-such-dir"], {}, "backend_unavailable", 5,
     "no-such-dir"),
    ("no docker engine", ["--backend", "replay", "--replay", ok_replay, "--sandbox", "docker"],
     {"DOCKER_HOST": "tcp://127.0.0.1:9"}, "error", 1, "cannot reach the Docker engine"),
    ("unknown flag", ["--no-such-flag"], {}, "usage_error", 2, "--no-such-flag"),
    ("bad base url", ["--backend", "openai-compatible", "--base-url", "ftp://x"], {}, "usage_error", 2,
     "--base-url must be an http"),
    ("no tokenizer file", ["--backend", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1",
     "--tokenizer", "no-such.json"], {}, "usage_error", 2, "no tokenizer.json"),
    ("negative max turns", ["--max-turns", "-1"], {}, "usage_error", 2, "--max-turns"),
    ("unknown backend", ["--backend", "nosuch"], {}, "usage_error", 2, "'anthropic-compatible', 'completions', "
     "'local' or 'replay'"),
    ("config not utf-8", [], config_not_utf8, "usage_error", 2, "not UTF-8"),
    ("config is a directory", [], config_is_a_directory, "usage_error", 2, "is a directory"),
]  # fmt: skip


def _resolve(args: list, env, tmp_path: Path, repo: Path) -> tuple[list[str], dict[str, str]]:
    resolved = [arg(tmp_path) if callable(arg) else arg for arg in args]
    return resolved, env(tmp_path, repo) if callable(env) else env


@pytest.mark.parametrize("output_format", ["json", "stream-json"])
@pytest.mark.parametrize(
    "name, args, env, status, code, message", CASES, ids=[case[0].replace(" ", "-") for case in CASES]
)
def test_a_run_that_cannot_start_keeps_the_contract(
    tmp_path, repo, output_format, name, args, env, status, code, message
):
    args, env = _resolve(args, env, tmp_path, repo)
    proc = mmx("-p", "fix it", "--output-format", output_format, *args, cwd=repo, env=env)
    assert proc.returncode == code, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    result = json.loads(lines[0])
    if output_format == "json":
        jsonschema.validate(result, RESULT_SCHEMA)
    else:
        jsonschema.validate(result, EVENT_SCHEMA)
        assert result["type"] == "final_result"
    assert result["status"] == status and message in result["result"]
    assert result["turns"] == 0 and result["diff"] == ""
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr  # one clear line for the person reading the CI log


def test_text_mode_keeps_stdout_empty_on_setup_failures(tmp_path, repo):
    proc = mmx("-p", "fix it", "--backend", "replay", "--replay", binary_replay(tmp_path), cwd=repo)
    assert proc.returncode == 5 and proc.stdout == ""
    assert (
        proc.stderr.startswith("error: backend unavailable: replay file") and "Traceback" not in proc.stderr
    )


def test_a_missing_sandbox_image_is_a_clear_error(tmp_path, repo, docker_client):
    """The engine is there but the image is not: status error, and how to build one."""
    proc = mmx(
        "-p", "fix it", "--output-format", "json", "--backend", "replay", "--replay", ok_replay(tmp_path),
        "--sandbox", "docker", cwd=repo, env={"MMX_AGENT_DOCKER_IMAGE": "mmx-agent-no-such-image:1"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    jsonschema.validate(result, RESULT_SCHEMA)
    assert result["status"] == "error" and "mmx-agent sandbox base" in result["result"]
    assert "Traceback" not in proc.stderr


def test_an_unexpected_error_is_one_line_and_the_traceback_needs_debug(tmp_path):
    """Any command: a bug becomes `error: Type: message` (exit 1); --debug shows the traceback."""
    script = (
        "import sys\n"
        "from agent.app import cli\n"
        "@cli.app.command('explode')\n"
        "def explode():\n"
        "    raise RuntimeError('the widget broke')\n"
        "sys.argv = ['mmx-agent', *sys.argv[1:]]\n"
        "cli.main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MMX_AGENT_DEBUG"}
    plain = subprocess.run([sys.executable, "-c", script, "explode"], capture_output=True, text=True, env=env)
    assert plain.returncode == 1
    assert plain.stderr.splitlines()[0] == "error: RuntimeError: the widget broke"
    assert "Traceback" not in plain.stderr and "--debug" in plain.stderr
    debug = subprocess.run(
        [sys.executable, "-c", script, "--debug", "explode"], capture_output=True, text=True, env=env
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "the widget broke" in debug.stderr


def test_sessions_show_of_an_unknown_session_is_bad_usage(tmp_path):
    proc = mmx("sessions", "show", "no-such-session", cwd=tmp_path)
    assert proc.returncode == 2 and "no session" in proc.stderr


def test_help_shows_no_placeholder_for_boolean_flags(tmp_path):
    for command in ([], ["model", "init"], ["eval", "run"], ["sessions", "list"]):
        proc = mmx(*command, "--help", cwd=tmp_path, env={"COLUMNS": "200"})
        assert proc.returncode == 0, proc.stderr
        assert "<bool>" not in proc.stdout, command
    root = mmx("--help", cwd=tmp_path, env={"COLUMNS": "200"}).stdout
    assert "--continue" in root and "--debug" in root and "<str>" in root  # valued options keep theirs
