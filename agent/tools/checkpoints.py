"""Checkpoints: a snapshot of the workspace before every mutating tool call, and `undo`.

Snapshots live in a shadow git store that shares nothing with the user's repository: its own
GIT_DIR under the user's state directory (`$XDG_STATE_HOME/mmx-agent/checkpoints/<hash of the
workspace path>`, default `~/.local/state/...`), its own index, and its own ref
(`refs/mmx/checkpoints`, one commit per checkpoint). The workspace is only its work tree, so the
user's branches, index, stash and refs are never read or written. Snapshots take tracked and
untracked files and honour the workspace's .gitignore (ignored files are neither saved nor
touched by undo); `.git` is always left out. Attributes that would transform content (eol,
filters such as LFS) are switched off so files come back byte for byte.

Everything runs through `sandbox.exec`, so the Docker sandbox gets the same behaviour.

`undo(n)` restores the state from before the n-th last mutation and drops those n checkpoints,
so repeated undos walk back in time; calls that changed no file do not count. The state it replaced is kept on `refs/mmx/undone` (with a
reflog) for manual recovery. Limits: nested git repositories are stored as a commit pointer, not
their files; large binaries in the workspace are copied into the store; two sessions on the same
workspace share one store.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from typing import Any

from agent.tools.base import Permission, ToolContext, ToolResult
from sandbox.base import SandboxError

CHECKPOINTS_REF = "refs/mmx/checkpoints"
UNDONE_REF = "refs/mmx/undone"
GIT_TIMEOUT_SECONDS = 300
MAX_DIFF_BYTES = 64 * 1024 * 1024

# Attributes that make git change bytes on the way in or out, switched off for the store.
_STORE_ATTRIBUTES = "* -text -eol -filter -ident -working-tree-encoding\n"


class CheckpointError(Exception):
    """The shadow store could not record or restore a checkpoint."""


@dataclass
class Checkpoint:
    commit: str
    label: str  # what was about to run, e.g. "edit_file {"path": ...}"
    created: int  # unix time


def store_path(ctx: ToolContext) -> str:
    """Where this workspace's shadow store lives, as the sandbox sees it."""
    cached = ctx.state.get("checkpoints.store")
    if cached:
        return cached
    found = ctx.sandbox.exec(
        'd="${XDG_STATE_HOME:-}"; case "$d" in /*) ;; *) d="$HOME/.local/state";; esac; printf %s "$d"',
        timeout=30,
    )
    state_home = found.output.strip()
    if found.exit_code != 0 or not state_home.startswith("/"):
        raise CheckpointError(f"cannot find the state directory for checkpoints: {found.output.strip()}")
    workspace_hash = hashlib.sha256(ctx.root.encode()).hexdigest()[:16]
    store = f"{state_home}/mmx-agent/checkpoints/{workspace_hash}"
    ctx.state["checkpoints.store"] = store
    return store


def _run_git(ctx: ToolContext, script: str, max_output: int = 1_000_000) -> str:
    """Runs `script` with `g` bound to git on the shadow store; returns its output."""
    store = store_path(ctx)
    q = shlex.quote
    prelude = f"""set -e
unset GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_NAMESPACE GIT_COMMON_DIR GIT_PREFIX
export GIT_DIR={q(store)} GIT_WORK_TREE={q(ctx.root)} GIT_INDEX_FILE={q(store + "/index")}
export GIT_AUTHOR_NAME=mmx-agent GIT_AUTHOR_EMAIL=mmx-agent@localhost
export GIT_COMMITTER_NAME=mmx-agent GIT_COMMITTER_EMAIL=mmx-agent@localhost
g() {{ git -c core.autocrlf=false -c core.safecrlf=false -c core.fsmonitor=false -c core.hooksPath=/dev/null \\
  -c core.untrackedCache=false -c core.quotepath=false -c commit.gpgsign=false -c gc.auto=0 \\
  -c advice.addEmbeddedRepo=false "$@"; }}
if [ ! -f "$GIT_DIR/HEAD" ]; then
  mkdir -p "$GIT_DIR"
  g init -q
  mkdir -p "$GIT_DIR/info"
  printf %s {q(_STORE_ATTRIBUTES)} > "$GIT_DIR/info/attributes"
  printf '%s\\n' {q(ctx.root)} > "$GIT_DIR/mmx-workspace"
fi
"""
    try:
        result = ctx.sandbox.exec(
            prelude + script, cwd=ctx.root, timeout=GIT_TIMEOUT_SECONDS, max_output=max_output
        )
    except SandboxError as e:
        raise CheckpointError(str(e)) from e
    if result.exit_code != 0:
        reason = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        raise CheckpointError(f"checkpoint store command failed ({reason}): {result.output.strip()[-2000:]}")
    return result.output


_SNAPSHOT_TREE = "g add -A --ignore-errors . >/dev/null\ntree=$(g write-tree)\n"
_HEAD = f"head=$(g rev-parse -q --verify {CHECKPOINTS_REF} || true)\n"
# When the newest checkpoint equals the current state, the call after it changed nothing.
_SKIP_UNCHANGED_HEAD = (
    'if [ -n "$head" ] && [ "$(g rev-parse "$head^{tree}")" = "$tree" ]; then\n'
    '  head=$(g rev-parse -q --verify "$head^" || true)\nfi\n'
)


