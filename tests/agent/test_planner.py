"""System prompt and instructions, the todo tool, permission rules."""

from __future__ import annotations

import pytest

from agent.backends.replay import ReplayBackend
from agent.config import Settings
from agent.events import TodoUpdate
from agent.permissions import PermissionPolicy, PermissionRuleError, Rule
from agent.planner.prompt import build_system_prompt
from agent.session_setup import start_session
from agent.tools.base import Permission
from tests.agent.helpers import make_buggy_repo, raw_completion, write_replay


def test_instructions_from_the_repo_its_parents_and_the_user(tmp_path):
    outer = tmp_path / "org"
    repo = outer / "repo"
    (repo / "sub").mkdir(parents=True)
    (outer / "AGENTS.md").write_text("ORG RULE: use tabs.")
    (repo / "AGENTS.md").write_text("REPO RULE: run make test.")
    (repo / "CLAUDE.md").write_text("CLAUDE RULE: be brief.")
    user = tmp_path / "userconf"
    user.mkdir()
    (user / "AGENTS.md").write_text("USER RULE: British spelling.")
    prompt = build_system_prompt(repo, "2026-11-29", user)
    assert prompt.index("USER RULE") < prompt.index("ORG RULE") < prompt.index("REPO RULE")
    assert "CLAUDE RULE" in prompt and "Workspace: " + str(repo) in prompt
    assert "run the project's tests" in prompt


def test_todo_tool_updates_the_plan_and_the_session(tmp_path):
    repo = make_buggy_repo(tmp_path)
    todos = [{"content": "read calc.py", "status": "done"}, {"content": "fix add", "status": "in_progress"}]
    replay = write_replay(
        tmp_path / "r.jsonl",
        [
            raw_completion("plan", "", [("todo_write", {"todos": todos})]),
            raw_completion(
                "bad plan",
                "",
                [
                    ("todo_write", {"todos": [{"content": "x", "status": "maybe"}]}),
                ],
            ),
            raw_completion("ok", "Planned."),
        ],
    )
    events: list = []
    session = start_session(
        Settings(backend="replay"), repo, interactive=False, emit=events.append, backend=ReplayBackend(replay)
    )
    session.loop.run("plan it")
    session.close()
    updates = [e for e in events if isinstance(e, TodoUpdate)]
    assert [u.items for u in updates] == [todos]  # the invalid plan was refused, not applied
    assert session.loop.ctx.todos == todos


def test_permission_rules():
    assert Rule.parse("bash(pytest *)") == Rule("bash", "pytest *")
    assert Rule.parse("edit_file") == Rule("edit_file", None)
    with pytest.raises(PermissionRuleError):
        Rule.parse("bash(")
    policy = PermissionPolicy("ask", allow=[Rule("bash", "git status*")], deny=[Rule("*", "*.env")])
    assert policy.decide("bash", Permission.EXECUTE, {"command": "git status -s"}).allowed
    assert not policy.decide("bash", Permission.EXECUTE, {"command": "git push"}).allowed
    assert not policy.decide("read_file", Permission.READ, {"path": "prod.env"}).allowed
    assert policy.decide("read_file", Permission.READ, {"path": "a.py"}).allowed
    asked = PermissionPolicy("ask", ask=lambda tool, args: tool == "write_file")
    assert asked.decide("write_file", Permission.EDIT, {"path": "a"}).allowed
    assert not asked.decide("bash", Permission.EXECUTE, {"command": "ls"}).allowed
