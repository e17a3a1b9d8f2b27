"""Git tools: status, diff, log, show (read) and commit, branch, checkout (edit).

Every tool runs git through the sandbox (git_exec.py says why) and returns short text for the
model plus structured data. Nothing here discards work: checkout refuses rather than overwrite
uncommitted changes, and no tool resets, cleans or force-pushes.
"""

from __future__ import annotations

import re
from typing import Any

from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult
from agent.tools.git_exec import (
    GitError,
    cap_text,
    check_git,
    check_revision,
    explain_git_error,
    run_git,
    workspace_relative_paths,
)
from agent.tools.git_guard import GitConfigError, filter_drivers, read_config
from agent.tools.workspace_paths import WorkspacePathError

MAX_DIFF_CHARS = 30_000
MAX_STATUS_ENTRIES = 100
FALLBACK_IDENTITY = {"user.name": "mmx-agent", "user.email": "mmx-agent@localhost"}
STATUS_WORDS = {
    "M": "modified",
    "A": "added",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "type changed",
    "U": "unmerged",
}
CONFLICT_CODES = {"DD", "AU", "UD", "UA", "DU", "AA", "UU"}


class GitTool(ToolBase):
    """Shared plumbing: errors become ok=False results with a message the model can act on."""

    name = ""
    description = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    permission = Permission.READ

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            return self.execute(args, ctx)
        except (GitError, WorkspacePathError) as exc:
            return ToolResult(False, str(exc))

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        raise NotImplementedError


# --- status ----------------------------------------------------------------------------------


def parse_status(porcelain_z: str) -> dict[str, Any]:
    """`git status --porcelain=v1 -z --branch` into branch info and grouped entries."""
    records = porcelain_z.split("\0")
    status: dict[str, Any] = {
        "branch": None,
        "upstream": None,
        "ahead": 0,
        "behind": 0,
        "staged": [],
        "unstaged": [],
        "untracked": [],
        "conflicts": [],
    }
    index = 0
    while index < len(records):
        record = records[index]
        index += 1
        if not record:
            continue
        if record.startswith("## "):
            status.update(_parse_branch_line(record[3:]))
            continue
        code, path = record[:2], record[3:]
        orig_path = None
        if code[0] in "RC":
            orig_path = records[index]  # -z puts a rename's source in the next record
            index += 1
        if code == "??":
            status["untracked"].append(path)
        elif code in CONFLICT_CODES:
            status["conflicts"].append({"path": path, "status": code})
        else:
            if code[0] not in " ?!":
                status["staged"].append(
                    {"path": path, "status": STATUS_WORDS.get(code[0], code[0]), "orig_path": orig_path}
                )
            if code[1] not in " ?!":
                status["unstaged"].append({"path": path, "status": STATUS_WORDS.get(code[1], code[1])})
    return status


def _parse_branch_line(line: str) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if line.startswith("No commits yet on "):
        return {"branch": line.removeprefix("No commits yet on "), "no_commits": True}
    if line.startswith("HEAD (no branch)"):
        return {"branch": None, "detached": True}
    track = re.search(r" \[(.*)\]$", line)
    if track:
        line = line[: track.start()]
        for part in track.group(1).split(", "):
            word, _, count = part.partition(" ")
            if word in ("ahead", "behind") and count.isdigit():
                info[word] = int(count)
    branch, _, upstream = line.partition("...")
    info["branch"] = branch
    info["upstream"] = upstream or None
    return info


