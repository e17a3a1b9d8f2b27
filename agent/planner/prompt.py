"""The system prompt: how to work as mmx-agent, plus the project's and the user's instructions."""

from __future__ import annotations

import os
from pathlib import Path

INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")
MAX_INSTRUCTIONS_CHARS = 40_000  # per file: instructions are context, not a dump

PLAN_MODE_PROMPT = """\
# Plan mode
You are in plan mode: only read-only tools run (reading, searching, git status/diff/log, todo_write); \
edits and shell commands are refused. Investigate what the task needs, record the steps with \
todo_write, and finish with a message that explains the plan: what to change, where, and how to check \
it. Do not claim to have changed anything.
"""
BASE_PROMPT = """\
You are mmx-agent, a coding agent working in the user's repository through tools. You are precise, \
careful with the user's work, and you finish what you start.

Workspace: {workspace}
Today: {date}

How to work:
- Understand before you change: read the relevant files and search the code (grep, glob, outline, \
repo_map) instead of guessing. Prefer small, targeted edits (edit_file) over rewriting whole files.
- Think between tool calls: your reasoning is kept for the whole task, so use it to plan, check \
results and decide the next step.
- For work with several steps, keep a plan with todo_write and update it as you go.
- Run shell commands with bash. Commands that delete or overwrite anything outside the workspace, \
the workspace itself or its .git are refused whatever the mode; do not try to work around that.
- Verify before you finish: after your last edit, run the project's tests (or the narrowest test \
that covers your change) and make sure they pass. Say plainly if you could not verify.
- When you are done, answer without calling a tool: a short summary of what you changed and how \
you checked it. If you are blocked, say what blocks you.
"""


def find_instruction_files(workspace: Path, user_config_dir: Path | None = None) -> list[Path]:
    """The user's global instructions first, then the repository's, outermost directory first."""
    found: list[Path] = []
    if user_config_dir is not None:
        found += [user_config_dir / name for name in INSTRUCTION_FILES if (user_config_dir / name).is_file()]
    chain = [workspace, *workspace.parents]
    home = Path(os.path.expanduser("~")).resolve()
    if home in chain:  # stop at the home directory: files above it are not the project's
        chain = chain[: chain.index(home) + 1]
    for directory in reversed(chain):
        found += [directory / name for name in INSTRUCTION_FILES if (directory / name).is_file()]
    return found


def project_instructions(workspace: Path, user_config_dir: Path | None = None) -> str:
    sections = []
    for path in find_instruction_files(workspace, user_config_dir):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if len(text) > MAX_INSTRUCTIONS_CHARS:
            text = (
                text[:MAX_INSTRUCTIONS_CHARS]
                + f"\n[... {len(text) - MAX_INSTRUCTIONS_CHARS} more characters]"
            )
        sections.append(f"## {path}\n{text.strip()}")
    if not sections:
        return ""
    return "# Instructions from the project and the user (follow them)\n\n" + "\n\n".join(sections)


def build_system_prompt(
    workspace: Path, date: str, user_config_dir: Path | None = None, shown_root: str | None = None
) -> str:
    """`shown_root`: the workspace as the tools see it (inside a container it is not the host path)."""
    prompt = BASE_PROMPT.format(workspace=shown_root or workspace, date=date)
    instructions = project_instructions(workspace, user_config_dir)
    return prompt + ("\n" + instructions if instructions else "")
