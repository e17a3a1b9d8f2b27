"""Secrets in what the shell tools return, on both sandbox kinds: every encoding, and every cut
(the head/tail cap, the reads of a background job, the line cut of read_file).

The secret is in the sandbox's environment, as a credential-looking variable, so commands can print
it on the host and in a container alike.
"""

from __future__ import annotations

import time

from agent.tools.base import ToolContext
from agent.tools.files import MAX_LINE_CHARS
from agent.tools.registry import run_tool
from agent.tools.search.tools import MAX_LINE_CHARS as MAX_GREP_LINE
from agent.tools.shell import OUTPUT_LIMIT
from tests.secret_forms import SECRET, all_forms_text, leaks

HEAD = OUTPUT_LIMIT // 2


def fill(count: int, letter: str) -> str:
    """A command printing `count` times `letter`, with tools every image has."""
    return f"head -c {count} /dev/zero | tr '\\0' {letter}"


def secret_ctx(workspace, sandbox_env, make_sandbox) -> ToolContext:
    return ToolContext(make_sandbox(workspace, env={**sandbox_env, "SERVICE_API_KEY": SECRET}))


def test_every_encoding_a_command_prints_is_redacted(workspace, sandbox_env, make_sandbox):
    ctx = secret_ctx(workspace, sandbox_env, make_sandbox)
    (workspace / "forms.txt").write_text(all_forms_text())
    result = run_tool("bash", {"command": 'cat forms.txt; printf "%s" "$SERVICE_API_KEY"'}, ctx)
    assert result.ok and leaks(result.output) == []
    assert result.output.count("[REDACTED:SERVICE_API_KEY]") >= 20


def test_a_secret_across_either_cut_of_the_output_shows_no_piece(workspace, sandbox_env, make_sandbox):
    ctx = secret_ctx(workspace, sandbox_env, make_sandbox)
    size = len(SECRET.encode())
    # The script ends by printing "\n<marker><cwd>\n" (agent/tools/shell.py): 1 + 44 + len(cwd) + 1 bytes.
    epilogue = 46 + len(ctx.root.encode())
    for into_head in (2, size // 2, size - 2):
        tail_start_inside = size // 2
        command = "; ".join(
            [
                fill(HEAD - into_head, "a"),
                'printf "%s" "$SERVICE_API_KEY"',
                fill(3 * OUTPUT_LIMIT, "b"),
                'printf "%s" "$SERVICE_API_KEY"',
                fill(HEAD - size + tail_start_inside - epilogue, "c"),
            ]
        )
        result = run_tool("bash", {"command": command}, ctx)
        assert "bytes elided" in result.output, result.output[-300:]
        assert leaks(result.output, prefix=2) == [], (into_head, result.output[HEAD - 40 : HEAD + 120])
        assert result.data["elided_bytes"] > 3 * OUTPUT_LIMIT


def test_a_secret_a_background_job_prints_slowly_never_shows(workspace, sandbox_env, make_sandbox):
    ctx = secret_ctx(workspace, sandbox_env, make_sandbox)
    script = 'k="$SERVICE_API_KEY"; for i in $(seq 0 $((${#k} - 1))); do printf "%s" "${k:$i:1}"; sleep 0.05; done; echo'
    started = run_tool("bash", {"command": script, "background": True}, ctx)
    job = started.data["job_id"]
    shown = []
    while True:  # read while it writes: each read may end in the middle of the secret
        result = run_tool("bash_output", {"id": job}, ctx)
        shown.append(result.output)
        if not result.data["running"]:
            break
        time.sleep(0.03)
    everything = "\n".join(shown)
    assert leaks(everything, prefix=2) == [], shown
    assert "[REDACTED:SERVICE_API_KEY]" in everything


def test_read_file_cutting_a_long_line_through_a_secret_shows_no_piece(workspace, sandbox_env, make_sandbox):
    ctx = secret_ctx(workspace, sandbox_env, make_sandbox)
    (workspace / "long.txt").write_text("x" * (MAX_LINE_CHARS - 10) + SECRET + "y" * 100 + "\n")
    result = run_tool("read_file", {"path": "long.txt"}, ctx)
    assert "line cut" in result.output and leaks(result.output, prefix=2) == []


def test_grep_cutting_a_long_line_through_a_secret_shows_no_piece(workspace, sandbox_env, make_sandbox):
    ctx = secret_ctx(workspace, sandbox_env, make_sandbox)
    (workspace / "long.txt").write_text("needle " + "x" * (MAX_GREP_LINE - 12) + SECRET + "y" * 100 + "\n")
    result = run_tool("grep", {"pattern": "needle"}, ctx)
    assert "needle" in result.output and leaks(result.output, prefix=2) == []