def format_status(status: dict[str, Any]) -> str:
    if status.get("detached"):
        head = "HEAD detached (no branch)"
    else:
        head = f"On branch {status['branch']}"
        if status.get("no_commits"):
            head += " (no commits yet)"
        if status.get("upstream"):
            relation = [f"{status[k]} {k}" for k in ("ahead", "behind") if status.get(k)]
            head += f", tracking {status['upstream']}" + (f" ({', '.join(relation)})" if relation else "")
    lines = [head]
    groups = [
        ("Conflicts (resolve, then commit)", [f"{e['status']} {e['path']}" for e in status["conflicts"]]),
        ("Staged", [_entry_text(e) for e in status["staged"]]),
        ("Not staged", [f"{e['status']}: {e['path']}" for e in status["unstaged"]]),
        ("Untracked", status["untracked"]),
    ]
    for title, entries in groups:
        if not entries:
            continue
        lines.append(f"{title} ({len(entries)}):")
        lines += [f"  {entry}" for entry in entries[:MAX_STATUS_ENTRIES]]
        if len(entries) > MAX_STATUS_ENTRIES:
            lines.append(f"  [{len(entries) - MAX_STATUS_ENTRIES} more not shown]")
    if len(lines) == 1:
        lines.append("Nothing to commit, working tree clean.")
    return "\n".join(lines)


def _entry_text(entry: dict[str, Any]) -> str:
    if entry.get("orig_path"):
        return f"{entry['status']}: {entry['orig_path']} -> {entry['path']}"
    return f"{entry['status']}: {entry['path']}"


class GitStatusTool(GitTool):
    name = "git_status"
    description = "Show the current branch and the staged, unstaged, untracked and conflicted files."
    permission = Permission.READ

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        result = check_git(ctx.sandbox, ["status", "--porcelain=v1", "-z", "--branch"])
        status = parse_status(result.stdout)
        return ToolResult(True, format_status(status), status)


# --- diff ------------------------------------------------------------------------------------


class GitDiffTool(GitTool):
    name = "git_diff"
    description = (
        "Show changes as a unified diff: unstaged changes (working tree vs index) by default, "
        "staged ones (index vs HEAD) with staged=true, or the working tree against `rev`. "
        "`paths` limits it to some files or directories."
    )
    parameters = {
        "type": "object",
        "properties": {
            "staged": {"type": "boolean", "default": False},
            "paths": {"type": "array", "items": {"type": "string"}},
            "rev": {"type": "string", "description": "Compare against this commit (e.g. HEAD~1, main)."},
        },
        "additionalProperties": False,
    }
    permission = Permission.READ

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        staged = bool(args.get("staged", False))
        paths = workspace_relative_paths(ctx.sandbox, args.get("paths"))
        selection = (["--cached"] if staged else []) + (
            [check_revision(args["rev"])] if args.get("rev") else []
        )
        diff = check_git(ctx.sandbox, ["diff", *selection, "--", *paths])
        numstat = check_git(ctx.sandbox, ["diff", "--numstat", "-z", *selection, "--", *paths])
        files = parse_numstat(numstat.stdout)
        data: dict[str, Any] = {"staged": staged, "rev": args.get("rev"), "files": files}
        if not diff.stdout.strip():
            what = "staged changes" if staged else "changes" if args.get("rev") else "unstaged changes"
            text = f"No {what}" + (f" in {', '.join(paths)}" if paths else "") + "."
            if (
                not staged
                and not args.get("rev")
                and not run_git(ctx.sandbox, ["diff", "--cached", "--quiet"]).ok
            ):
                text += " There are staged changes: use staged=true to see them."
            return ToolResult(True, text, data)
        text, truncated = cap_text(diff.stdout, MAX_DIFF_CHARS, "diff")
        data["truncated"] = truncated
        return ToolResult(True, text, data)


def parse_numstat(numstat_z: str) -> list[dict[str, Any]]:
    """`--numstat -z`: "added\\tdeleted\\tpath\\0", a rename as "a\\td\\t\\0old\\0new\\0"; "-" for binary."""
    records = numstat_z.split("\0")
    files = []
    index = 0
    while index < len(records):
        record = records[index]
        index += 1
        if not record:
            continue
        added, deleted, path = record.split("\t", 2)
        orig_path = None
        if path == "":
            orig_path, path = records[index], records[index + 1]
            index += 2
        files.append(
            {
                "path": path,
                "orig_path": orig_path,
                "added": None if added == "-" else int(added),
                "deleted": None if deleted == "-" else int(deleted),
            }
        )
    return files


# --- log and show ----------------------------------------------------------------------------

LOG_FIELDS = ("sha", "short_sha", "author", "email", "date", "subject")
LOG_FORMAT = "%H%x1f%h%x1f%an%x1f%ae%x1f%aI%x1f%s%x1e"


