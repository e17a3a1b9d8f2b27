"""Checkpoints: a snapshot of the workspace before every mutating tool call, and `undo`.

Snapshots are commits in the checkpoint store (checkpoint_store.py: where it lives, how it is
locked, repaired and kept from running programs), one per checkpoint on `refs/mmx/checkpoints`.
The user's branches, index, stash and refs are never read or written. A snapshot holds:
- every file that is not ignored (by .gitignore, .git/info/exclude is the user's git's business,
  or the user's global excludes file), `.git` always left out, with content, executable bit and
  symlinks exactly as they are (attributes that transform content are switched off);
- small ignored files too (`.env`, a local settings file): each at most MAX_IGNORED_FILE bytes,
  taken in path order until MAX_IGNORED_TOTAL bytes. Ignored directories that hold nothing but
  ignored files (`node_modules/`, `.venv/`), larger ignored files and those past the total are
  not saved; the checkpoint lists them (up to MAX_LISTED) so undo can say what it cannot bring
  back. Nested git repositories are stored as a commit pointer, not their files.

`undo(n)` restores the state from before the n-th last mutation and drops those n checkpoints,
so repeated undos walk back in time; calls that changed no file do not count. The state it
replaced (including any ignored file it overwrites) is kept on `refs/mmx/undone` (with a reflog)
for manual recovery. Ignored files that a checkpoint did not save, or that were created after
it, are left as they are. Two sessions on the same workspace share one store (the lock makes
them take turns).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult
from agent.tools.checkpoint_store import (
    CHECKPOINTS_REF,
    UNDONE_REF,
    CheckpointError,
    run_store_script,
    store_path,
)

__all__ = ["CheckpointError", "store_path", "checkpoint", "undo", "snapshot_tree", "tree_diff"]

MAX_DIFF_BYTES = 64 * 1024 * 1024
MAX_IGNORED_FILE = 1024 * 1024
MAX_IGNORED_TOTAL = 16 * 1024 * 1024
MAX_LISTED = 200
UNSAVED = "unsaved"  # the tag of a line in a checkpoint's message body: what it did not save


@dataclass
class Checkpoint:
    commit: str
    label: str  # what was about to run, e.g. "edit_file {"path": ...}"
    created: int  # unix time


@dataclass
class CheckpointTaken:
    commit: str
    notes: list[str] = field(default_factory=list)  # what the store had to repair first


# snapshot [with-ignored]: the index becomes the workspace's files that are not ignored (and,
# with-ignored, the small ignored ones); $tree its tree. What it leaves out goes to
# $tmp/unsaved as "unsaved<TAB>why<TAB>path" lines (names with a newline are not listed). An
# index that names objects the store lost (deleted by hand) is rebuilt. The steps check their
# own errors: `set -e` does not reach into a function called as a condition.
_SNAPSHOT = rf"""unsaved() {{
  count=$((count + 1))
  case $2 in *$'\n'*) return 0 ;; esac
  [ "$count" -gt {MAX_LISTED} ] || printf '{UNSAVED}\t%s\t%s\n' "$1" "$2" >>"$tmp/unsaved"
}}
add_small_ignored() {{
  left={MAX_IGNORED_TOTAL} count=0
  g ls-files -z -o -i --exclude-standard --directory >"$tmp/ignored" || return 1
  while IFS= read -r -d '' path; do
    case $path in */) unsaved "ignored directory" "$path" ;; *) printf '%s\0' "$path" ;; esac
  done <"$tmp/ignored" >"$tmp/ignored-files"
  xargs -0 -r stat --printf '%s %n\0' -- <"$tmp/ignored-files" >"$tmp/sizes" 2>/dev/null
  while IFS= read -r -d '' entry; do
    size=${{entry%% *}} path=${{entry#* }}
    if [ "$size" -gt {MAX_IGNORED_FILE} ]; then unsaved "ignored file larger than 1 MiB" "$path"
    elif [ "$size" -gt "$left" ]; then unsaved "ignored file past the 16 MiB kept for ignored files" "$path"
    else left=$((left - size)); printf '%s\0' "$path"
    fi
  done <"$tmp/sizes" >"$tmp/small"
  [ ! -s "$tmp/small" ] || g update-index --add --remove -z --stdin <"$tmp/small"
}}
take_snapshot() {{
  : >"$tmp/unsaved"
  g ls-files -z -c -i --exclude-standard >"$tmp/ignored-in-index" || return 1
  if [ -s "$tmp/ignored-in-index" ]; then
    g update-index --force-remove -z --stdin <"$tmp/ignored-in-index" || return 1
  fi
  if ! g add -A --ignore-errors . >/dev/null 2>"$tmp/add-errors"; then
    note "some files could not be read and are not in the checkpoint: $(head -c 300 "$tmp/add-errors" | tr '\n' ' ')"
  fi
  if [ "$1" = with-ignored ]; then add_small_ignored || return 1; fi
  tree=$(g write-tree 2>"$tmp/write-tree-error")
}}
snapshot() {{
  if ! take_snapshot "${{1:-}}"; then
    rm -f "$GIT_INDEX_FILE"
    note "the checkpoint store's index could not be used ($(head -c 200 "$tmp/write-tree-error" | tr '\n' ' ')); it was rebuilt from the workspace"
    take_snapshot "${{1:-}}" || {{ cat "$tmp/write-tree-error"; exit 1; }}
  fi
}}
"""
_HEAD = f"head=$(g rev-parse -q --verify {CHECKPOINTS_REF} || true)\n"
# When the newest checkpoint equals the current state, the call after it changed nothing.
_SKIP_UNCHANGED_HEAD = (
    'if [ -n "$head" ] && [ "$(g rev-parse "$head^{tree}")" = "$tree" ]; then\n'
    '  head=$(g rev-parse -q --verify "$head^" || true)\nfi\n'
)


def checkpoint(ctx: ToolContext, label: str) -> CheckpointTaken:
    """Records the workspace as it is now."""
    script = (
        _SNAPSHOT
        + "snapshot with-ignored\n"
        + _HEAD
        + _SKIP_UNCHANGED_HEAD  # its call changed nothing: this checkpoint takes its place
        + f"printf '%s\\n' {shlex.quote(label)} >\"$tmp/message\"\n"
        + '[ ! -s "$tmp/unsaved" ] || { echo; cat "$tmp/unsaved"; } >>"$tmp/message"\n'
        + 'commit=$(g commit-tree "$tree" ${head:+-p "$head"} <"$tmp/message")\n'
        + 'set_head "$commit"\n'
        + 'printf "%s\\n" "$commit"\n'
    )
    output = run_store_script(ctx, script)
    return CheckpointTaken(commit=output.lines[-1], notes=output.notes)


def snapshot_tree(ctx: ToolContext) -> str:
    """The workspace's files as a tree id in the store, outside the undo chain (for run diffs).
    Ignored files are left out: a run's diff is what it changed in the project."""
    return run_store_script(ctx, _SNAPSHOT + 'snapshot\nprintf "%s\\n" "$tree"\n').lines[-1]


