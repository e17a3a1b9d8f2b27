"""The task tool: subagents run by a replayed model, in-process and through the real CLI.

Records with "when" answer a given subagent's rounds (its system prompt names its task), so
concurrent children get their own completions whatever order they ask in.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from agent.app.ui import ConsoleRenderer
from agent.backends.m2.render import render_prompt
from agent.backends.replay import ReplayBackend
from agent.config import Settings
from agent.events import (
    ChildEvent,
    FinalResult,
    SessionStart,
    TextDelta,
    ToolCallStarted,
    ToolResultEvent,
    event_to_json,
    messages_from_events,
)
from agent.planner.subagents import MAX_ANSWER_CHARS
from agent.session_setup import start_session
from agent.transcripts import load_events
from tests.agent.helpers import make_buggy_repo, raw_completion
from tests.agent.test_cli_contract import DOCS, mmx
from tests.agent.test_interactive_tmux import Pane, sleeping
from tests.secret_forms import SECRET, leaks


def task(description: str, prompt: str, kind: str = "explore") -> tuple[str, dict]:
    return ("task", {"description": description, "prompt": prompt, "kind": kind})


def child(description: str, kind: str = "explore") -> str:
    """Text only that subagent's prompts contain (its role note), for a record's "when"."""
    return f'{kind} task: "{description}"'


def write_records(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# Two explore children at once, then a general child that fixes the bug, then the answer.
FAN_OUT = [
    {
        "completion": raw_completion(
            "Two questions at once.",
            "",
            [task("find add", "Where is add defined?"), task("find tests", "Which tests exist?")],
        )
    },
    {
        "when": child("find add"),
        "completion": raw_completion("grep it", "", [("grep", {"pattern": "def add"})]),
    },
    {
        "when": child("find tests"),
        "completion": raw_completion("glob", "", [("glob", {"pattern": "test_*.py"})]),
    },
    {"when": child("find add"), "completion": raw_completion("found", "add is defined in calc.py, line 1.")},
    {"when": child("find tests"), "completion": raw_completion("found", "One test file: test_calc.py.")},
    {
        "completion": raw_completion(
            "Delegate the fix.", "", [task("fix add", "Make add in calc.py add.", "general")]
        )
    },
    {
        "when": child("fix add", "general"),
        "completion": raw_completion(
            "edit", "", [("edit_file", {"path": "calc.py", "old": "return a - b", "new": "return a + b"})]
        ),
    },
    {"when": child("fix add", "general"), "completion": raw_completion("done", "Fixed add in calc.py.")},
    {"completion": raw_completion("All good.", "add was fixed by a subagent.")},
]


class MeetingReplay(ReplayBackend):
    """A replay where the first rounds of the subagents named in `meet` wait for each other: they
    only get their completions if they ask at the same time."""

    def __init__(self, path: Path, meet: list[str]) -> None:
        super().__init__(path)
        self.waiting = set(meet)
        self.barrier = threading.Barrier(len(meet), timeout=20)
        self.lock = threading.Lock()

    def stream(self, messages, tools, params):
        prompt = render_prompt(messages, tools)
        with self.lock:
            first = next((w for w in self.waiting if w in prompt), None)
            self.waiting.discard(first)
        if first is not None:
            self.barrier.wait()
        yield from super().stream(messages, tools, params)


def run(repo: Path, backend: ReplayBackend, task_text: str = "fix add", **settings):
    events: list = []
    session = start_session(
        Settings(backend="replay", **{"permission_mode": "full-auto", **settings}),
        repo,
        interactive=False,
        emit=events.append,
        backend=backend,
    )
    try:
        result = session.loop.run(task_text)
    finally:
        session.close()
    return result, events


def task_results(events: list) -> list[ToolResultEvent]:
    return [e for e in events if isinstance(e, ToolResultEvent) and e.name == "task"]


def test_two_explore_children_run_at_once_then_a_general_child_fixes_the_bug(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMAX_API_KEY", SECRET)
    repo = make_buggy_repo(tmp_path)
    (repo / "notes.txt").write_text(f"key={SECRET}\n")
    records = list(FAN_OUT)
    records[1] = {  # the first child also reads a file with the key in it
        "when": child("find add"),
        "completion": raw_completion(
            "grep it", "", [("grep", {"pattern": "def add"}), ("read_file", {"path": "notes.txt"})]
        ),
    }
    backend = MeetingReplay(
        write_records(tmp_path / "r.jsonl", records), [child("find add"), child("find tests")]
    )
    result, events = run(repo, backend)

    assert result.status == "done" and result.result == "add was fixed by a subagent." and result.turns == 3
    explore_a, explore_b, general = task_results(events)
    assert explore_a.ok and explore_a.output == "add is defined in calc.py, line 1."
    assert explore_b.ok and explore_b.output == "One test file: test_calc.py."
    assert general.ok and general.data["kind"] == "general" and general.data["status"] == "done"
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert "+    return a + b" in result.diff  # the child's edit is in the parent's diff
    assert "add is defined in calc.py, line 1." in backend.prompts[-1]  # the parent read the answers

    children = [e for e in events if isinstance(e, ChildEvent)]
    assert {e.parent_id for e in children} == {explore_a.id, explore_b.id, general.id}
    assert not any(isinstance(e.event, SessionStart | FinalResult) for e in children)
    child_calls = [e.event for e in children if isinstance(e.event, ToolCallStarted)]
    assert sorted(c.name for c in child_calls) == ["edit_file", "glob", "grep", "read_file"]
    assert not {c.id for c in child_calls} & {explore_a.id, explore_b.id, general.id}  # ids never clash
    # Usage: the parent's own rounds plus every child's.
    parent_usage = sum(e.input_tokens + e.output_tokens for e in events if type(e).__name__ == "Usage")
    all_usage = parent_usage + sum(
        c.event.input_tokens + c.event.output_tokens for c in children if type(c.event).__name__ == "Usage"
    )
    assert result.usage["input_tokens"] + result.usage["output_tokens"] == all_usage > parent_usage

    # The session file keeps the children's events; --resume rebuilds only the parent's conversation.
    saved = load_events(result.session_id)
    assert sum(isinstance(e, ChildEvent) for e in saved) == len(children)
    messages = messages_from_events(saved)
    assert [m.role for m in messages].count("assistant") == 3
    assert not any("grep it" in (m.reasoning or "") for m in messages)
    assert not any(leaks(json.dumps(event_to_json(e), ensure_ascii=False)) for e in events)


def test_stream_json_of_the_real_cli_validates_and_keeps_one_start_and_one_result(tmp_path):
    repo = make_buggy_repo(tmp_path)
    replay = write_records(tmp_path / "r.jsonl", FAN_OUT)
    proc = mmx(
        "-p", "fix add", "--backend", "replay", "--replay", str(replay),
        "--output-format", "stream-json", "--permission-mode", "full-auto",
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((DOCS / "event-schema.json").read_text())
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    for event in events:
        jsonschema.validate(event, schema)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session_start" and kinds[-1] == "final_result"
    assert kinds.count("session_start") == 1 and kinds.count("final_result") == 1
    task_ids = [e["id"] for e in events if e["type"] == "tool_call" and e["name"] == "task"]
    assert len(task_ids) == 3
    from_children = [e for e in events if "parent_id" in e]
    assert {e["parent_id"] for e in from_children} == set(task_ids)
    for kind in ("user_message", "reasoning_delta", "assistant_message", "tool_call", "tool_result", "usage"):
        assert any(e["type"] == kind for e in from_children), kind
    assert events[-1]["status"] == "done" and "+    return a + b" in events[-1]["diff"]
    for only_the_parents in (events[0], events[-1]):  # never a subagent's
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**only_the_parents, "parent_id": task_ids[0]}, schema)


def test_the_childrens_usage_trips_max_tokens(tmp_path):
    """The parent's first round alone stays under --max-tokens; with its children's it is over."""
    repo = make_buggy_repo(tmp_path)
    replay = write_records(tmp_path / "r.jsonl", FAN_OUT)
    args = ("-p", "fix add", "--backend", "replay", "--replay", str(replay), "--permission-mode", "full-auto")
    streamed = mmx(*args, "--output-format", "stream-json", cwd=repo)
    first_round = next(json.loads(line) for line in streamed.stdout.splitlines() if '"type": "usage"' in line)
    limit = first_round["input_tokens"] + first_round["output_tokens"] + 1
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")

    proc = mmx(*args, "--output-format", "json", "--max-tokens", str(limit), cwd=repo)
    assert proc.returncode == 3, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "limit_reached" and result["turns"] == 1
    assert result["usage"]["input_tokens"] + result["usage"]["output_tokens"] > limit
    assert "> grep def add" in proc.stderr and "[call_1_0]" in proc.stderr  # the children's progress


def test_a_child_stops_when_the_parents_budget_is_spent(tmp_path):
    repo = make_buggy_repo(tmp_path)
    records = [
        {"completion": raw_completion("delegate", "", [task("look", "Read calc.py twice.", "general")])},
        {
            "when": child("look", "general"),
            "completion": raw_completion("1", "", [("read_file", {"path": "calc.py"})]),
        },
        {"when": child("look", "general"), "completion": raw_completion("2", "never asked for")},
    ]
    backend = ReplayBackend(write_records(tmp_path / "r.jsonl", records))
    result, events = run(repo, backend, max_tokens=6_000)
    parent_round = next(e for e in events if type(e).__name__ == "Usage")
    assert parent_round.input_tokens + parent_round.output_tokens < 6_000  # the child's round tips it over
    (outcome,) = task_results(events)
    assert not outcome.ok and outcome.data["status"] == "limit_reached"
    assert "stopped (limit_reached)" in outcome.output and "the limit is 6000" in outcome.output
    assert result.status == "limit_reached" and result.turns == 1
    assert len(backend.unused) == 1  # the child's second round never ran


def test_a_failing_child_is_a_failed_result_and_the_run_goes_on(tmp_path, monkeypatch):
    repo = make_buggy_repo(tmp_path)
    records = [
        {"completion": raw_completion("two", "", [task("broken", "Look."), task("fine", "Look too.")])},
        {"when": child("broken"), "error": "the server is on fire"},
        {"when": child("fine"), "completion": raw_completion("ok", "Nothing odd.")},
        {"completion": raw_completion("crash next", "", [task("crash", "Go.", "general")])},
        {"completion": raw_completion("carry on", "One subagent failed; the other found nothing odd.")},
    ]
    import agent.subagent_runs

    real_run = agent.subagent_runs.ChildLoop.run

    def crash_on_request(self, text):
        if text == "Go.":
            raise RuntimeError("child exploded")
        return real_run(self, text)

    monkeypatch.setattr(agent.subagent_runs.ChildLoop, "run", crash_on_request)
    result, events = run(repo, ReplayBackend(write_records(tmp_path / "r.jsonl", records)))
    broken, fine, crashed = task_results(events)
    assert not broken.ok and broken.data["status"] == "backend_unavailable"
    assert "the server is on fire" in broken.output
    assert fine.ok and fine.output == "Nothing odd."
    assert not crashed.ok and "child exploded" in crashed.output
    assert result.status == "done" and result.turns == 3


def test_explore_children_cannot_edit_or_run_commands_and_depth_is_limited(tmp_path):
    repo = make_buggy_repo(tmp_path)
    records = [
        {"completion": raw_completion("look", "", [task("peek", "Try to change things.")])},
        {
            "when": child("peek"),
            "completion": raw_completion(
                "try",
                "",
                [
                    ("write_file", {"path": "new.txt", "content": "x"}),
                    ("bash", {"command": "touch made.txt"}),
                    task("deeper", "Edit it.", "general"),
                ],
            ),
        },
        {"when": child("peek"), "completion": raw_completion("ok", "I could not change anything.")},
        {"completion": raw_completion("nest", "", [task("outer", "Start a subagent.", "general")])},
        {"when": child("outer", "general"), "completion": raw_completion("n", "", [task("inner", "Look.")])},
        {"when": child("inner"), "completion": raw_completion("leaf", "Leaf answer.")},
        {"when": child("outer", "general"), "completion": raw_completion("back", "Inner said: Leaf answer.")},
        {"completion": raw_completion("end", "Done.")},
    ]
    backend = ReplayBackend(write_records(tmp_path / "r.jsonl", records))
    result, events = run(repo, backend)
    assert result.status == "done"
    assert not (repo / "new.txt").exists() and not (repo / "made.txt").exists()
    peek, outer = task_results(events)
    assert peek.ok and outer.ok and outer.output == "Inner said: Leaf answer."
    refused = {
        e.event.name: e.event
        for e in events
        if isinstance(e, ChildEvent) and e.parent_id == peek.id and isinstance(e.event, ToolResultEvent)
    }
    for name in ("write_file", "bash"):  # not offered: the format layer refuses the call
        assert (
            not refused[name].ok and f"Unknown tool '{name}'; the call was not run." in refused[name].output
        )
    assert "'general' is not one of ['explore']" in refused["task"].output  # never more than its parent
    (inner_prompt,) = [p for p in backend.prompts if child("inner") in p]
    (outer_prompt,) = [p for p in backend.prompts if child("outer", "general") in p][:1]
    (peek_prompt,) = [p for p in backend.prompts if child("peek") in p][:1]
    assert '"name": "task"' not in inner_prompt  # depth 2: no task tool
    assert '"name": "task"' in outer_prompt and '"name": "write_file"' in outer_prompt
    assert '"name": "write_file"' not in peek_prompt and '"name": "bash"' not in peek_prompt


def test_a_long_answer_is_cut_with_a_note(tmp_path):
    repo = make_buggy_repo(tmp_path)
    long = "x" * (MAX_ANSWER_CHARS + 500)
    records = [
        {"completion": raw_completion("ask", "", [task("long", "Say a lot.")])},
        {"when": child("long"), "completion": raw_completion("talk", long)},
        {"completion": raw_completion("end", "ok")},
    ]
    _, events = run(repo, ReplayBackend(write_records(tmp_path / "r.jsonl", records)))
    (outcome,) = task_results(events)
    assert outcome.ok and outcome.output.startswith("x" * MAX_ANSWER_CHARS)
    assert outcome.output.endswith("[output truncated: the subagent's answer had 500 more characters]")


def test_the_terminal_shows_each_child_as_one_line_without_its_deltas():
    out = io.StringIO()
    renderer = ConsoleRenderer(Console(file=out, width=120, force_terminal=False))
    renderer(ToolCallStarted("c1", "task", {"description": "find add", "prompt": "p", "kind": "explore"}))
    renderer(ToolCallStarted("c2", "task", {"description": "find tests", "prompt": "p", "kind": "explore"}))
    for parent_id, tool in (("c1", "grep"), ("c2", "glob"), ("c1", "read_file")):
        renderer(ChildEvent(parent_id, TextDelta("streamed words of a child")))
        renderer(ChildEvent(parent_id, ToolCallStarted(f"{parent_id}.x", tool, {"path": "calc.py"})))
    renderer(ToolResultEvent("c1", "task", True, "add is in calc.py", {"status": "done"}))
    renderer(ToolResultEvent("c2", "task", False, "stopped", {"status": "backend_unavailable"}))
    text = out.getvalue()
    assert "streamed words" not in text
    assert "↳ explore: find add · 2 tool calls · done" in text
    assert "↳ explore: find tests · 1 tool call · failed (backend_unavailable)" in text


@pytest.mark.parametrize(
    ("records", "picked"),
    [
        (
            [{"completion": "a"}, {"when": "not in the prompt", "completion": "b"}, {"completion": "c"}],
            ["a", "c"],
        ),
        ([{"completion": "a"}, {"when": "hello", "completion": "w"}], ["w", "a"]),
    ],
)
def test_replay_records_with_when_wait_for_their_prompt(tmp_path, records, picked):
    from agent.backends.base import GenerationParams
    from agent.backends.events import TextDelta as Delta
    from agent.backends.messages import Message

    records = [{**r, "completion": raw_completion("r", r["completion"])} for r in records]
    backend = ReplayBackend(write_records(tmp_path / "r.jsonl", records))
    texts = []
    for _ in picked:
        stream = backend.stream([Message.user("hello user")], [], GenerationParams())
        texts.append("".join(e.text for e in stream if isinstance(e, Delta)))
    assert texts == picked


@pytest.mark.skipif(shutil.which("tmux") is None and not os.environ.get("CI"), reason="tmux is not installed")
def test_the_terminal_collapses_a_child_and_ctrl_c_stops_it_with_the_parent(tmp_path, isolated_home):
    repo = make_buggy_repo(tmp_path)
    marker = f"sleep 3{uuid.uuid4().int % 1000:03d}"
    records = [
        {"completion": raw_completion("slow", "", [task("slow one", "Run the slow command.", "general")])},
        {
            "when": child("slow one", "general"),
            "completion": raw_completion("s", "", [("bash", {"command": marker})]),
        },
        {"when": child("slow one", "general"), "completion": raw_completion("s", "Slept well.")},
        {"completion": raw_completion("quick", "", [task("quick one", "Read calc.py.", "general")])},
        {
            "when": child("quick one", "general"),
            "completion": raw_completion("child thinking aloud", "", [("read_file", {"path": "calc.py"})]),
        },
        {"when": child("quick one", "general"), "completion": raw_completion("r", "Read it.")},
        {"completion": raw_completion("end", "All done here.")},
    ]
    replay = write_records(tmp_path / "r.jsonl", records)
    env = {k: os.environ[k] for k in ("PATH", "HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env["TERM"] = "xterm-256color"
    argv = [sys.executable, "-m", "agent", "--backend", "replay", "--replay", str(replay)]
    pane = Pane(str(repo), [*argv, "--permission-mode", "full-auto"], env)
    try:
        pane.wait_for("/help")
        pane.send("go slow", "Enter")
        pane.wait_for(f"↳ general: slow one · 1 tool call · bash {marker}")
        deadline = time.monotonic() + 30
        while not sleeping(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        pane.send("C-c")
        assert "↳ general: slow one · 1 tool call · stopped" in pane.wait_for("the session goes on")
        deadline = time.monotonic() + 10
        while sleeping(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not sleeping(marker), "the command outlived Ctrl-C"

        pane.send("go quick", "Enter")
        screen = pane.wait_for("All done here.")
        assert "↳ general: quick one · 1 tool call · done" in screen
        assert "child thinking aloud" not in screen and "Slept well." not in screen
        pane.send("/exit", "Enter")
    finally:
        pane.close()
