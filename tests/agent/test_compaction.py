"""Compaction, checked on the prompts the backend actually received."""

from __future__ import annotations

import math

from agent.backends.replay import ReplayBackend
from agent.config import Settings
from agent.events import Compaction
from agent.planner.compaction import SUMMARY_PREFIX
from agent.session_setup import start_session
from tests.agent.helpers import make_buggy_repo, raw_completion, write_replay


def tokens(text: str) -> int:
    return math.ceil(len(text) / 3.5)


def window_for_limit(limit: int) -> int:
    # The session's budget: limit = (window - window // 4) * 0.9 for windows under 32k.
    return math.ceil(limit / 0.675) + 4


def run(tmp_path, repo, completions, tasks, window):
    backend = ReplayBackend(write_replay(tmp_path / f"r{window}.jsonl", completions), context_window=window)
    events: list = []
    session = start_session(
        Settings(backend="replay", permission_mode="full-auto"),
        repo,
        interactive=False,
        emit=events.append,
        backend=backend,
    )
    results = [session.loop.run(t) for t in tasks]
    session.close()
    return backend, events, results


def line_file(path, lines: int, tag: str) -> None:
    path.write_text("".join(f"{tag} line {i:04d} with some padding text\n" for i in range(lines)))


def test_old_tool_outputs_are_trimmed_first(tmp_path):
    repo = make_buggy_repo(tmp_path)
    line_file(repo / "big.txt", 300, "BIG")
    completions = [
        raw_completion("read it", "", [("read_file", {"path": "big.txt"})]),
        raw_completion("done reading", "It is big."),
        raw_completion("second turn thought", "Still big."),
    ]
    tasks = ["read big.txt", "and now? " + "please consider this long question. " * 60]
    calibration, _, _ = run(tmp_path, repo, completions, tasks, 1_000_000)
    # Budget: the first turn fits whole; the second fits only once the old output is trimmed.
    window = window_for_limit(tokens(calibration.prompts[1]) + 50)
    assert tokens(calibration.prompts[2]) > tokens(calibration.prompts[1]) + 300
    backend, events, results = run(tmp_path, repo, completions, tasks, window)
    assert [r.status for r in results] == ["done", "done"]
    (compaction,) = [e for e in events if isinstance(e, Compaction)]
    assert compaction.stage == "trim" and compaction.tokens_after < compaction.tokens_before
    prompt = backend.prompts[2]
    assert "characters of this old tool output were trimmed" in prompt
    assert "BIG line 0000" in prompt and "BIG line 0150" not in prompt
    assert prompt.endswith("]~b]user\n" + tasks[1] + "[e~[\n]~b]ai\n<think>\n")


def test_older_turns_are_summarised_and_the_current_chain_kept(tmp_path):
    repo = make_buggy_repo(tmp_path)
    for name in "abcd":
        line_file(repo / f"{name}.txt", 40, name.upper() * 3)
    line_file(repo / "now.txt", 60, "NOW")
    first_turn = [
        raw_completion(f"OLD-THOUGHT read {n}", "", [("read_file", {"path": f"{n}.txt"})]) for n in "abcd"
    ]
    completions = [
        *first_turn,
        raw_completion("OLD-THOUGHT done", "Read four files."),
        raw_completion("CURRENT-THOUGHT-1 read now.txt", "", [("read_file", {"path": "now.txt"})]),
        raw_completion("summarising", "SUMMARY: the user had four files a-d read; nothing changed."),
        raw_completion("CURRENT-THOUGHT-2 finish", "now.txt has 60 lines."),
    ]
    tasks = ["read a, b, c and d", "LATEST: how long is now.txt?"]
    calibration, _, _ = run(tmp_path, repo, [*completions[:6], completions[7]], tasks, 1_000_000)
    before_last_round = tokens(calibration.prompts[6])
    # Fits the first round of the new turn, not the second.
    window = window_for_limit(max(tokens(calibration.prompts[5]) + 10, before_last_round - 300))
    backend, events, results = run(tmp_path, repo, completions, tasks, window)
    assert [r.status for r in results] == ["done", "done"], results[-1].result
    (compaction,) = [e for e in events if isinstance(e, Compaction)]
    assert compaction.stage == "summary"
    summary_request = backend.prompts[6]
    assert "AAA line 0000" in summary_request and "<conversation>" in summary_request
    prompt = backend.prompts[7]
    # The system prompt, the summary, the latest user message verbatim, the current chain intact.
    assert prompt.startswith("]~!b[]~b]system\nYou are mmx-agent")
    assert SUMMARY_PREFIX + "SUMMARY: the user had four files a-d read" in prompt
    assert "]~b]user\nLATEST: how long is now.txt?[e~[" in prompt
    assert "<think>\nCURRENT-THOUGHT-1 read now.txt\n</think>" in prompt
    assert "NOW line 0059" in prompt
    assert "OLD-THOUGHT" not in prompt and "AAA line" not in prompt
    assert tokens(prompt) <= compaction.tokens_after + 1
