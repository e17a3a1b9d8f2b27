"""Hooks from the config, in replayed sessions through the real CLI: what each event's exit codes do,
and the `hook` events the stream records."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from agent.app.ui import ConsoleRenderer
from agent.config import ConfigError, HookSpec, load_settings
from agent.events import HookRun
from agent.planner.hooks import Hooks
from sandbox.local import LocalSandbox
from tests.agent.helpers import git, raw_completion, run_cli
from tests.sandbox_kinds import base_image, docker_client

__all__ = ["base_image", "docker_client"]

DOCS = Path(__file__).resolve().parents[2] / "docs"

BLOCK_RM = """
import fnmatch, json, sys
call = json.load(sys.stdin)
if fnmatch.fnmatch(call["tool_input"].get("command", ""), "rm *"):
    print("rm is not allowed in this project", file=sys.stderr)
    sys.exit(2)
"""
# Rewrites the file the call edited: tabs to four spaces, no trailing blanks.
FORMATTER = """
import json, sys
call = json.load(sys.stdin)
path = call["tool_input"]["path"]
text = open(path).read()
lines = [line.replace("\\t", "    ").rstrip() for line in text.splitlines()]
open(path, "w").write("\\n".join(lines) + "\\n")
"""
LINTER = """
import json, sys
call = json.load(sys.stdin)
print(f"lint: {call['tool_input']['path']} has no docstring", file=sys.stderr)
sys.exit(2)
"""
# Sends the model back once: stop_hook_active is true once it has been sent back in this run.
TESTS_FIRST = """
import json, sys
if not json.load(sys.stdin)["stop_hook_active"]:
    print("run the tests before you stop", file=sys.stderr)
    sys.exit(2)
"""


def project(root: Path, hooks_toml: str, **scripts: str) -> Path:
    """A committed repository with `scripts` under .hooks/, and the hooks in the user's config."""
    repo = root / "proj"
    (repo / ".hooks").mkdir(parents=True)
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    for name, body in scripts.items():
        (repo / ".hooks" / f"{name}.py").write_text(textwrap.dedent(body))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    config = root / "home" / "config" / "mmx-agent" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(textwrap.dedent(hooks_toml))
    return repo


def run(
    tmp_path: Path, repo: Path, completions: list[str | dict], prompt: str = "do it", *flags: str
) -> tuple[int, list[dict]]:
    replay = tmp_path / "replay.jsonl"  # a completion, or a record with "when" (a subagent's)
    replay.write_text(
        "".join(json.dumps(c if isinstance(c, dict) else {"completion": c}) + "\n" for c in completions)
    )
    proc = run_cli(
        "-p", prompt, "--backend", "replay", "--replay", str(replay),
        "--output-format", "stream-json", "--permission-mode", "full-auto", *flags, cwd=repo,
    )  # fmt: skip
    schema = json.loads((DOCS / "event-schema.json").read_text())
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    for event in events:
        jsonschema.validate(event, schema)
    assert events and events[-1]["type"] == "final_result", proc.stderr
    return proc.returncode, events


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def test_a_pre_hook_blocks_rm_and_lets_other_commands_run(tmp_path):
    repo = project(
        tmp_path,
        """
        [[hooks.pre_tool_use]]
        matcher = "bash"
        command = "python3 .hooks/block_rm.py"
        """,
        block_rm=BLOCK_RM,
    )
    code, events = run(
        tmp_path,
        repo,
        [
            raw_completion("Delete it.", "", [("bash", {"command": "rm calc.py"})]),
            raw_completion("Refused; list instead.", "", [("bash", {"command": "echo listed"})]),
            raw_completion("Read it too.", "", [("read_file", {"path": "calc.py"})]),
            raw_completion("Done.", "Left calc.py in place."),
        ],
    )
    assert code == 0 and (repo / "calc.py").exists()
    hooks = of_type(events, "hook")
    assert [(h["event"], h["tool_name"], h["exit_code"], h["outcome"]) for h in hooks] == [
        ("pre_tool_use", "bash", 2, "block"),
        ("pre_tool_use", "bash", 0, "continue"),
    ]  # the matcher leaves read_file alone
    assert hooks[0]["command"] == "python3 .hooks/block_rm.py" and hooks[0]["duration_ms"] >= 0
    results = of_type(events, "tool_result")
    assert not results[0]["ok"] and "rm is not allowed in this project" in results[0]["output"]
    assert results[1]["ok"] and "listed" in results[1]["output"]
    assert events[-1]["status"] == "done"


