"""--permission-mode plan: read-only tools only; the run ends with the plan; edits and commands are refused."""

from __future__ import annotations

import json

from tests.agent.helpers import make_buggy_repo, raw_completion, run_cli, write_replay

PLAN_SESSION = [
    raw_completion("look first", "", [("read_file", {"path": "calc.py"})]),
    raw_completion(
        "try to fix right away",
        "",
        [
            ("edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"}),
            ("bash", {"command": "touch ran.txt"}),
        ],
    ),
    raw_completion(
        "refused: plan instead",
        "",
        [
            (
                "todo_write",
                {
                    "todos": [
                        {"content": "change - to + in add()", "status": "pending"},
                        {"content": "run test_calc.py", "status": "pending"},
                    ]
                },
            )
        ],
    ),  # fmt: skip
    raw_completion("done planning", "The bug is the operator in add(); see the plan."),
]


def test_plan_mode_runs_only_reads_and_returns_the_plan(tmp_path):
    repo = make_buggy_repo(tmp_path)
    replay = write_replay(tmp_path / "replay.jsonl", PLAN_SESSION)
    proc = run_cli(
        "-p", "fix the bug", "--backend", "replay", "--replay", str(replay), "--output-format", "stream-json",
        "--permission-mode", "plan", cwd=repo,
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    results = {e["name"]: e for e in events if e["type"] == "tool_result"}
    assert results["read_file"]["ok"] and results["todo_write"]["ok"]
    for name in ("edit_file", "bash"):
        assert not results[name]["ok"] and "does not run in plan mode" in results[name]["output"]
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert not (repo / "ran.txt").exists()
    final = events[-1]
    assert proc.returncode == 0 and final["status"] == "done" and final["diff"] == ""
    assert final["result"].startswith("The bug is the operator in add(); see the plan.\n\nPlan:\n")
    assert "[ ] change - to + in add()" in final["result"]
    assert events[0]["permission_mode"] == "plan"


def test_allow_rules_do_not_open_plan_mode(tmp_path):
    repo = make_buggy_repo(tmp_path)
    replay = write_replay(tmp_path / "replay.jsonl", [PLAN_SESSION[1], PLAN_SESSION[3]])
    proc = run_cli(
        "-p", "fix the bug", "--backend", "replay", "--replay", str(replay), "--output-format", "json",
        "--permission-mode", "plan", "--allow", "edit_file", "--allow", "bash", cwd=repo,
    )  # fmt: skip
    assert json.loads(proc.stdout)["status"] == "done"
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
