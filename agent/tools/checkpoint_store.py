"""The checkpoint store: a git directory of our own, and the one way to run git on it.

It lives under the user's state directory (`$XDG_STATE_HOME/mmx-agent/checkpoints/<hash of the
workspace path>`, default `~/.local/state/...`), outside the workspace: the confinement keeps
that directory read-only for the model's commands, and the file tools never reach outside the
workspace. It has its own GIT_DIR, index and refs; the workspace is only its work tree.

Every operation is one script run through `sandbox.exec` (so the Docker sandbox behaves the
same), unconfined (it writes the store) and built so that nothing in the workspace or the store
can make git run a program or mislead it:
- it holds an flock on `<store>.lock` for its whole run (the shell and every git it starts keep
  it), so any git lock file found in the store once we hold it was left by a killed run: it is
  removed, and a Ctrl-C or kill -9 never leaves undo broken;
- no system or global config (git_guard.base_env), and the store's HEAD, config, attributes
  and excludes are rewritten by us every time: a filter, fsmonitor, include or exclude written
  into them does not survive. Replace refs, grafts, alternates, a shallow file and commit-graphs
  are ignored or removed. Only core.excludesFile is taken from the user's global config, so files
  the user ignores everywhere stay out of checkpoints as they stay out of git;
- an index git cannot read (or that names objects the store lost) is only a cache of file
  stats: it is deleted and rebuilt (checkpoints.py);
- refs/mmx/checkpoints is also written to a record file (`mmx-checkpoints`); a ref that was
  deleted or moved outside mmx-agent is set back from it, and when neither names a commit that
  still exists, the run says that the history is lost instead of failing.
What was repaired comes back as notes.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field

from agent.tools.base import ToolContext
from agent.tools.git_guard import base_env
from sandbox.base import SandboxError

CHECKPOINTS_REF = "refs/mmx/checkpoints"
UNDONE_REF = "refs/mmx/undone"
RECORD_FILE = "mmx-checkpoints"
GIT_TIMEOUT_SECONDS = 300
LOCK_WAIT_SECONDS = 60
BUSY_EXIT_CODE = 75
NOTE = "MMX_NOTE "

# Settings of our own on top of git_guard's (content byte for byte, no background work).
STORE_SETTINGS = {
    "core.autocrlf": "false",
    "core.safecrlf": "false",
    "core.untrackedCache": "false",
    "core.quotePath": "false",
    "core.commitGraph": "false",
    "core.multiPackIndex": "false",
    "advice.addEmbeddedRepo": "false",
}
# Attributes that make git change bytes on the way in or out, switched off for the store.
STORE_ATTRIBUTES = "* -text -eol -filter -ident -working-tree-encoding\n"
STORE_CONFIG = "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tlogallrefupdates = true\n"


class CheckpointError(Exception):
    """The shadow store could not record or restore a checkpoint."""


@dataclass
class StoreOutput:
    text: str  # the script's output, notes taken out
    notes: list[str] = field(default_factory=list)  # what was repaired, for the user

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.split("\n") if line]


def store_path(ctx: ToolContext) -> str:
    """Where this workspace's shadow store lives, as the sandbox sees it."""
    if ctx.checkpoint_store:
        return ctx.checkpoint_store
    found = ctx.sandbox.exec(
        'd="${XDG_STATE_HOME:-}"; case "$d" in /*) ;; *) d="$HOME/.local/state";; esac; printf %s "$d"',
        timeout=30,
        confined=False,
    )
    state_home = found.output.strip()
    if found.exit_code != 0 or not state_home.startswith("/"):
        raise CheckpointError(f"cannot find the state directory for checkpoints: {found.output.strip()}")
    workspace_hash = hashlib.sha256(ctx.root.encode()).hexdigest()[:16]
    store = f"{state_home}/mmx-agent/checkpoints/{workspace_hash}"
    ctx.checkpoint_store = store
    return store