def test_a_post_hook_formats_the_edited_file_and_one_answers_the_model(tmp_path):
    repo = project(
        tmp_path,
        """
        [[hooks.post_tool_use]]
        matcher = "edit_file|write_file"
        command = "python3 .hooks/formatter.py"

        [[hooks.post_tool_use]]
        matcher = "write_*"
        command = "python3 .hooks/linter.py"
        timeout = 30
        """,
        formatter=FORMATTER,
        linter=LINTER,
    )
    code, events = run(
        tmp_path,
        repo,
        [
            raw_completion("Write it.", "", [("write_file", {"path": "mul.py", "content": "def mul(a, b):\n\treturn a * b   \n"})]),
            raw_completion("Edit.", "", [("edit_file", {"path": "calc.py", "old": "a + b", "new": "a  +  b\t"})]),
            raw_completion("Done.", "Added mul.py."),
        ],
    )  # fmt: skip
    assert code == 0
    assert (repo / "mul.py").read_text() == "def mul(a, b):\n    return a * b\n"
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a  +  b\n"
    hooks = of_type(events, "hook")
    assert [(h["tool_name"], h["matcher"], h["outcome"]) for h in hooks] == [
        ("write_file", "edit_file|write_file", "continue"),
        ("write_file", "write_*", "block"),
        ("edit_file", "edit_file|write_file", "continue"),
    ]
    results = of_type(events, "tool_result")
    assert results[0]["ok"] and "[post_tool_use hook]\nlint: mul.py has no docstring" in results[0]["output"]
    assert "lint" not in results[1]["output"]
    assert "+    return a * b" in events[-1]["diff"]  # the formatted file is what the run changed


def test_a_stop_hook_sends_the_model_back_to_work_once(tmp_path):
    repo = project(
        tmp_path,
        """
        [[hooks.stop]]
        command = "python3 .hooks/tests_first.py"
        """,
        tests_first=TESTS_FIRST,
    )
    code, events = run(
        tmp_path,
        repo,
        [
            raw_completion("Looks fine.", "Nothing to change."),
            raw_completion("Run them.", "", [("bash", {"command": "python3 -c 'import calc'"})]),
            raw_completion("They pass.", "The tests pass; nothing to change."),
        ],
    )
    assert code == 0 and events[-1]["status"] == "done" and events[-1]["turns"] == 3
    assert events[-1]["result"] == "The tests pass; nothing to change."
    assert [(h["event"], h["outcome"]) for h in of_type(events, "hook")] == [
        ("stop", "block"),
        ("stop", "continue"),
    ]
    sent_back = [e["text"] for e in of_type(events, "user_message")][1:]
    assert len(sent_back) == 1 and "run the tests before you stop" in sent_back[0]


def test_a_stop_hook_that_always_blocks_sends_the_model_back_three_times(tmp_path):
    repo = project(
        tmp_path,
        """
        [[hooks.stop]]
        command = "echo never >&2; exit 2"
        """,
    )
    answers = [raw_completion("Stop.", f"Answer {n}.") for n in range(6)]
    code, events = run(tmp_path, repo, answers)
    assert code == 0 and events[-1]["status"] == "done" and events[-1]["result"] == "Answer 3."
    assert [h["outcome"] for h in of_type(events, "hook")] == ["block"] * 4
    assert any("sent the model back 3 times" in s["message"] for s in of_type(events, "status"))


def test_a_hook_that_times_out_or_fails_is_a_warning_and_the_call_runs(tmp_path):
    repo = project(
        tmp_path,
        """
        [[hooks.pre_tool_use]]
        command = "sleep 30"
        timeout = 0.5

        [[hooks.pre_tool_use]]
        command = "echo broken >&2; exit 1"
        """,
    )
    code, events = run(
        tmp_path,
        repo,
        [
            raw_completion("Run.", "", [("bash", {"command": "echo ran"})]),
            raw_completion("Done.", "Ran it."),
        ],
    )
    assert code == 0
    hooks = of_type(events, "hook")
    assert [(h["exit_code"], h["outcome"]) for h in hooks] == [(None, "warning"), (1, "warning")]
    assert hooks[0]["duration_ms"] < 20_000
    warnings = [s["message"] for s in of_type(events, "status") if s["level"] == "warning"]
    assert any("`sleep 30` timed out" in w for w in warnings)
    assert any("`echo broken >&2; exit 1` exited 1: broken" in w for w in warnings)
    assert of_type(events, "tool_result")[0]["ok"]


