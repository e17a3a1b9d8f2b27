"""What a run changed in the workspace, as a diff `git apply` accepts.

Snapshots are trees written to the checkpoint store (agent/tools/checkpoints.py) but not added to
its undo chain, and they touch none of the user's git state. Shell commands' changes count too,
since a snapshot is of the files, not of the tool calls.
"""

from __future__ import annotations

from agent.tools.base import ToolContext
from agent.tools.checkpoints import _SNAPSHOT_TREE, CheckpointError, _run_git

_DIFF = "g diff --no-color --no-ext-diff --binary --no-renames --src-prefix=a/ --dst-prefix=b/"


def snapshot_tree(ctx: ToolContext) -> str:
    return _run_git(ctx, _SNAPSHOT_TREE + 'printf "%s" "$tree"\n').strip().splitlines()[-1]


def snapshot(ctx: ToolContext) -> str | None:
    try:
        return snapshot_tree(ctx)
    except CheckpointError:
        return None  # no git on the machine, say: the run goes on, without a diff


def diff_since(ctx: ToolContext, start: str | None) -> str:
    if start is None:
        return ""
    try:
        end = snapshot_tree(ctx)
        return _run_git(ctx, f"{_DIFF} {start} {end}\n")
    except CheckpointError:
        return ""
