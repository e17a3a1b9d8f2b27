"""The confinement through the real CLI: which one ran, in the JSON result and in session_start;
the flags and settings that choose it; and a confined shell that cannot write outside the workspace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from sandbox.confinement.detect import ConfinementUnavailable, choose
from tests.agent.helpers import make_buggy_repo, raw_completion, write_replay
from tests.agent.test_cli_contract import DOCS, mmx
from tests.sandbox_kinds import unavailable

# The model tries to write outside the workspace with a command the firewall cannot read.
ESCAPE = [
    raw_completion(
        "Write outside.",
        "",
        [("bash", {"command": "python3 -c \"open('../outside.txt', 'w').write('pwned')\"; echo tried"})],
    ),
    raw_completion("Done.", "Done."),
]


def require(mode: str, network: str = "host") -> None:
    try:
        choose(mode, network)
    except ConfinementUnavailable as e:
        unavailable(str(e))


@pytest.fixture
def repo(tmp_path) -> Path:
    return make_buggy_repo(tmp_path)


def run_json(tmp_path: Path, repo: Path, *flags: str, env: dict[str, str] | None = None):
    replay = write_replay(tmp_path / "replay.jsonl", ESCAPE)
    args = ["-p", "x", "--backend", "replay", "--replay", str(replay), "--permission-mode", "full-auto"]
    return mmx(*args, "--output-format", "json", *flags, cwd=repo, env=env)


@pytest.mark.parametrize("mode", ["bwrap", "landlock"])
def test_the_result_says_which_confinement_ran_and_it_held(tmp_path, repo, mode):
    require(mode)
    proc = run_json(tmp_path, repo, env={"MMX_AGENT_CONFINEMENT": mode})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    jsonschema.validate(result, json.loads((DOCS / "result-schema.json").read_text()))
    assert result["confinement"] == mode
    assert not (tmp_path / "outside.txt").exists()


def test_sandbox_local_is_unconfined_and_says_so(tmp_path, repo):
    proc = run_json(tmp_path, repo, "--sandbox", "local")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["confinement"] == "none"
    assert (tmp_path / "outside.txt").read_text() == "pwned"  # what confinement is for


def test_session_start_carries_the_confinement(tmp_path, repo):
    require("landlock", "none")
    replay = write_replay(tmp_path / "replay.jsonl", ESCAPE)
    proc = mmx(
        *["-p", "x", "--backend", "replay", "--replay", str(replay), "--permission-mode", "full-auto"],
        *["--output-format", "stream-json", "--network", "none"],
        cwd=repo,
        env={"MMX_AGENT_CONFINEMENT": "landlock"},
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    schema = json.loads((DOCS / "event-schema.json").read_text())
    for event in events:
        jsonschema.validate(event, schema)
    assert events[0]["type"] == "session_start" and events[0]["confinement"] == "landlock"
    assert events[-1]["type"] == "final_result" and events[-1]["confinement"] == "landlock"


def test_settings_that_cannot_hold_are_usage_errors(tmp_path, repo):
    proc = run_json(tmp_path, repo, "--sandbox", "local", "--network", "none")
    assert proc.returncode == 2
    assert "network none needs sandbox confined or docker" in proc.stderr
    assert json.loads(proc.stdout)["status"] == "usage_error"
    proc = run_json(tmp_path, repo, env={"MMX_AGENT_CONFINEMENT": "chroot"})
    assert proc.returncode == 2 and "confinement" in proc.stderr


@pytest.mark.parametrize("line", ['sandbox = "local"', 'confinement = "none"', 'network = "host"'])
def test_a_project_file_cannot_turn_the_confinement_off(tmp_path, repo, line):
    """The model can write .mmx-agent.toml in the workspace: it must not unconfine the next run."""
    (repo / ".mmx-agent.toml").write_text(line + "\n")
    proc = run_json(tmp_path, repo)
    assert proc.returncode == 2 and "is not taken from a project file" in proc.stderr
    assert not (tmp_path / "outside.txt").exists()


def test_a_forced_confinement_that_cannot_work_ends_the_run_with_a_clear_error(tmp_path, repo):
    """No bwrap on PATH (the probe looks for it there), bwrap forced: exit 1, result status error."""
    proc = run_json(
        tmp_path, repo, env={"MMX_AGENT_CONFINEMENT": "bwrap", "PATH": str(tmp_path / "empty-bin")}
    )
    assert proc.returncode == 1
    assert "bwrap cannot confine commands on this machine: bwrap is not installed" in proc.stderr
    assert json.loads(proc.stdout)["confinement"] == "none"


@pytest.mark.parametrize("mode", ["bwrap", "landlock"])
def test_the_tool_command_runs_the_shell_confined(tmp_path, repo, mode):
    require(mode)
    args = json.dumps({"command": "python3 -c \"open('../outside.txt', 'w').write('x')\" && echo wrote"})
    proc = mmx("tool", "bash", "--args", args, cwd=repo, env={"MMX_AGENT_CONFINEMENT": mode})
    assert proc.returncode == 0, proc.stderr
    if mode == "landlock":  # bwrap lets it write, to a private /tmp that goes with the session
        assert "Permission denied" in json.loads(proc.stdout)["output"]
    assert not (tmp_path / "outside.txt").exists()


def test_doctor_reports_the_confinement(tmp_path):
    mode = choose().mode
    proc = mmx(
        *["doctor", "--backend", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1"],
        *["--attempts", "1", "--json"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
    )
    report = json.loads(proc.stdout)
    assert report["confinement"] == mode
    assert report["checks"][0]["name"] == "confinement" and report["checks"][0]["detail"].startswith(mode)