class GitLogTool(GitTool):
    name = "git_log"
    description = "List recent commits (newest first): short sha, date, author, subject."
    parameters = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1, "maximum": 200, "default": 10},
            "path": {"type": "string", "description": "Only commits touching this file or directory."},
            "rev": {"type": "string", "description": "Start from this revision instead of HEAD."},
        },
        "additionalProperties": False,
    }
    permission = Permission.READ

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        count = max(1, min(int(args.get("n", 10)), 200))
        rev = [check_revision(args["rev"])] if args.get("rev") else []
        paths = workspace_relative_paths(ctx.sandbox, [args["path"]] if args.get("path") else [])
        result = run_git(ctx.sandbox, ["log", f"-n{count}", f"--format={LOG_FORMAT}", *rev, "--", *paths])
        if not result.ok:
            if "does not have any commits yet" in result.stderr:
                return ToolResult(True, "No commits yet.", {"commits": []})
            raise GitError(explain_git_error(result.stderr))
        commits = [
            dict(zip(LOG_FIELDS, record.strip("\n").split("\x1f"), strict=True))
            for record in result.stdout.split("\x1e")
            if record.strip("\n")
        ]
        if not commits:
            return ToolResult(True, "No commits match.", {"commits": []})
        lines = [f"{c['short_sha']} {c['date'][:10]} {c['author']}: {c['subject']}" for c in commits]
        return ToolResult(True, "\n".join(lines), {"commits": commits})


class GitShowTool(GitTool):
    name = "git_show"
    description = (
        "Show a commit (message and diff), or a file at a revision with 'REV:path'. "
        "stat_only=true gives the list of changed files instead of the diff."
    )
    parameters = {
        "type": "object",
        "properties": {
            "rev": {"type": "string", "default": "HEAD"},
            "paths": {"type": "array", "items": {"type": "string"}, "description": "Limit the diff."},
            "stat_only": {"type": "boolean", "default": False},
        },
        "additionalProperties": False,
    }
    permission = Permission.READ

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        rev = check_revision(args.get("rev") or "HEAD")
        paths = workspace_relative_paths(ctx.sandbox, args.get("paths"))
        shape = ["--stat"] if args.get("stat_only") else []
        header = "--format=commit %H%nAuthor: %an <%ae>%nDate:   %aI%n%n%B"
        result = check_git(ctx.sandbox, ["show", header, *shape, rev, "--", *paths])
        first = re.match(r"commit ([0-9a-f]{40})", result.stdout)
        shown = result.stdout.rstrip("\n")
        if first:  # the message's own final newline plus git's separator leave a double gap
            shown = re.sub(r"\n{3,}", "\n\n", shown, count=1)
        text, truncated = cap_text(shown, MAX_DIFF_CHARS, "output")
        data = {"rev": rev, "commit": first.group(1) if first else None, "truncated": truncated}
        return ToolResult(True, text, data)


# --- commit ----------------------------------------------------------------------------------


