"""Building replay files in the raw M2 format, and small temp repositories."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from agent.backends.m2.render import render_prompt
from agent.backends.messages import Message, ToolCall


def raw_completion(reasoning: str, content: str = "", calls: list[tuple[str, dict[str, Any]]] = ()) -> str:
    """What M2 writes after the generation prompt: reasoning, </think>, text, calls (no end marker)."""
    turn = Message.assistant(content, reasoning=reasoning, tool_calls=[ToolCall(n, a) for n, a in calls])
    prompt = render_prompt([Message.user("x"), turn], add_generation_prompt=False)
    return prompt.split("]~b]ai\n<think>\n", 1)[1].removesuffix("[e~[\n")


def write_replay(path: Path, completions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"completion": c}) + "\n" for c in completions), encoding="utf-8")
    return path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def make_buggy_repo(root: Path) -> Path:
    repo = root / "proj"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return repo


FIX_SESSION = [
    raw_completion(
        "The test fails; I should read calc.py first.",
        "Reading the code.",
        [("read_file", {"path": "calc.py"})],
    ),
    raw_completion(
        "add subtracts instead of adding. Fix the operator.",
        "",
        [("edit_file", {"path": "calc.py", "old": "return a - b", "new": "return a + b"})],
    ),
    raw_completion(
        "Now run the tests to verify the fix.", "", [("bash", {"command": "python -m pytest -q"})]
    ),
    raw_completion("Tests pass. Done.", "Fixed `add` in calc.py: it subtracted. The tests pass."),
]


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`mmx-agent ARGS` as a real subprocess (the environment the test set up, its HOME included)."""
    import os
    import sys

    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )
