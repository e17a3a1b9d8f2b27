"""`mmx-agent -p` with tool calls a hostile or broken model could write: the run goes on, the model is
told what was wrong, and files keep their bytes."""

from __future__ import annotations

import json
import subprocess

from tests.agent.helpers import raw_completion
from tests.agent.test_cli_contract import mmx, replay, repo

__all__ = ["repo"]  # a fixture


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def _call_with_raw_value(tool: str, path: str, name: str, raw: str) -> str:
    # raw_completion renders values as the model writes them; the placeholder is swapped for raw text.
    return raw_completion("try", "", [(tool, {"path": path, name: "PLACEHOLDER"})]).replace(
        "PLACEHOLDER", raw
    )


def test_deeply_nested_arguments_are_tool_errors_and_the_run_goes_on(tmp_path, repo):
    completions = [
        _call_with_raw_value("multi_edit", "calc.py", "edits", "[" * 30_000 + "]" * 30_000),
        _call_with_raw_value("multi_edit", "calc.py", "edits", "[" * 500 + "]" * 500),  # json.loads takes it
        raw_completion("Both calls failed.", "Gave up."),
    ]
    proc = mmx(
        "-p", "x", "--backend", "replay", "--replay", replay(tmp_path, completions),
        "--output-format", "stream-json", cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = [e for e in _events(proc.stdout) if e["type"] == "tool_result"]
    assert len(results) == 2 and not any(r["ok"] for r in results)
    assert all("invalid arguments for multi_edit: edits:" in r["output"] for r in results)
    assert all(len(r["output"]) < 2000 for r in results)
    assert _events(proc.stdout)[-1]["status"] == "done"
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"


def test_a_latin1_file_is_edited_byte_for_byte_in_a_run(tmp_path, repo):
    (repo / "legacy.py").write_bytes(b"# caf\xe9 cr\xe8me\nx = 1\n")
    subprocess.run(["git", "add", "legacy.py"], cwd=repo, check=True)
    completions = [
        raw_completion("edit", "", [("edit_file", {"path": "legacy.py", "old": "x = 1", "new": "x = 2"})]),
        raw_completion(
            "refused?", "", [("edit_file", {"path": "legacy.py", "old": "x = 2", "new": "x = 'é'"})]
        ),
        raw_completion("Done.", "Changed x."),
    ]
    proc = mmx(
        "-p", "x", "--backend", "replay", "--replay", replay(tmp_path, completions),
        "--output-format", "stream-json", cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first, second = [e for e in _events(proc.stdout) if e["type"] == "tool_result"]
    assert first["ok"] and "# caf\ufffd cr\ufffdme" in first["output"]
    assert not second["ok"] and "is not UTF-8" in second["output"]
    assert (repo / "legacy.py").read_bytes() == b"# caf\xe9 cr\xe8me\nx = 2\n"
