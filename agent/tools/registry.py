"""All tools, and `run_tool`: the one way the agent (and `mmx-agent tool`) calls a tool.

`run_tool` never raises. An unknown tool, arguments that do not fit the tool's schema, or a
crash inside a tool come back as a failed ToolResult whose text tells the model what to do.
Before every mutating call (permission edit, execute or destructive) the workspace is
checkpointed so `undo` can take the call back, and every result has secrets redacted (the
context's Redactor: credential values from the environment and the backend's key) before anyone
sees it.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import jsonschema

from agent.json_limits import MAX_NESTING, UnusableJson, loads_limited, value_problem, without_lone_surrogates
from agent.tools import checkpoints, files, git_tools, outline, shell, web_fetch
from agent.tools.base import Permission, Tool, ToolContext, ToolResult, openai_tool
from agent.tools.repo_map import ranked_map
from agent.tools.search import tools as search

MUTATING = {Permission.EDIT, Permission.EXECUTE, Permission.DESTRUCTIVE}
# Where tools cut long text (read_file's and grep's long lines, git's long diffs): a secret cut
# through there must not show its first characters, so what may begin one is dropped.
CUT_MARKERS = ("... [line cut: ", "…[", "\n[diff truncated: ", "\n[output truncated: ")


def all_tools() -> list[Tool]:
    return [
        *files.TOOLS,
        *shell.TOOLS,
        *checkpoints.TOOLS,
        *search.TOOLS,
        *outline.TOOLS,
        *ranked_map.TOOLS,
        *git_tools.TOOLS,
        *web_fetch.TOOLS,
    ]


def get_tool(name: str) -> Tool | None:
    return next((tool for tool in all_tools() if tool.name == name), None)


def tool_definitions(tools: list[Tool] | None = None) -> list[dict[str, Any]]:
    """The tools in the OpenAI function form that backends send or render."""
    return [openai_tool(tool) for tool in (all_tools() if tools is None else tools)]


def run_tool(name: str, args: Any, ctx: ToolContext, tools: list[Tool] | None = None) -> ToolResult:
    """Runs one tool call; `tools` narrows or extends the set (default: all_tools())."""
    result = _run_unredacted(name, args, ctx, all_tools() if tools is None else tools)
    redactor = ctx.redactor
    output = result.output
    for marker in CUT_MARKERS:
        if marker in output:
            output = redactor.trim_cut(output, marker)
    # Lone surrogates (undecodable bytes of a file or a file name) cannot be encoded for any output.
    output = without_lone_surrogates(redactor.redact(output))
    return ToolResult(
        result.ok, output, without_lone_surrogates(redactor.redact_data(result.data)), result.events
    )


def _run_unredacted(name: str, args: Any, ctx: ToolContext, tools: list[Tool]) -> ToolResult:
    tool = next((t for t in tools if t.name == name), None)
    if tool is None:
        names = [t.name for t in tools]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        return ToolResult(
            False,
            f"unknown tool {name!r}.{hint} Available tools: {', '.join(names)}.",
            {"error": "unknown_tool"},
        )
    if isinstance(args, str):
        try:
            args = loads_limited(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            return ToolResult(
                False,
                f"arguments for {name} are not valid JSON ({e}); send a JSON object.",
                {"error": "bad_arguments"},
            )
        except UnusableJson as e:
            return _unusable_arguments(name, str(e))
    if args is None:
        args = {}
    problem = value_problem(args)
    if problem:
        return _unusable_arguments(name, problem)
    problems = argument_problems(tool, args)
    if problems:
        return ToolResult(
            False,
            f"invalid arguments for {name}: "
            + "; ".join(problems)
            + f". Expected: {describe_parameters(tool)}",
            {"error": "bad_arguments"},
        )
    note = ""
    if tool.permission in MUTATING and not tool.manages_checkpoints:
        try:
            taken = checkpoints.checkpoint(ctx, f"{name} {json.dumps(args, ensure_ascii=False)[:200]}")
            note = "".join(f"\n[note: {repair}]" for repair in taken.notes)
        except Exception as e:  # a broken store must not block the work; say undo will not cover it
            note = f"\n[warning: no checkpoint was taken ({e}); undo cannot take this call back]"
    try:
        result = tool.run(args, ctx)
    except Exception as e:  # a bug in a tool is reported to the model, not raised into the loop
        return ToolResult(False, f"{name} failed: {type(e).__name__}: {e}{note}", {"error": "tool_crashed"})
    if note:
        result = ToolResult(result.ok, result.output + note, result.data, result.events)
    return result


def _unusable_arguments(name: str, problem: str) -> ToolResult:
    return ToolResult(
        False,
        f"arguments for {name} were not used: {problem}. Send text without lone \\ud800-\\udfff escapes "
        f"and at most {MAX_NESTING} levels of nesting.",
        {"error": "bad_arguments"},
    )


def argument_problems(tool: Tool, args: Any) -> list[str]:
    if not isinstance(args, dict):
        return [f"arguments must be a JSON object, got {type(args).__name__}"]
    validator = jsonschema.Draft202012Validator(tool.parameters)
    problems = []
    for error in sorted(validator.iter_errors(args), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path)
        message = error.message if len(error.message) <= 300 else error.message[:300] + "…"
        problems.append(f"{where}: {message}" if where else message)
    return problems


def describe_parameters(tool: Tool) -> str:
    properties = tool.parameters.get("properties", {})
    required = set(tool.parameters.get("required", []))
    parts = []
    for key, schema in properties.items():
        kind = schema.get("type", "any")
        parts.append(f"{key} ({kind}{', required' if key in required else ''})")
    return ", ".join(parts) or "no arguments"