def tree_diff(ctx: ToolContext, start: str, end: str) -> str:
    """The change between two snapshot trees as a patch `git apply` accepts in the workspace root."""
    q = shlex.quote
    script = f"g diff --binary --full-index --no-color --no-ext-diff --no-textconv {q(start)} {q(end)}\n"
    return run_store_script(ctx, script, max_output=MAX_DIFF_BYTES).text


def list_checkpoints(ctx: ToolContext, limit: int = 50) -> list[Checkpoint]:
    """The most recent checkpoints first."""
    script = (
        f"g rev-parse -q --verify {CHECKPOINTS_REF} >/dev/null || exit 0\n"
        f"g log --format='%H%x00%ct%x00%s' -n {int(limit)} {CHECKPOINTS_REF}\n"
    )
    found = []
    for line in run_store_script(ctx, script).lines:
        parts = line.split("\0")
        if len(parts) == 3:
            found.append(Checkpoint(commit=parts[0], created=int(parts[1]), label=parts[2]))
    return found


@dataclass
class UndoResult:
    restored_to: Checkpoint  # the workspace now looks as it did just before this one's call
    undone: int
    changes: list[str]  # "reverted path", "restored path" (brought back), "removed path"
    not_restored: list[str] = field(default_factory=list)  # "path: why", gone and not saved
    notes: list[str] = field(default_factory=list)  # what the store had to repair first


# After $target is known: the index gets the target's ignored files that exist now (so the
# undone state keeps what the undo overwrites) and no other ignored file (so undo leaves them).
_IGNORED_FOR_UNDO = r"""g ls-files -z -c -i --exclude-standard | g update-index --force-remove -z --stdin
g ls-tree -r -z --name-only "$target" | { g check-ignore --no-index -z --stdin || true; } |
  while IFS= read -r -d '' path; do [ -d "$path" ] && [ ! -L "$path" ] || printf '%s\0' "$path"; done |
  g update-index --add --remove -z --stdin
tree=$(g write-tree)
"""
# What undo cannot bring back: entries the target did not save, and nested repositories
# (stored as a commit id only), that are gone now.
_REPORT_NOT_RESTORED = rf"""g log -1 --format=%b "$target" | while IFS=$'\t' read -r tag why path; do
  [ "$tag" = {UNSAVED} ] && [ -n "$path" ] || continue
  [ -e "$path" ] || [ -L "$path" ] || printf 'MMX_NOT_RESTORED %s: %s, not saved\n' "$path" "$why"
done
g ls-tree -r -z "$target" | while IFS= read -r -d '' entry; do
  case $entry in 160000*) path=${{entry#*$'\t'}}
    [ -e "$path/.git" ] || printf 'MMX_NOT_RESTORED %s: nested git repository, only its commit id is saved\n' "$path" ;;
  esac
done
"""