def _prelude(store: str, root: str) -> str:
    q = shlex.quote
    return f"""set -e
store={q(store)}
mkdir -p "$store"
chmod 700 "$store" 2>/dev/null || true
exec 9>>"$store.lock"
if command -v flock >/dev/null 2>&1; then lock() {{ flock -w {LOCK_WAIT_SECONDS} 9; }}
else lock() {{ python3 -c 'import fcntl, signal; signal.alarm({LOCK_WAIT_SECONDS}); fcntl.flock(9, fcntl.LOCK_EX)'; }}
fi
lock || {{ echo "the checkpoint store is in use by another mmx-agent (waited {LOCK_WAIT_SECONDS}s)"; exit {BUSY_EXIT_CODE}; }}
# We hold the store: a git lock file in it belongs to a run that was killed.
find "$store" -path "$store/objects" -prune -o -name '*.lock' -type f -exec rm -f {{}} +
excludes=$(git config --global --includes --get core.excludesfile 2>/dev/null || true)
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_NO_REPLACE_OBJECTS=1
unset GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_NAMESPACE GIT_COMMON_DIR GIT_PREFIX \\
  GIT_CONFIG_PARAMETERS GIT_CONFIG GIT_GRAFT_FILE GIT_SHALLOW_FILE GIT_REPLACE_REF_BASE
export GIT_DIR="$store" GIT_WORK_TREE={q(root)} GIT_INDEX_FILE="$store/index"
export GIT_AUTHOR_NAME=mmx-agent GIT_AUTHOR_EMAIL=mmx-agent@localhost
export GIT_COMMITTER_NAME=mmx-agent GIT_COMMITTER_EMAIL=mmx-agent@localhost
g() {{ git --no-pager "$@"; }}
note() {{ printf '{NOTE}%s\\n' "$*"; }}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# What makes the directory a repository, and everything git reads from it besides objects, refs
# and the index, is written by us every time.
rm -f "$store/HEAD" "$store/config" "$store/commondir" "$store/shallow" "$store/info/grafts" \\
  "$store/info/exclude" "$store/info/attributes" "$store/objects/info/alternates"
mkdir -p "$store/objects" "$store/refs" "$store/info"
printf 'ref: refs/heads/main\\n' >"$store/HEAD"
printf %s {q(STORE_CONFIG)} >"$store/config"
[ -z "$excludes" ] || g config core.excludesFile "$excludes"
printf %s {q(STORE_ATTRIBUTES)} >"$store/info/attributes"
printf '%s\\n' {q(root)} >"$store/mmx-workspace"
if [ -e "$GIT_INDEX_FILE" ] && ! g ls-files >/dev/null 2>"$tmp/index-error"; then
  rm -f "$GIT_INDEX_FILE"
  note "the checkpoint store's index could not be read ($(head -c 200 "$tmp/index-error" | tr '\\n' ' ')); it was rebuilt from the workspace, no checkpoint was lost"
fi
"""


# Our two refs must name commits, and refs/mmx/checkpoints what the record file says.
_REF_REPAIR = f"""g for-each-ref >/dev/null 2>&1 || rm -f "$store/packed-refs"
for ref in {CHECKPOINTS_REF} {UNDONE_REF}; do
  g rev-parse -q --verify "$ref^{{commit}}" >/dev/null 2>&1 || rm -f "$store/$ref"
done
record=$(cat "$store/{RECORD_FILE}" 2>/dev/null || true)
head=$(g rev-parse -q --verify "{CHECKPOINTS_REF}^{{commit}}" 2>/dev/null || true)
if [ "$head" != "$record" ]; then
  if [ -n "$record" ] && g rev-parse -q --verify "$record^{{commit}}" >/dev/null 2>&1; then
    g update-ref {CHECKPOINTS_REF} "$record"
    note "{CHECKPOINTS_REF} in the checkpoint store had been deleted or moved outside mmx-agent; it was set back from the store's record, no checkpoint was lost"
  elif [ -n "$record" ]; then
    note "the checkpoint history was lost: the last checkpoint recorded in the store is gone (the store was changed outside mmx-agent); undo can only go back to checkpoints taken from now on"
    set_head ""
  else
    set_head "$head"
  fi
fi
"""

# set_head COMMIT: points refs/mmx/checkpoints (and its record) at COMMIT; "" deletes both.
# The record is written first: a run killed in between leaves a record that is right.
_SET_HEAD = f"""set_head() {{
  if [ -n "$1" ]; then
    printf '%s\\n' "$1" >"$store/{RECORD_FILE}.new" && mv -f "$store/{RECORD_FILE}.new" "$store/{RECORD_FILE}"
    g update-ref {CHECKPOINTS_REF} "$1"
  else
    rm -f "$store/{RECORD_FILE}"
    g update-ref -d {CHECKPOINTS_REF} 2>/dev/null || true
  fi
}}
"""


def run_store_script(ctx: ToolContext, script: str, max_output: int = 1_000_000) -> StoreOutput:
    """Runs `script` on the store, after the prelude: `g` is git on the store, `set_head` moves
    refs/mmx/checkpoints, `$tmp` is a private temp directory, the cwd is the workspace root."""
    store = store_path(ctx)
    env = base_env(STORE_SETTINGS)
    del env["GIT_CONFIG_NOSYSTEM"], env["GIT_CONFIG_GLOBAL"]  # the prelude sets them, after reading one
    try:
        result = ctx.sandbox.exec(
            _prelude(store, ctx.root) + _SET_HEAD + _REF_REPAIR + script,
            cwd=ctx.root,
            timeout=GIT_TIMEOUT_SECONDS,
            env=env,
            max_output=max_output,
            confined=False,
        )
    except SandboxError as e:
        raise CheckpointError(str(e)) from e
    kept, notes = [], []
    for line in result.output.split("\n"):  # only "\n": a diff may hold other line breaks
        if line.startswith(NOTE):
            notes.append(line[len(NOTE) :])
        else:
            kept.append(line)
    text = "\n".join(kept)
    if result.exit_code == BUSY_EXIT_CODE:
        raise CheckpointError(text.strip())
    if result.exit_code != 0:
        reason = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        raise CheckpointError(f"checkpoint store command failed ({reason}): {result.output.strip()[-2000:]}")
    return StoreOutput(text, notes)
