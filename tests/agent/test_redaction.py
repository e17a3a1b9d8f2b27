"""Secrets never leave the process: every -p output format, stderr, the session file, the result's
diff; and JSON lines never fail on lone surrogates. Real CLI, replayed model, full-auto.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.tools.shell import OUTPUT_LIMIT
from tests.agent.helpers import make_buggy_repo, raw_completion, write_replay
from tests.secret_forms import SECRET, all_forms_text, leaks, leaks_in_files


def mmx(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def leaking_session(tmp_path: Path) -> Path:
    """The model writes the key to a file, prints it in every encoding, across the output cap, and
    finally says it (as a model that learned it some other way would)."""
    half = OUTPUT_LIMIT // 2
    cut_through = f"head -c {half - 7} /dev/zero | tr '\\0' a; printenv MINIMAX_API_KEY; head -c {3 * OUTPUT_LIMIT} /dev/zero"
    return write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion("save it", "", [("bash", {"command": "printenv MINIMAX_API_KEY > leak.txt"})]),
            raw_completion(
                "encode it", "", [("bash", {"command": "cat forms.txt > encoded.txt; cat encoded.txt"})]
            ),
            raw_completion("read it", "", [("read_file", {"path": "leak.txt"})]),
            raw_completion("cut it", "", [("bash", {"command": cut_through})]),
            raw_completion("copy it", "", [("write_file", {"path": "copy.txt", "content": f"k={SECRET}\n"})]),
            raw_completion(f"The key is {SECRET}.", f"Done. The key was {SECRET} ({SECRET.encode().hex()})."),
        ],
    )


@pytest.mark.parametrize("output_format", ["text", "json", "stream-json"])
def test_a_key_written_by_a_command_appears_in_no_output(tmp_path, isolated_home, output_format):
    repo = make_buggy_repo(tmp_path)
    (repo / "forms.txt").write_text(all_forms_text())
    replay = leaking_session(tmp_path)
    proc = mmx(
        "-p", "leak it", "--backend", "replay", "--replay", str(replay), "--permission-mode", "full-auto",
        "--output-format", output_format, cwd=repo, env={"MINIMAX_API_KEY": SECRET},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert SECRET in (repo / "leak.txt").read_text()  # the command did write it: the workspace is not output
    assert leaks(proc.stdout) == [] and leaks(proc.stderr) == []
    assert "[REDACTED:MINIMAX_API_KEY]" in proc.stdout
    sessions = isolated_home / "state" / "mmx-agent" / "sessions"
    assert leaks_in_files(sessions) == {}
    if output_format == "json":
        diff = json.loads(proc.stdout)["diff"]
        assert "+++ b/leak.txt" in diff and "+++ b/encoded.txt" in diff and "+++ b/copy.txt" in diff
        assert "[REDACTED:MINIMAX_API_KEY]" in diff and leaks(diff) == []
    if output_format == "stream-json":
        events = [json.loads(line) for line in proc.stdout.splitlines()]
        deltas = "".join(e["text"] for e in events if e["type"] == "text_delta")
        assert deltas == events[-1]["result"]  # held-back pieces were sent, nothing lost
    session_id = json.loads(sessions.glob("*.jsonl").__next__().read_text().splitlines()[0])["session_id"]
    shown = mmx("sessions", "show", session_id, cwd=repo)
    assert shown.returncode == 0 and leaks(shown.stdout) == []


def test_lone_surrogates_never_crash_the_session_writer(tmp_path, isolated_home):
    repo = make_buggy_repo(tmp_path)
    (repo / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion("edit", "", [("edit_file", {"path": "latin1.txt", "old": "caf", "new": "CAF"})]),
            raw_completion("odd", "", [("bash", {"command": "echo \ud800"})]),
            raw_completion("odd path", "", [("read_file", {"path": "x\udcff.txt"})]),
            raw_completion("done \ud800", "done \udce9"),
        ],
    )
    proc = mmx(
        "-p", "go", "--backend", "replay", "--replay", str(replay), "--permission-mode", "full-auto",
        "--output-format", "stream-json", cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["type"] == "final_result" and events[-1]["result"] == "done \udce9"
    calls = [e for e in events if e["type"] == "tool_call"]
    assert calls[1]["arguments"]["command"] == "echo \ud800"  # escaped on the way out, the same on the way in
    (session,) = (isolated_home / "state" / "mmx-agent" / "sessions").glob("*.jsonl")
    lines = session.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["type"] for line in lines] == [e["type"] for e in events]
    resumed = mmx(
        "-p", "again", "--backend", "replay", "--replay", str(replay), "--resume", session.stem,
        "--permission-mode", "full-auto", "--output-format", "json", cwd=repo,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr  # the escaped history reads back


def test_mmx_agent_tool_prints_a_result_with_surrogates_as_json(tmp_path):
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    proc = mmx(
        "tool",
        "edit_file",
        "--args",
        json.dumps({"path": "latin1.txt", "old": "caf", "new": "CAF"}),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


def test_the_terminal_ui_shows_redacted_events_only():
    import io

    from rich.console import Console

    from agent.app.ui import ConsoleRenderer
    from agent.event_redaction import RedactedEvents
    from agent.events import TextDelta, ToolCallStarted, ToolResultEvent
    from agent.secrets import Redactor

    screen = io.StringIO()
    show = RedactedEvents(Redactor({SECRET: "API_KEY"}), ConsoleRenderer(Console(file=screen, width=400)))
    for piece in ("The key: ", SECRET[:5], SECRET[5:20], SECRET[20:], " ok"):  # streamed in pieces
        show(TextDelta(piece))
    show(ToolCallStarted("1", "bash", {"command": f"echo {SECRET}"}))
    show(ToolResultEvent("1", "bash", True, f"{SECRET}\n{all_forms_text()}"))
    assert leaks(screen.getvalue()) == [] and "[REDACTED:API_KEY]" in screen.getvalue()