class GitCommitTool(GitTool):
    name = "git_commit"
    description = (
        "Commit changes. With `paths`: stage and commit exactly those files (new ones too). "
        "With all=true: stage every change, untracked files included (.gitignore respected). "
        "With neither: commit what is already staged."
    )
    parameters = {
        "type": "object",
        "properties": {
            "message": {"type": "string", "description": "The commit message."},
            "paths": {"type": "array", "items": {"type": "string"}},
            "all": {"type": "boolean", "default": False},
        },
        "required": ["message"],
        "additionalProperties": False,
    }
    permission = Permission.EDIT

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        message = args.get("message")
        if not isinstance(message, str) or not message.strip():
            return ToolResult(False, "git_commit needs a non-empty `message`.")
        paths = workspace_relative_paths(ctx.sandbox, args.get("paths"))
        sandbox = ctx.sandbox
        if paths:
            check_git(sandbox, ["add", "-A", "--", *paths], read_only=False)
        elif args.get("all"):
            check_git(sandbox, ["add", "-A"], read_only=False)
        elif run_git(sandbox, ["diff", "--cached", "--quiet"]).ok:
            return ToolResult(
                False,
                "Nothing is staged. Pass `paths` to commit some files, or all=true to commit every change.",
            )
        commit = ["commit", "-m", message, *(["--", *paths] if paths else [])]
        result = run_git(sandbox, commit, timeout=300, read_only=False)
        notes = []
        if not result.ok and "Please tell me who you are" in result.stderr + result.stdout:
            result = run_git(sandbox, commit, timeout=300, read_only=False, config=FALLBACK_IDENTITY)
            notes.append(
                "git had no user.name/user.email here; committed as mmx-agent <mmx-agent@localhost>."
            )
        if not result.ok:
            output = (result.stdout + "\n" + result.stderr).strip()
            if "nothing to commit" in output or "no changes added to commit" in output:
                return ToolResult(False, "Nothing to commit: the given files have no changes.")
            raise GitError(explain_git_error(output))
        info = check_git(
            sandbox, ["log", "-1", "--format=%H%x1f%h%x1f%s%x1f%D", "--shortstat"]
        ).stdout.strip()
        header, _, stat = info.partition("\n")
        sha, short_sha, subject, refs = header.split("\x1f")
        branch = refs.split("HEAD -> ", 1)[1].split(",")[0] if "HEAD -> " in refs else None
        text = f"Committed {short_sha} on {branch or 'detached HEAD'}: {subject}"
        text += f"\n{stat.strip()}" if stat.strip() else ""
        text += "".join(f"\n{note}" for note in notes)
        return ToolResult(
            True, text, {"sha": sha, "branch": branch, "subject": subject, "stat": stat.strip()}
        )


# --- branch and checkout ---------------------------------------------------------------------

BRANCH_FORMAT = "%(HEAD)%1f%(refname:short)%1f%(objectname:short)%1f%(upstream:short)%1f%(upstream:track)%1f%(contents:subject)"


def check_branch_name(sandbox, name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise GitError("a branch `name` is required")
    name = name.strip()
    if name.startswith("-") or not run_git(sandbox, ["check-ref-format", "--branch", name]).ok:
        raise GitError(f"{name!r} is not a valid branch name")
    return name


class GitBranchTool(GitTool):
    name = "git_branch"
    description = (
        "List local branches (action=list, the default; all=true adds remote ones) or create a "
        "branch (action=create, name, optional start_point) without switching to it."
    )
    parameters = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["list", "create"], "default": "list"},
            "name": {"type": "string"},
            "start_point": {"type": "string", "description": "Commit or branch to start from; default HEAD."},
            "all": {"type": "boolean", "default": False},
        },
        "additionalProperties": False,
    }
    permission = Permission.EDIT

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        action = args.get("action", "list")
        if action == "create":
            name = check_branch_name(ctx.sandbox, args.get("name"))
            start = [check_revision(args["start_point"])] if args.get("start_point") else []
            check_git(ctx.sandbox, ["branch", name, *start], read_only=False)
            sha = check_git(ctx.sandbox, ["rev-parse", "--short", f"refs/heads/{name}"]).stdout.strip()
            return ToolResult(
                True,
                f"Created branch {name} at {sha} (still on the current branch).",
                {"name": name, "sha": sha},
            )
        if action != "list":
            return ToolResult(False, f"unknown action {action!r}; use 'list' or 'create'.")
        refs = ["refs/heads"] + (["refs/remotes"] if args.get("all") else [])
        result = check_git(ctx.sandbox, ["for-each-ref", f"--format={BRANCH_FORMAT}", *refs])
        branches = []
        for line in result.stdout.splitlines():
            head, name, sha, upstream, track, subject = line.split("\x1f", 5)
            branches.append(
                {
                    "name": name,
                    "current": head == "*",
                    "sha": sha,
                    "upstream": upstream or None,
                    "track": track,
                    "subject": subject,
                }
            )
        if not branches:
            current = run_git(ctx.sandbox, ["symbolic-ref", "--short", "-q", "HEAD"]).stdout.strip()
            return ToolResult(
                True, f"No branches yet (no commits); HEAD is on {current or 'nothing'}.", {"branches": []}
            )
        lines = []
        for b in branches:
            upstream = (
                f" [{b['upstream']}{': ' + b['track'].strip('[]') if b['track'] else ''}]"
                if b["upstream"]
                else ""
            )
            lines.append(f"{'*' if b['current'] else ' '} {b['name']} {b['sha']}{upstream} {b['subject']}")
        return ToolResult(True, "\n".join(lines), {"branches": branches})