def test_prompt_and_session_hooks_add_context_and_the_payload_names_the_call(tmp_path):
    repo = project(
        tmp_path,
        """
        [[hooks.session_start]]
        command = "echo 'branch: main'"

        [[hooks.user_prompt_submit]]
        command = "python3 -c 'import json,sys; print(\\"prompt was \\" + json.load(sys.stdin)[\\"prompt\\"])'"

        [[hooks.post_tool_use]]
        matcher = "read_file"
        command = "cat > .hooks/seen.json"
        """,
    )
    code, events = run(
        tmp_path,
        repo,
        [raw_completion("Read.", "", [("read_file", {"path": "calc.py"})]), raw_completion("Done.", "Read.")],
        prompt="look at calc",
    )
    assert code == 0
    first = of_type(events, "user_message")[0]["text"]
    assert first.startswith("look at calc\n\n[mmx-agent] Context from hooks:\n")
    assert "branch: main" in first and "prompt was look at calc" in first
    seen = json.loads((repo / ".hooks" / "seen.json").read_text())
    assert seen["event"] == "post_tool_use" and seen["session_id"] == events[0]["session_id"]
    assert seen["cwd"] == str(repo) and seen["tool_name"] == "read_file"
    assert seen["tool_input"] == {"path": "calc.py"}
    assert seen["tool_result"]["ok"] is True and "return a + b" in seen["tool_result"]["output"]


def test_a_prompt_hook_that_exits_2_keeps_the_prompt_from_the_model(tmp_path):
    repo = project(
        tmp_path,
        """
        [[hooks.user_prompt_submit]]
        command = "echo 'no secrets in prompts' >&2; exit 2"
        """,
    )
    code, events = run(tmp_path, repo, [raw_completion("Never asked.", "Never.")])
    assert events[-1]["status"] == "blocked" and "no secrets in prompts" in events[-1]["result"]
    assert code != 0 and not of_type(events, "user_message") and not of_type(events, "assistant_message")


def test_hooks_add_up_across_config_files_and_unknown_events_are_refused(tmp_path, isolated_home):
    user = isolated_home / "config" / "mmx-agent" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[[hooks.pre_tool_use]]\nmatcher = "bash"\ncommand = "policy"\n')
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".mmx-agent.toml").write_text('[[hooks.pre_tool_use]]\ncommand = "other"\n')
    hooks = load_settings(repo).hooks["pre_tool_use"]
    assert [(h.matcher, h.command, h.timeout) for h in hooks] == [
        ("bash", "policy", 60.0),
        ("*", "other", 60.0),
    ]
    (repo / ".mmx-agent.toml").write_text('[[hooks.pre_tool_call]]\ncommand = "x"\n')
    with pytest.raises(ConfigError, match="pre_tool_call"):
        load_settings(repo)


def test_hooks_run_confined_like_the_shell(tmp_path, isolated_home):
    repo = project(
        tmp_path,
        """
        [[hooks.session_start]]
        command = "touch \\"$HOME/escaped\\" && touch inside"
        """,
    )
    code, events = run(tmp_path, repo, [raw_completion("Done.", "Done.")])
    assert code == 0 and events[0]["confinement"] in ("bwrap", "landlock")
    assert [h["outcome"] for h in of_type(events, "hook")] == ["warning"]
    assert not (isolated_home / "escaped").exists() and not (repo / "inside").exists()


