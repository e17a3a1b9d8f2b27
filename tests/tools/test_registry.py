"""run_tool: lookup, argument validation, crashes, checkpoints and redaction, never an exception."""

from __future__ import annotations

import json

import jsonschema
import pytest

from agent.tools.base import Permission, ToolResult
from agent.tools.checkpoints import list_checkpoints
from agent.tools.registry import all_tools, get_tool, run_tool, tool_definitions
from tests.sandbox_kinds import local_only


class Exploding:
    """A tool with a bug, to see how run_tool reports it."""

    name = "explode"
    description = "always fails"
    parameters = {"type": "object", "properties": {}, "additionalProperties": False}
    permission = Permission.READ

    def run(self, args, ctx):
        raise RuntimeError("kaboom")


def test_every_tool_has_a_valid_schema_and_a_unique_name():
    tools = all_tools()
    names = [t.name for t in tools]
    assert len(names) == len(set(names))
    assert {
        "read_file",
        "write_file",
        "edit_file",
        "multi_edit",
        "bash",
        "bash_output",
        "bash_kill",
        "undo",
    } <= set(names)
    for tool in tools:
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
        assert tool.parameters["type"] == "object" and tool.description
        assert isinstance(tool.permission, Permission)


def test_tool_definitions_are_openai_functions():
    definitions = tool_definitions()
    assert len(definitions) == len(all_tools())
    first = definitions[0]
    assert first["type"] == "function" and set(first["function"]) == {"name", "description", "parameters"}
    assert get_tool("read_file").name == "read_file" and get_tool("nope") is None


def test_unknown_tool_names_the_close_match_and_the_list(ctx):
    result = run_tool("read_fil", {"path": "x"}, ctx)
    assert not result.ok and result.data["error"] == "unknown_tool"
    assert "unknown tool 'read_fil'. Did you mean read_file?" in result.output
    assert "Available tools: read_file, write_file" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, "'path' is a required property"),
        ({"path": 3}, "path: 3 is not of type 'string'"),
        ({"path": "x", "offset": 0}, "offset: 0 is less than the minimum of 1"),
        ({"path": "x", "colour": "red"}, "'colour' was unexpected"),
        (["x"], "arguments must be a JSON object, got list"),
        ('{"path": ', "not valid JSON"),
    ],
)
def test_bad_arguments_become_actionable_results(ctx, args, expected):
    result = run_tool("read_file", args, ctx)
    assert not result.ok and result.data["error"] == "bad_arguments"
    assert expected in result.output
    if "JSON" not in expected:
        assert "Expected: path (string, required), offset (integer), limit (integer)" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"path": "a\ud800"}, "the value at path holds a lone surrogate (\\ud800)"),
        ('{"path": "a\\udfff"}', "the value at path holds a lone surrogate (\\udfff)"),
        ({"path": "x", "n": json.loads("[" * 500 + "]" * 500)}, "nests deeper than 64 levels"),
        ('{"path": "x", "n": ' + "[" * 30_000 + "]" * 30_000 + "}", "nests deeper than 64 levels"),
    ],
)
def test_lone_surrogates_and_deep_nesting_are_bad_arguments_not_crashes(ctx, args, expected):
    result = run_tool("read_file", args, ctx)
    assert not result.ok and result.data["error"] == "bad_arguments"
    assert expected in result.output
    json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8")  # the result itself is clean


def test_schema_errors_about_huge_values_are_cut_short(ctx):
    result = run_tool("read_file", {"path": "x" * 100_000, "offset": "[" * 50_000}, ctx)
    assert not result.ok and result.data["error"] == "bad_arguments" and len(result.output) < 2000


def test_arguments_as_a_json_string_are_accepted(ctx, workspace):
    (workspace / "a.txt").write_text("hi\n")
    assert run_tool("read_file", '{"path": "a.txt"}', ctx).output == "     1\thi"


def test_a_crashing_tool_is_reported_not_raised(ctx):
    result = run_tool("explode", {}, ctx, tools=[Exploding()])
    assert result == ToolResult(False, "explode failed: RuntimeError: kaboom", {"error": "tool_crashed"})


def test_the_tools_argument_limits_what_can_be_called(ctx):
    result = run_tool("read_file", {"path": "x"}, ctx, tools=[Exploding()])
    assert not result.ok and "Available tools: explode." in result.output


def test_mutating_calls_are_checkpointed_and_reads_are_not(ctx, workspace):
    (workspace / "f.txt").write_text("x\n")
    run_tool("read_file", {"path": "f.txt"}, ctx)
    run_tool("bash_output", {"id": "job1"}, ctx)
    assert list_checkpoints(ctx) == []
    run_tool("edit_file", {"path": "f.txt", "old": "x", "new": "y"}, ctx)
    run_tool("bash", {"command": "echo z > f.txt"}, ctx)
    labels = [c.label for c in list_checkpoints(ctx)]
    assert labels == [
        'bash {"command": "echo z > f.txt"}',
        'edit_file {"path": "f.txt", "old": "x", "new": "y"}',
    ]


def test_secrets_are_redacted_from_output_and_data(ctx, workspace, monkeypatch):
    monkeypatch.setenv("SERVICE_API_KEY", "sk-live-0123456789")
    monkeypatch.setenv("db_password", "hunter2hunter2")
    monkeypatch.setenv("TOKEN_SHORT", "abc")  # too short to redact safely
    (workspace / "config.env").write_text("KEY=sk-live-0123456789\nPW=hunter2hunter2\nabc\n")
    result = run_tool("read_file", {"path": "config.env"}, ctx)
    assert "sk-live" not in result.output and "hunter2" not in result.output
    assert "KEY=[REDACTED:SERVICE_API_KEY]" in result.output and "PW=[REDACTED:db_password]" in result.output
    assert "abc" in result.output
    (workspace / "sk-live-0123456789.txt").write_text("x")
    written = run_tool("write_file", {"path": "sk-live-0123456789.txt", "content": "y"}, ctx)
    assert written.data["path"] == "[REDACTED:SERVICE_API_KEY].txt"


@local_only(
    "commands inherit the agent's own environment on the host; a container sees only the env it was made with"
)
def test_secrets_commands_inherit_from_the_agent_are_redacted(ctx, monkeypatch):
    monkeypatch.setenv("SERVICE_API_KEY", "sk-live-0123456789")
    monkeypatch.setenv("db_password", "hunter2hunter2")
    shell = run_tool("bash", {"command": "echo $SERVICE_API_KEY; env | grep -c hunter2hunter2"}, ctx)
    assert "sk-live" not in shell.output and "[REDACTED:SERVICE_API_KEY]" in shell.output


def test_secrets_set_only_in_the_sandbox_environment_are_redacted(ctx):
    ctx.sandbox.env["GITHUB_TOKEN"] = "ghp_abcdefghijklmnop"
    result = run_tool("bash", {"command": "echo token=$GITHUB_TOKEN"}, ctx)
    assert result.output == "token=[REDACTED:GITHUB_TOKEN]"
