"""Custom slash commands: Markdown files in .mmx-agent/commands/ (project) and the user's config
directory, run as `-p "/NAME args"` (a real CLI subprocess over a replayed model) and read here."""

from __future__ import annotations

import json
from pathlib import Path

from agent.app.interactive import HELP
from agent.custom_commands import BUILTIN_NAMES, find_invocation, load_commands, split_front_matter
from tests.agent.helpers import make_buggy_repo, raw_completion, run_cli, write_replay

REVIEW = """---
description: Review one file
allowed-tools: bash(touch *), read_file
---
Review $ARGUMENTS and touch reviewed.txt when done.
"""


def write_command(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    path.write_text(text)
    return path


def user_commands() -> Path:
    import os

    return Path(os.environ["XDG_CONFIG_HOME"]) / "mmx-agent" / "commands"


def test_front_matter_arguments_and_allowed_tools(tmp_path, isolated_home):
    write_command(tmp_path / ".mmx-agent" / "commands", "review", REVIEW)
    command, arguments = find_invocation("/review calc.py please", tmp_path)
    assert command.description == "Review one file"
    assert command.allowed_tools == ("bash(touch *)", "read_file")
    assert command.scope == "project"
    assert command.prompt(arguments) == "Review calc.py please and touch reviewed.txt when done."


def test_arguments_without_the_placeholder_follow_the_body(tmp_path, isolated_home):
    write_command(tmp_path / ".mmx-agent" / "commands", "explain", "Explain the code.\n")
    command, arguments = find_invocation("/explain the parser", tmp_path)
    assert command.prompt(arguments) == "Explain the code.\n\nthe parser"
    assert command.prompt("") == "Explain the code."
    assert command.description == "" and command.allowed_tools == ()


def test_list_values_in_front_matter():
    fields, body = split_front_matter(
        '---\nallowed-tools:\n  - "bash(git add a, b)"\n  - edit_file\ndescription: "x: y"\n---\nBody\n'
    )
    assert fields == {"allowed-tools": ["bash(git add a, b)", "edit_file"], "description": "x: y"}
    assert body == "Body"
    assert split_front_matter("no front matter\n---\n") == ({}, "no front matter\n---\n")


def test_a_project_command_shadows_a_user_one_and_builtins_cannot_be_shadowed(tmp_path, isolated_home):
    write_command(user_commands(), "deploy", "user deploy")
    write_command(user_commands(), "mine", "only mine")
    write_command(tmp_path / ".mmx-agent" / "commands", "deploy", "project deploy")
    write_command(tmp_path / ".mmx-agent" / "commands", "undo", "not the built-in")
    commands = load_commands(tmp_path)
    assert commands["deploy"].body == "project deploy" and commands["deploy"].scope == "project"
    assert commands["mine"].scope == "user"
    assert "undo" not in commands
    assert find_invocation("/undo 2", tmp_path) is None
    assert find_invocation("/nothing here", tmp_path) is None
    assert find_invocation("/usr/bin/env is broken", tmp_path) is None


def test_every_interactive_builtin_is_reserved():
    listed = {line.split()[0].lstrip("/") for line in HELP.splitlines() if line.startswith("/")}
    assert listed <= BUILTIN_NAMES


def test_p_runs_a_project_command_with_its_arguments_and_allowed_tools(tmp_path, isolated_home):
    repo = make_buggy_repo(tmp_path)
    write_command(repo / ".mmx-agent" / "commands", "review", REVIEW)
    write_command(user_commands(), "review", "the user's review, shadowed by the project's")
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion("touch it", "", [("bash", {"command": "touch reviewed.txt"})]),
            raw_completion("try another", "", [("bash", {"command": "rm -f calc.py"})]),
            raw_completion("done", "Reviewed calc.py."),
        ],
    )
    result = run_cli(
        "-p",
        "/review calc.py",
        "--backend",
        "replay",
        "--replay",
        str(replay),
        "--output-format",
        "stream-json",
        cwd=repo,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    prompts = [e["text"] for e in events if e["type"] == "user_message"]
    assert prompts == ["Review calc.py and touch reviewed.txt when done."]
    outputs = [e for e in events if e["type"] == "tool_result"]
    assert outputs[0]["ok"], outputs[0]  # allowed by the command's front matter, in auto-edit
    assert not outputs[1]["ok"] and "not permitted" in outputs[1]["output"]  # anything else is not
    assert (repo / "reviewed.txt").exists() and (repo / "calc.py").exists()
    assert events[-1]["result"] == "Reviewed calc.py."


def test_p_with_a_bad_allowed_tools_rule_is_a_usage_error(tmp_path, isolated_home):
    repo = make_buggy_repo(tmp_path)
    write_command(repo / ".mmx-agent" / "commands", "broken", "---\nallowed-tools: bash(\n---\nHi\n")
    replay = write_replay(tmp_path / "replay.jsonl", [raw_completion("done", "never")])
    result = run_cli("-p", "/broken", "--backend", "replay", "--replay", str(replay), cwd=repo)
    assert result.returncode == 2, result.stderr
    assert "bad permission rule" in result.stderr
