"""An eval run's outputs (trajectory, agent.json, patch, predictions, reports) carry no secret: the
mmx agent works in a task's container, and what it says and writes passes the session's redactor."""

from __future__ import annotations

from agent.config import Settings
from evals.agents import MmxAgent
from evals.runner import EvalRunner, RunOptions
from tests.agent.helpers import raw_completion, write_replay
from tests.secret_forms import SECRET, leaks_in_files


def test_no_eval_output_shows_a_secret(synthetic_suite, env_image, tmp_path, isolated_state, monkeypatch):
    monkeypatch.setenv("MINIMAX_API_KEY", SECRET)  # the host's key, as a remote backend would hold it
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion(
                f"I know the key {SECRET}; put it in the code.",
                "",
                [("write_file", {"path": "key.py", "content": f"KEY = {SECRET!r}\n"})],
            ),
            raw_completion(
                "Fix the bug too.",
                "",
                [("edit_file", {"path": "calc.py", "old": "return a // b", "new": "return a / b"})],
            ),
            raw_completion("Done.", f"Fixed; the key is {SECRET}."),
        ],
    )
    output = tmp_path / "out"
    agent = MmxAgent(Settings(backend="replay", replay=str(replay)), timeout=600)
    summary = EvalRunner(
        [synthetic_suite.task("mmx-evals__calc-1")],
        agent,
        RunOptions(output=output, repos_dir=synthetic_suite.repos_dir),
    ).run()
    job = output / "run-1" / "mmx-evals__calc-1"
    patch = (job / "patch.diff").read_text()
    assert "+KEY = '[REDACTED:MINIMAX_API_KEY]'" in patch and "+    return a / b" in patch
    assert "[REDACTED:MINIMAX_API_KEY]" in (job / "trajectory.jsonl").read_text()
    assert leaks_in_files(output) == {}
    assert summary["mean_resolve_rate"] == 1.0  # the redacted patch still applies and fixes the task