def test_a_subagents_calls_pass_the_tool_hooks_and_only_the_parent_stops(tmp_path):
    repo = project(
        tmp_path,
        """
        [[hooks.pre_tool_use]]
        matcher = "bash"
        command = "python3 .hooks/block_rm.py"

        [[hooks.stop]]
        command = "exit 0"
        """,
        block_rm=BLOCK_RM,
    )
    role = 'general task: "clean up"'  # text only the subagent's prompts contain
    code, events = run(
        tmp_path,
        repo,
        [
            raw_completion("Delegate.", "", [("task", {"description": "clean up", "prompt": "Remove calc.py.", "kind": "general"})]),
            {"when": role, "completion": raw_completion("rm", "", [("bash", {"command": "rm calc.py"})])},
            {"when": role, "completion": raw_completion("refused", "The rm was refused by a hook.")},
            raw_completion("Done.", "calc.py stays."),
        ],
    )  # fmt: skip
    assert code == 0 and (repo / "calc.py").exists()
    (task_call,) = [e for e in of_type(events, "tool_call") if e["name"] == "task"]
    hooks = of_type(events, "hook")
    assert [(h["event"], h["outcome"], h.get("parent_id")) for h in hooks] == [
        ("pre_tool_use", "block", task_call["id"]),
        ("stop", "continue", None),
    ]


def test_a_resumed_session_says_so_to_its_session_start_hooks(tmp_path):
    repo = project(
        tmp_path,
        """
        [[hooks.session_start]]
        command = "python3 -c 'import json,sys; print(\\"source: \\" + json.load(sys.stdin)[\\"source\\"])'"
        """,
    )
    _, first = run(tmp_path, repo, [raw_completion("Done.", "First.")])
    assert "source: startup" in of_type(first, "user_message")[0]["text"]
    replay = tmp_path / "again.jsonl"
    replay.write_text(json.dumps({"completion": raw_completion("Done.", "Second.")}) + "\n")
    proc = run_cli(
        "-p", "again", "--resume", first[0]["session_id"], "--backend", "replay", "--replay", str(replay),
        "--output-format", "stream-json", "--permission-mode", "full-auto", cwd=repo,
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, proc.stderr
    assert "source: resume" in of_type(events, "user_message")[0]["text"]


def test_hooks_run_in_the_container_with_sandbox_docker(tmp_path, base_image):
    repo = project(
        tmp_path,
        """
        [[hooks.pre_tool_use]]
        matcher = "bash"
        command = "python3 .hooks/block_rm.py"

        [[hooks.post_tool_use]]
        matcher = "write_file"
        command = "python3 .hooks/formatter.py"
        """,
        block_rm=BLOCK_RM,
        formatter=FORMATTER,
    )
    code, events = run(
        tmp_path,
        repo,
        [
            raw_completion("Delete.", "", [("bash", {"command": "rm calc.py"})]),
            raw_completion("Write.", "", [("write_file", {"path": "mul.py", "content": "def mul(a, b):\n\treturn a * b  \n"})]),
            raw_completion("Done.", "Added mul.py."),
        ],
        "do it",
        "--sandbox",
        "docker",
    )  # fmt: skip
    assert code == 0 and events[0]["confinement"] == "docker"
    assert [(h["event"], h["outcome"]) for h in of_type(events, "hook")] == [
        ("pre_tool_use", "block"),
        ("post_tool_use", "continue"),
    ]
    assert (repo / "calc.py").exists()
    assert (
        repo / "mul.py"
    ).read_text() == "def mul(a, b):\n    return a * b\n"  # formatted, then synced back


def test_the_terminal_shows_a_blocking_hook_and_stays_quiet_about_the_others():
    out = io.StringIO()
    renderer = ConsoleRenderer(Console(file=out, width=120, force_terminal=False))
    renderer(HookRun("pre_tool_use", "bash", "python3 .hooks/block_rm.py", 2, "block", 12, "bash"))
    renderer(HookRun("post_tool_use", "*", "fmt", 0, "continue", 3, "write_file"))
    assert out.getvalue() == "[pre_tool_use hook blocked] python3 .hooks/block_rm.py\n"


def test_a_call_with_many_long_strings_still_reaches_the_hook_cut(tmp_path):
    seen = tmp_path / "seen.json"
    hooks = Hooks(
        {"pre_tool_use": [HookSpec(command=f"cat > {seen}")]},
        LocalSandbox(str(tmp_path)),
        session_id="s",
        emit=lambda event: None,
    )
    quoted = 'it\'s "$(rm -rf x)" `y` \\\n\t\u00e9'
    edits = [{"old": "x" * 50_000, "new": quoted}] * 10
    assert not hooks.run("pre_tool_use", "multi_edit", tool_input={"edits": edits}).blocked
    payload = json.loads(seen.read_text())
    first = payload["tool_input"]["edits"][0]
    assert first["new"] == quoted and first["old"] == "x" * 2_000 + "\n[... 48000 characters cut]"
