"""`mmx-agent format render|parse` as scripts call it: real subprocesses, exact bytes."""

import copy
import json
import os
import subprocess
import sys

from tests.format.conversations import TOOLS
from tests.format.oracle import render_official

MESSAGES = [
    {"role": "system", "content": "Be brief.", "current_date": "2026-11-29"},
    {"role": "user", "content": "Lis le fichier « a.py » 📄"},
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "Need to read it.",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "a.py", "limit": 5}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "1\tprint('hi')"},
]


def mmx(*args, stdin: str):
    env = {**os.environ, "LC_ALL": "C", "PYTHONIOENCODING": "ascii"}  # output must not depend on the locale
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        input=stdin.encode("utf-8"),
        capture_output=True,
        env=env,
        timeout=60,
    )


def write_tools(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(TOOLS), encoding="utf-8")
    return str(path)


def test_render_prints_exactly_the_prompt(tmp_path):
    proc = mmx("format", "render", "--tools", write_tools(tmp_path), stdin=json.dumps(MESSAGES))
    assert proc.returncode == 0, proc.stderr
    official_messages = copy.deepcopy(MESSAGES)
    official_messages[2]["content"] = ""
    official_messages[2]["tool_calls"][0]["function"]["arguments"] = {"path": "a.py", "limit": 5}
    assert proc.stdout.decode("utf-8") == render_official(official_messages, TOOLS)
    assert proc.stdout.endswith(b"]~b]ai\n<think>\n")  # nothing added after the prompt


def test_render_without_generation_prompt_and_m1(tmp_path):
    proc = mmx("format", "render", "--no-generation-prompt", stdin=json.dumps(MESSAGES[:2]))
    assert proc.stdout.endswith(b"[e~[\n")
    proc = mmx("format", "render", "--dialect", "m1", stdin=json.dumps(MESSAGES[:2]))
    assert proc.stdout.decode("utf-8").startswith("<begin_of_document><beginning_of_sentence>system")


def test_parse_prints_one_json_object(tmp_path):
    completion = (
        'Need it.\n</think>\n\nReading « a.py ».\n<minimax:tool_call>\n<invoke name="read_file">\n'
        '<parameter name="path">a.py</parameter>\n<parameter name="limit">5</parameter>\n'
        "</invoke>\n</minimax:tool_call>[e~["
    )
    proc = mmx("format", "parse", "--tools", write_tools(tmp_path), stdin=completion)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "reasoning": "Need it.",
        "content": "Reading « a.py ».",
        "tool_calls": [{"name": "read_file", "arguments": {"path": "a.py", "limit": 5}}],
        "errors": [],
    }


def test_parse_reports_malformed_output_in_errors():
    proc = mmx(
        "format", "parse", stdin='r\n</think>\n<minimax:tool_call>\n<invoke name="x">\n<parameter name="a">'
    )
    assert proc.returncode == 0
    result = json.loads(proc.stdout)
    assert result["tool_calls"] == [] and "cut off" in result["errors"][0]


def test_bad_input_gets_a_clear_error_and_exit_code(tmp_path):
    proc = mmx("format", "render", stdin="not json")
    assert proc.returncode == 1 and b"stdin is not valid JSON" in proc.stderr
    proc = mmx("format", "render", stdin=json.dumps([{"role": "tool", "content": "orphan"}]))
    assert proc.returncode == 1 and b"no preceding assistant message" in proc.stderr
    proc = mmx("format", "render", stdin=json.dumps([{"role": "wizard", "content": "x"}]))
    assert proc.returncode == 1 and b"role must be one of" in proc.stderr
    proc = mmx("format", "parse", "--dialect", "m3", stdin="")
    assert proc.returncode == 2
    proc = mmx("format", "render", "--tools", str(tmp_path / "missing.json"), stdin="[]")
    assert proc.returncode == 1 and b"cannot read" in proc.stderr


def test_version_and_help():
    proc = mmx("--version", stdin="")
    assert proc.returncode == 0 and proc.stdout.startswith(b"mmx-agent ")
    assert mmx("--help", stdin="").returncode == 0
