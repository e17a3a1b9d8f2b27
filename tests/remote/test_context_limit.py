"""Remote runs survive the server's context limit: prompts counted as the server counts them, and a
"prompt too long" refusal compacts the history and retries the round (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.backends.base import GenerationParams, PromptTooLong
from agent.backends.m2.render import render_prompt
from agent.backends.messages import Message
from agent.backends.remote.context_errors import context_rejection
from agent.backends.token_estimate import estimate_tokens
from agent.config import Settings
from agent.events import Compaction, Status
from agent.session_setup import start_session
from tests.remote.servers import Reply, count_tokens

KEY = {"MINIMAX_API_KEY": "mm-test-key-0123456789abcdef"}


@pytest.mark.parametrize(
    ("status", "message", "counted", "allowed"),
    [
        (400, "This model's maximum context length is 4096 tokens. However, you requested 5486 tokens "
         "(5486 in the messages, 0 in the completion). Please reduce the length of the messages.", 5486, 4096),
        (400, "This model's maximum context length is 4096 tokens and your request has 5000 input tokens "
         "(1000 > 4096 - 5000).", 5000, 4096),
        (400, "The input (5486 tokens) is longer than the model's context length (4096 tokens).", 5486, 4096),
        (400, "This model's maximum context length is 128000 tokens. However, your messages resulted in "
         "130001 tokens. Please reduce the length of the messages.", 130001, 128000),
        (400, "prompt is too long: 208310 tokens > 200000 maximum", 208310, 200000),
        (400, "invalid params, context window exceeds limit (2013)", None, None),
    ],
)  # fmt: skip
def test_context_refusals_are_recognised_with_the_servers_numbers(status, message, counted, allowed):
    refusal = context_rejection(status, message)
    assert isinstance(refusal, PromptTooLong)
    assert (refusal.counted, refusal.allowed) == (counted, allowed)


@pytest.mark.parametrize(
    ("status", "message"),
    [(400, "messages[2]: tool_call_id 'x' answers no tool call"), (500, "maximum context length is 4096"),
     (401, "invalid api key")],
)  # fmt: skip
def test_other_errors_are_not_context_refusals(status, message):
    assert context_rejection(status, message) is None


def conversation(words: int) -> list[Message]:
    text = " ".join(f"w{i}, (x)" for i in range(words))
    return [Message.system("You fix code."), Message.user(f"look at this: {text}")]


def agent_prompt_parts() -> tuple[list[Message], list[dict]]:
    """The agent's real first request: its system prompt, every tool's schema and a task."""
    from agent.planner.prompt import build_system_prompt
    from agent.planner.todo import TodoTool
    from agent.tools.registry import all_tools, tool_definitions

    system = build_system_prompt(Path("/work"), "2026-12-02", Path("/nonexistent"), shown_root="/work")
    tools = tool_definitions([*all_tools(), TodoTool()])
    return [Message.system(system), Message.user("Fix the failing test in calc.py.")], tools


def test_after_one_round_the_estimate_is_within_five_percent_of_the_servers_count(serve, backend_for):
    """The server's tokenizer (words and single punctuation marks) is far from chars/3.5 on code."""
    server = serve("split", [Reply("ok", "", [("read_file", {"path": "calc.py"})])] * 2, tokenize=False)
    backend = backend_for(server, kind="openai-compatible")
    messages, tools = agent_prompt_parts()
    code = "".join(f"def f{i}(a, b):\n    return [a[{i}], b.get('k{i}', None)]\n\n" for i in range(60))
    first = render_prompt(messages, tools)
    list(backend.stream(messages, tools, GenerationParams()))
    call = server.generation_requests()[0]
    assert count_tokens(server.prompt(call)) == count_tokens(first)  # the server saw what we rendered
    turn = backend.last_round
    follow_up = [
        *messages,
        Message.assistant("", reasoning=turn.reasoning, tool_calls=[]),
        Message.user(code),
    ]
    prompt = render_prompt(follow_up, tools)
    plain = estimate_tokens(prompt)
    assert abs(plain - count_tokens(prompt)) > 0.05 * count_tokens(prompt)  # uncalibrated: too far off
    assert abs(backend.count_tokens(prompt) - count_tokens(prompt)) <= 0.05 * count_tokens(prompt)
    assert backend.tokens.source == "calibrated"


def test_a_server_with_tokenize_gives_exact_counts_and_its_window(serve, backend_for):
    server = serve("split", [Reply("ok", "Seen it.")], context=7777)
    backend = backend_for(server, kind="openai-compatible")
    prompt = render_prompt(conversation(50), None)
    assert backend.count_tokens(prompt) == count_tokens(prompt)
    assert backend.context_window == 7777 and backend.tokens.source == "server"


def test_a_tokenizer_file_counts_exactly(serve, backend_for, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation("isolated")]
    )
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    server = serve("split", [Reply("ok", "Seen it.")], tokenize=False)
    backend = backend_for(server, kind="openai-compatible", tokenizer=str(tmp_path))
    prompt = render_prompt(conversation(60), None)
    assert backend.count_tokens(prompt) == count_tokens(prompt)
    assert server.received == []  # counted here, nothing asked of the server


def dense(tokens: int) -> str:
    """Text of about `tokens` server tokens in `tokens` characters: far more than chars/3.5 guesses."""
    return ("x=[1,2];" * (tokens // 8 + 1))[:tokens]


def test_a_long_session_is_compacted_after_the_server_refuses_it_and_finishes(serve, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for name, size in (("a.txt", 2000), ("b.txt", 2000), ("c.txt", 1000)):
        (work / name).write_text(dense(size))
    script = [
        Reply("read a", "", [("read_file", {"path": "a.txt"})]),
        Reply("read b", "", [("read_file", {"path": "b.txt"})]),
        Reply("done", "Both read."),
        Reply("read c", "", [("read_file", {"path": "c.txt"})]),
        Reply("", "The user asked to read a.txt and b.txt; both were read."),  # the summary request
        Reply("done", "All three read."),
    ]
    server = serve("split", script, context=9000, tokenize=False, by_order=True)
    os.environ.update(KEY)
    events: list = []
    settings = Settings(backend="openai-compatible", base_url=server.url, permission_mode="full-auto")
    session = start_session(settings, work, interactive=False, emit=events.append)
    try:
        first = session.loop.run("read a.txt and b.txt")
        second = session.loop.run("now read c.txt")
    finally:
        session.close()
    assert (first.status, second.status) == ("done", "done"), second.result
    assert second.result == "All three read."
    assert server.refused and server.refused[0] > 9000  # the server did refuse, and we recovered
    assert any(isinstance(e, Compaction) and e.stage == "summary" for e in events)
    assert any(isinstance(e, Status) and "the server counted" in e.message for e in events)
    final = server.generation_requests()[-1]
    assert count_tokens(server.prompt(final)) <= 9000


def test_a_first_turn_that_cannot_fit_ends_with_exit_3_and_the_servers_numbers(serve, tmp_path):
    server = serve("split", [Reply("never", "never")], context=3000, tokenize=False)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, **KEY, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "agent", "-p", "hello", "--backend", "openai-compatible", "--base-url",
         server.url, "--output-format", "json", "--cwd", str(work)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    result = json.loads(run.stdout)
    assert result["status"] == "context_exhausted"
    counted = server.refused[0]
    assert f"the server counted {counted:,} tokens and allows 3,000" in result["result"]
    assert Path(work).is_dir() and "Traceback" not in run.stderr