class GitCheckoutTool(GitTool):
    name = "git_checkout"
    description = (
        "Switch to a branch (create=true makes it first, from start_point or HEAD), or to a commit "
        "or tag as a detached HEAD. Uncommitted changes that do not clash are carried over; if "
        "the switch would overwrite any, it is refused and nothing changes."
    )
    parameters = {
        "type": "object",
        "properties": {
            "target": {"type": "string", "description": "Branch, tag or commit."},
            "create": {"type": "boolean", "default": False},
            "start_point": {"type": "string"},
        },
        "required": ["target"],
        "additionalProperties": False,
    }
    permission = Permission.EDIT

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        sandbox = ctx.sandbox
        # No content filter runs (git_guard.py); a `required` one (Git LFS) would make git stop
        # half-way through the switch, so files it covers are written as stored instead.
        filters = configured_filters(sandbox)
        unrequired = {f"filter.{name}.required": "false" for name in filters}
        if args.get("create"):
            name = check_branch_name(sandbox, args.get("target"))
            start = [check_revision(args["start_point"])] if args.get("start_point") else []
            result = run_git(sandbox, ["switch", "-c", name, *start], read_only=False, config=unrequired)
        else:
            target = check_revision(args.get("target", ""))
            result = run_git(sandbox, ["switch", target], read_only=False, config=unrequired)
            if not result.ok and "a branch is expected" in result.stderr:
                result = run_git(sandbox, ["switch", "--detach", target], read_only=False, config=unrequired)
        if not result.ok:
            raise GitError(explain_checkout_error(result.stderr or result.stdout))
        where = check_git(sandbox, ["log", "-1", "--format=%H%x1f%D"]).stdout.strip()
        sha, _, refs = where.partition("\x1f")
        branch = refs.split("HEAD -> ", 1)[1].split(",")[0] if "HEAD -> " in refs else None
        carried = [line.split("\t", 1)[1] for line in result.stdout.splitlines() if "\t" in line]
        text = f"Now on branch {branch}" if branch else f"Now at {sha[:12]} (detached HEAD)"
        if carried:
            text += f"\nUncommitted changes carried over: {', '.join(carried)}"
        if filters:
            text += (
                f"\nContent filters ({', '.join(sorted(filters))}) were not run: files they cover were "
                "written as stored (for Git LFS, pointer files; `git lfs checkout` fills them in)."
            )
        return ToolResult(
            True, text, {"branch": branch, "sha": sha, "detached": branch is None, "carried_over": carried}
        )


def configured_filters(sandbox) -> set[str]:
    """Names of the content filters the repository's config defines (a command for them)."""
    try:
        entries, _ = read_config(sandbox, sandbox.root)
    except GitConfigError as e:
        raise GitError(str(e)) from e
    return filter_drivers(entries)


def explain_checkout_error(message: str) -> str:
    files = [line.strip() for line in message.splitlines() if line.startswith("\t")]
    if "would be overwritten by checkout" in message:
        kind = "untracked files" if "untracked working tree files" in message else "uncommitted changes in"
        return (
            f"Checkout refused: it would overwrite {kind} {', '.join(files)}. Nothing was changed. "
            "Commit them (git_commit) or move them aside first."
        )
    if "invalid reference" in message:
        return f"No branch, tag or commit by that name. {message.strip()}"
    return explain_git_error(message)


TOOLS: list = [
    GitStatusTool(),
    GitDiffTool(),
    GitLogTool(),
    GitShowTool(),
    GitCommitTool(),
    GitBranchTool(),
    GitCheckoutTool(),
]
