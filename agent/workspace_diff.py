"""What a run changed in the workspace, as a diff `git apply` accepts.

Snapshots are trees in the checkpoint store (agent/tools/checkpoints.py), outside its undo chain,
and touch none of the user's git state. Shell commands' changes count too, since a snapshot is of
the files, not of the tool calls.
"""

from __future__ import annotations

from agent.tools.base import ToolContext
from agent.tools.checkpoints import CheckpointError, snapshot_tree, tree_diff


def snapshot(ctx: ToolContext) -> str | None:
    try:
        return snapshot_tree(ctx)
    except CheckpointError:
        return None  # no git on the machine, say: the run goes on, without a diff


def diff_since(ctx: ToolContext, start: str | None) -> str:
    if start is None:
        return ""
    try:
        return tree_diff(ctx, start, snapshot_tree(ctx))
    except CheckpointError:
        return ""