def undo(ctx: ToolContext, n: int = 1) -> UndoResult:
    """Restores the workspace to before the n-th last change and drops those n checkpoints.

    Calls that changed nothing do not count: a checkpoint whose state equals the next one's is
    replaced when the next is taken, and skipped here when it equals the current state.
    """
    if n < 1:
        raise CheckpointError("n must be at least 1")
    script = (
        _SNAPSHOT
        + "snapshot with-ignored\n"
        + _HEAD
        + _SKIP_UNCHANGED_HEAD
        + f'if [ -z "$head" ] || ! target=$(g rev-parse -q --verify "$head~{n - 1}"); then\n'
        + '  printf "MMX_TOO_FEW %s\\n" "$( [ -n "$head" ] && g rev-list --count "$head" || echo 0)"; exit 0\nfi\n'
        + 'printf "MMX_TARGET %s %s\\n" "$target" "$(g log -1 --format="%ct %s" "$target")"\n'
        + _IGNORED_FOR_UNDO
        + _REPORT_NOT_RESTORED
        # Keep the state we are about to replace, so even an undo can be taken back by hand.
        + 'now=$(printf "state before undo" | g commit-tree "$tree" -p "$target")\n'
        + f'g update-ref -m "undo {n}" --create-reflog {UNDONE_REF} "$now"\n'
        + 'g diff-tree -r --no-renames --name-status "$tree" "$target^{tree}"\n'
        # With the index holding the current files, --reset -u rewrites changed files, brings back
        # deleted ones and removes files the target lacks; ignored files not in the index stay.
        + 'g read-tree --reset -u "$target^{tree}"\n'
        + 'set_head "$(g rev-parse -q --verify "$target^" || true)"\n'
    )
    output = run_store_script(ctx, script)
    target, changes, not_restored = None, [], []
    for line in output.lines:
        if line.startswith("MMX_TOO_FEW "):
            recorded = line.split()[1]
            raise CheckpointError(f"cannot undo {n} change(s): only {recorded} recorded for this workspace")
        if line.startswith("MMX_TARGET "):
            _, commit, created, label = (line.split(" ", 3) + [""])[:4]
            target = Checkpoint(commit=commit, label=label, created=int(created))
        elif line.startswith("MMX_NOT_RESTORED "):
            not_restored.append(line.removeprefix("MMX_NOT_RESTORED "))
        elif "\t" in line:
            changes.append(_describe_change(line))
    if target is None:
        raise CheckpointError(f"undo gave no result: {chr(10).join(output.lines)[-500:]}")
    return UndoResult(target, n, changes, sorted(not_restored), output.notes)


def _describe_change(diff_line: str) -> str:
    status, path = diff_line.split("\t", 1)
    # diff-tree compares now -> target: "A" means the file comes back, "D" means it is removed.
    return {"A": "restored", "D": "removed", "M": "reverted"}.get(status[:1], status) + " " + path


class Undo(ToolBase):
    name = "undo"
    description = (
        "Undo the last n tool calls that changed files in the workspace (edits, writes, and shell "
        "commands), restoring the files as they were before them, small ignored files (.env) included. "
        "Repeated undos walk further back. The result lists what could not be brought back."
    )
    parameters = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1, "description": "How many changes to undo (default 1)."}
        },
        "additionalProperties": False,
    }
    permission = Permission.EDIT
    edits_files = True  # files go back to an earlier state
    manages_checkpoints = True  # the registry must not checkpoint before an undo: it would undo nothing

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        n = args.get("n", 1)
        try:
            result = undo(ctx, n)
        except CheckpointError as e:
            return ToolResult(False, f"undo failed: {e}")
        changed = "\n".join(result.changes) if result.changes else "(no file differed)"
        output = f"undid {result.undone} change(s); the workspace is as it was before: {result.restored_to.label}\n{changed}"
        if result.not_restored:
            output += "\ncould not be brought back:\n" + "\n".join(
                f"  {line}" for line in result.not_restored
            )
        output += "".join(f"\n[note: {note}]" for note in result.notes)
        data = {"undone": result.undone, "changes": result.changes, "not_restored": result.not_restored}
        return ToolResult(True, output, data | ({"notes": result.notes} if result.notes else {}))


TOOLS = [Undo()]