def checkpoint(ctx: ToolContext, label: str) -> str:
    """Records the workspace as it is now; returns the checkpoint's commit id."""
    script = (
        _SNAPSHOT_TREE
        + _HEAD
        + _SKIP_UNCHANGED_HEAD  # its call changed nothing: this checkpoint takes its place
        + f'commit=$(printf %s {shlex.quote(label)} | g commit-tree "$tree" ${{head:+-p "$head"}})\n'
        + f'g update-ref {CHECKPOINTS_REF} "$commit"\n'
        + 'printf "%s" "$commit"\n'
    )
    return _run_git(ctx, script).strip().splitlines()[-1]


def snapshot_tree(ctx: ToolContext) -> str:
    """The workspace's files as a tree id in the store, outside the undo chain (for run diffs)."""
    return _run_git(ctx, _SNAPSHOT_TREE + 'printf "%s" "$tree"\n').strip().splitlines()[-1]


def tree_diff(ctx: ToolContext, start: str, end: str) -> str:
    """The change between two snapshot trees as a patch `git apply` accepts in the workspace root."""
    q = shlex.quote
    script = f"g diff --binary --full-index --no-color --no-ext-diff {q(start)} {q(end)}\n"
    return _run_git(ctx, script, max_output=MAX_DIFF_BYTES)


def list_checkpoints(ctx: ToolContext, limit: int = 50) -> list[Checkpoint]:
    """The most recent checkpoints first."""
    script = (
        f"g rev-parse -q --verify {CHECKPOINTS_REF} >/dev/null || exit 0\n"
        f"g log --format='%H%x00%ct%x00%s' -n {int(limit)} {CHECKPOINTS_REF}\n"
    )
    found = []
    for line in _run_git(ctx, script).splitlines():
        parts = line.split("\0")
        if len(parts) == 3:
            found.append(Checkpoint(commit=parts[0], created=int(parts[1]), label=parts[2]))
    return found


@dataclass
class UndoResult:
    restored_to: Checkpoint  # the workspace now looks as it did just before this one's call
    undone: int
    changes: list[str]  # "reverted path", "restored path" (brought back), "removed path"


def undo(ctx: ToolContext, n: int = 1) -> UndoResult:
    """Restores the workspace to before the n-th last change and drops those n checkpoints.

    Calls that changed nothing do not count: a checkpoint whose state equals the next one's is
    replaced when the next is taken, and skipped here when it equals the current state.
    """
    if n < 1:
        raise CheckpointError("n must be at least 1")
    script = (
        _SNAPSHOT_TREE
        + _HEAD
        + _SKIP_UNCHANGED_HEAD
        + f'if [ -z "$head" ] || ! target=$(g rev-parse -q --verify "$head~{n - 1}"); then\n'
        + '  printf "MMX_TOO_FEW %s\\n" "$( [ -n "$head" ] && g rev-list --count "$head" || echo 0)"; exit 0\nfi\n'
        + 'printf "MMX_TARGET %s %s\\n" "$target" "$(g log -1 --format="%ct %s" "$target")"\n'
        # Keep the state we are about to replace, so even an undo can be taken back by hand.
        + 'now=$(printf "state before undo" | g commit-tree "$tree" -p "$target")\n'
        + f'g update-ref -m "undo {n}" --create-reflog {UNDONE_REF} "$now"\n'
        + 'g diff-tree -r --no-renames --name-status "$tree" "$target^{tree}"\n'
        # With the index holding the current files, --reset -u rewrites changed files, brings back
        # deleted ones and removes files the target lacks; ignored files are not in the index.
        + 'g read-tree --reset -u "$target^{tree}"\n'
        + f'if parent=$(g rev-parse -q --verify "$target^"); then g update-ref {CHECKPOINTS_REF} "$parent"\n'
        + f"else g update-ref -d {CHECKPOINTS_REF}; fi\n"
    )
    output = _run_git(ctx, script)
    target, changes = None, []
    for line in output.splitlines():
        if line.startswith("MMX_TOO_FEW "):
            recorded = line.split()[1]
            raise CheckpointError(f"cannot undo {n} change(s): only {recorded} recorded for this workspace")
        if line.startswith("MMX_TARGET "):
            _, commit, created, label = (line.split(" ", 3) + [""])[:4]
            target = Checkpoint(commit=commit, label=label, created=int(created))
        elif "\t" in line:
            changes.append(_describe_change(line))
    if target is None:
        raise CheckpointError(f"undo gave no result: {output.strip()[-500:]}")
    return UndoResult(restored_to=target, undone=n, changes=changes)


def _describe_change(diff_line: str) -> str:
    status, path = diff_line.split("\t", 1)
    # diff-tree compares now -> target: "A" means the file comes back, "D" means it is removed.
    return {"A": "restored", "D": "removed", "M": "reverted"}.get(status[:1], status) + " " + path


class Undo:
    name = "undo"
    description = (
        "Undo the last n tool calls that changed files in the workspace (edits, writes, and shell "
        "commands), restoring the files as they were before them. Files ignored by .gitignore are not "
        "tracked. Repeated undos walk further back."
    )
    parameters = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1, "description": "How many changes to undo (default 1)."}
        },
        "additionalProperties": False,
    }
    permission = Permission.EDIT
    manages_checkpoints = True  # the registry must not checkpoint before an undo: it would undo nothing

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        n = args.get("n", 1)
        try:
            result = undo(ctx, n)
        except CheckpointError as e:
            return ToolResult(False, f"undo failed: {e}")
        changed = "\n".join(result.changes) if result.changes else "(no file differed)"
        output = f"undid {result.undone} change(s); the workspace is as it was before: {result.restored_to.label}\n{changed}"
        return ToolResult(True, output, {"undone": result.undone, "changes": result.changes})


TOOLS = [Undo()]
