"""The loop in-process, driven by replay files in the raw M2 format, on real temp git repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.backends.replay import ReplayBackend
from agent.config import Settings
from agent.events import AssistantMessage, FinalResult, ToolResultEvent
from agent.session_setup import start_session
from agent.transcripts import load_events
from tests.agent.helpers import FIX_SESSION, git, make_buggy_repo, raw_completion, write_replay


def run_session(tmp_path: Path, repo: Path, completions: list[str], tasks: list[str], **settings):
    backend = ReplayBackend(
        write_replay(tmp_path / "replay.jsonl", completions),
        context_window=settings.pop("context_window", 196_608),
    )
    events: list = []
    session = start_session(
        Settings(backend="replay", **settings), repo, interactive=False, emit=events.append, backend=backend
    )
    results = [session.loop.run(task) for task in tasks]
    session.close()
    return backend, events, results, session


def test_fix_task_reads_edits_tests_and_finishes_verified(tmp_path):
    repo = make_buggy_repo(tmp_path)
    backend, events, (result,), _ = run_session(
        tmp_path, repo, FIX_SESSION, ["fix the failing test"], permission_mode="full-auto"
    )
    assert result.status == "done" and result.turns == 4 and result.verified
    assert "-    return a - b\n+    return a + b" in result.diff
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert result.result.startswith("Fixed `add`")
    assert git(repo, "status", "--porcelain") == " M calc.py\n"  # the user's index and branch untouched
    # Each round's prompt carries all earlier reasoning of this turn, in order.
    assert "I should read calc.py first" in backend.prompts[3] and "Fix the operator" in backend.prompts[3]
    assert backend.prompts[3].index("read calc.py first") < backend.prompts[3].index("Fix the operator")


def test_reasoning_is_kept_within_the_turn_and_dropped_after_a_new_user_message(tmp_path):
    repo = make_buggy_repo(tmp_path)
    completions = [
        raw_completion("SECRET-THOUGHT-1 look at the file", "", [("read_file", {"path": "calc.py"})]),
        raw_completion("SECRET-THOUGHT-2 it subtracts", "It subtracts."),
        raw_completion("THOUGHT-3 second question", "", [("glob", {"pattern": "*.py"})]),
        raw_completion("THOUGHT-4 answer", "Two files."),
    ]
    backend, _, results, _ = run_session(
        tmp_path, repo, completions, ["what does add do?", "how many files?"], permission_mode="full-auto"
    )
    assert [r.status for r in results] == ["done", "done"]
    second_round = backend.prompts[1]
    assert "<think>\nSECRET-THOUGHT-1 look at the file\n</think>" in second_round
    new_turn = backend.prompts[2]
    assert "SECRET-THOUGHT-1" not in new_turn and "SECRET-THOUGHT-2" not in new_turn
    assert "It subtracts." in new_turn  # the visible answer stays
    assert "THOUGHT-3 second question" in backend.prompts[3]


def test_recoverable_problems_go_back_to_the_model(tmp_path):
    repo = make_buggy_repo(tmp_path)
    unknown = raw_completion("try a tool that does not exist", "", [("delete_everything", {"path": "/"})])
    bad_args = raw_completion("read without a path", "", [("read_file", {"offset": 3})])
    cut_off = 'cut\n</think>\n<minimax:tool_call>\n<invoke name="edit_file">\n<parameter name="path">calc.py</parameter>\n<parameter name="new">x'
    missing = raw_completion("read a missing file", "", [("read_file", {"path": "nope.py"})])
    done = raw_completion("give up", "Could not do it.")
    backend, events, (result,), _ = run_session(
        tmp_path,
        repo,
        [unknown, bad_args, cut_off, missing, done],
        ["do things"],
        permission_mode="full-auto",
    )
    assert result.status == "done" and result.turns == 5
    outputs = [e.output for e in events if isinstance(e, ToolResultEvent)]
    assert "Unknown tool 'delete_everything'" in outputs[0]
    assert "path" in outputs[1] and "required" in outputs[1]
    assert "cut off inside parameter 'new'" in outputs[2]
    assert "nope.py" in outputs[3]
    # The calls the model made stay in the prompt, answered by those results.
    assert '<invoke name="delete_everything">' in backend.prompts[1]
    assert "Unknown tool" in backend.prompts[1]
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"


def test_parallel_read_only_calls_keep_call_order(tmp_path):
    repo = make_buggy_repo(tmp_path)
    calls = [
        ("read_file", {"path": "test_calc.py"}),
        ("read_file", {"path": "calc.py"}),
        ("grep", {"pattern": "def add"}),
    ]
    _, events, (result,), _ = run_session(
        tmp_path, repo, [raw_completion("read all", "", calls), raw_completion("ok", "done")], ["look"]
    )
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert [r.name for r in results] == ["read_file", "read_file", "grep"]
    assert "assert add(2, 3)" in results[0].output and "return a - b" in results[1].output


def test_loop_detection_warns_then_stops(tmp_path):
    repo = make_buggy_repo(tmp_path)
    same = raw_completion("again", "", [("read_file", {"path": "calc.py"})])
    _, events, (result,), _ = run_session(tmp_path, repo, [same] * 5, ["loop"])
    outputs = [e.output for e in events if isinstance(e, ToolResultEvent)]
    assert "identical call" not in outputs[1] and "identical call" in outputs[2]
    assert result.status == "loop_detected" and result.turns == 4


def test_limits_end_the_run_with_their_status(tmp_path):
    repo = make_buggy_repo(tmp_path)
    _, _, (result,), _ = run_session(
        tmp_path, repo, FIX_SESSION, ["fix"], permission_mode="full-auto", max_turns=2
    )
    assert result.status == "limit_reached" and result.turns == 2
    assert "-    return a - b" in result.diff  # what was done so far is still reported


def test_replay_running_out_is_a_backend_failure(tmp_path):
    repo = make_buggy_repo(tmp_path)
    _, _, (result,), _ = run_session(tmp_path, repo, FIX_SESSION[:1], ["fix"])
    assert result.status == "backend_unavailable" and "ran out" in result.result


@pytest.mark.parametrize(
    ("mode", "edit_allowed", "shell_allowed"),
    [("ask", False, False), ("auto-edit", True, False), ("full-auto", True, True)],
)
def test_permission_modes_gate_edits_and_shell(tmp_path, mode, edit_allowed, shell_allowed):
    repo = make_buggy_repo(tmp_path)
    completions = [
        raw_completion("edit", "", [("edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})]),
        raw_completion("shell", "", [("bash", {"command": "touch made-by-shell"})]),
        raw_completion("end", "done"),
    ]
    _, events, (result,), _ = run_session(tmp_path, repo, completions, ["go"], permission_mode=mode)
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert results[0].ok is edit_allowed and ("a + b" in (repo / "calc.py").read_text()) is edit_allowed
    assert results[1].ok is shell_allowed and (repo / "made-by-shell").exists() is shell_allowed
    if not shell_allowed:
        assert "--permission-mode full-auto" in results[1].output
        assert "'bash' `touch made-by-shell`" in results[1].output  # the refusal names what it refused


def test_auto_edit_runs_the_shell_when_the_sandbox_isolates_it():
    from agent.permissions import PermissionPolicy
    from agent.tools.base import Permission

    command = {"command": "python -m pytest"}
    assert not PermissionPolicy("auto-edit").decide("bash", Permission.EXECUTE, command).allowed
    isolated = PermissionPolicy("auto-edit", shell_isolated=True)
    assert isolated.decide("bash", Permission.EXECUTE, command).allowed
    assert (
        not PermissionPolicy("ask", shell_isolated=True).decide("bash", Permission.EXECUTE, command).allowed
    )


def test_allow_and_deny_rules(tmp_path):
    repo = make_buggy_repo(tmp_path)
    completions = [
        raw_completion("run tests", "", [("bash", {"command": "python -m pytest -q"})]),
        raw_completion("make a file", "", [("bash", {"command": "touch x"})]),
        raw_completion("edit", "", [("edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})]),
        raw_completion("end", "done"),
    ]
    _, events, (result,), _ = run_session(
        tmp_path,
        repo,
        completions,
        ["go"],
        permission_mode="auto-edit",
        allow=["bash(python -m pytest*)"],
        deny=["edit_file(calc.py)"],
    )
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert "1 failed" in results[0].output  # allowed: it ran (and the bug makes it fail)
    assert "Not run" in results[1].output and not (repo / "x").exists()
    assert "--deny 'edit_file(calc.py)'" in results[2].output


def test_firewall_holds_in_full_auto_and_repeated_refusals_block_the_run(tmp_path):
    repo = make_buggy_repo(tmp_path)
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    attack = raw_completion("clean up", "", [("bash", {"command": f"rm -rf {victim}"})])
    _, events, (result,), _ = run_session(
        tmp_path,
        repo,
        [attack] * 2
        + [raw_completion("other", "", [("bash", {"command": f"cd {tmp_path} && rm -rf outside"})])],
        ["clean"],
        permission_mode="full-auto",
    )
    assert (victim / "keep.txt").read_text() == "precious"
    assert result.status == "blocked"


def test_session_file_rebuilds_the_conversation_and_resume_continues(tmp_path):
    repo = make_buggy_repo(tmp_path)
    completions = [
        raw_completion("first thought", "", [("read_file", {"path": "calc.py"})]),
        raw_completion("answer", "It subtracts."),
    ]
    _, _, (first,), session = run_session(tmp_path, repo, completions, ["what does add do?"])
    events = load_events(first.session_id)
    assert isinstance(events[-1], FinalResult) and sum(isinstance(e, AssistantMessage) for e in events) == 2
    backend = ReplayBackend(
        write_replay(tmp_path / "more.jsonl", [raw_completion("recall", "Yes, subtraction.")])
    )
    resumed = start_session(
        Settings(backend="replay"),
        repo,
        interactive=False,
        emit=lambda e: None,
        backend=backend,
        resume_id=first.session_id,
    )
    second = resumed.loop.run("are you sure?")
    resumed.close()
    assert second.status == "done" and second.session_id == first.session_id
    prompt = backend.prompts[0]
    assert "what does add do?" in prompt and "It subtracts." in prompt and "return a - b" in prompt
    assert prompt.index("what does add do?") < prompt.index("are you sure?")
