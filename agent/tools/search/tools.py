"""Read-only search tools: grep (regex in files), glob (paths by pattern) and ls (one directory).

All three skip what ripgrep skips by default (hidden entries, .gitignore/.ignore/.rgignore,
symlinks), sort by path, and cap their output with a note saying how much was left out.
"""

from __future__ import annotations

import posixpath
import stat
from typing import Any

from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult
from agent.tools.search.glob_pattern import compile_glob, literal_prefix
from agent.tools.search.grep_engines import (
    LONG_LINE_MARK,
    MAX_FILE_BYTES,
    GrepError,
    GrepOutcome,
    GrepQuery,
    python_grep,
    rg_available,
    rg_grep,
)
from agent.tools.search.ignore_rules import IgnoreRules, walk_workspace
from agent.tools.workspace_paths import (
    WorkspacePathError,
    display_path,
    resolve_workspace_path,
    resolve_workspace_target,
)
from sandbox.base import SandboxError

MAX_LINE_CHARS = 300  # a minified line would otherwise flood the model's context
MAX_GREP_OUTPUT_CHARS = 50_000  # with context, max_results lines could still be megabytes
RG_AVAILABLE_KEY = "search.rg_available"


def clip_line(text: str) -> str:
    text = text.rstrip("\r")
    if text.endswith(LONG_LINE_MARK):  # the engine read only the start of a very long line
        return f"{text[:MAX_LINE_CHARS]}…[long line cut]"
    if len(text) <= MAX_LINE_CHARS:
        return text
    return f"{text[:MAX_LINE_CHARS]}…[+{len(text) - MAX_LINE_CHARS} chars]"


def _resolve(ctx: ToolContext, path: str | None) -> tuple[str, Any]:
    """(absolute path, FileInfo) or raises WorkspacePathError with a message for the model."""
    absolute = resolve_workspace_path(ctx.sandbox, path)
    info = ctx.sandbox.stat(absolute)
    if info is None:
        raise WorkspacePathError(f"path {path!r} does not exist")
    return absolute, info


class GrepTool(ToolBase):
    name = "grep"
    description = (
        "Search file contents with a regular expression (ripgrep syntax; Python `re` when rg is "
        "missing). Skips hidden, .gitignored and binary files. Returns matching lines grouped by "
        "file (sorted by path) as `LINE:text`, context lines as `LINE-text`."
    )
    parameters = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "Regular expression, matched line by line."},
            "path": {"type": "string", "description": "File or directory to search; default: the root."},
            "glob": {
                "type": "string",
                "description": "Only files matching this glob, e.g. '*.py' or 'src/**/*.ts'; '!' excludes.",
            },
            "ignore_case": {"type": "boolean", "default": False},
            "context": {"type": "integer", "minimum": 0, "maximum": 10, "default": 0},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 2000, "default": 100},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }
    permission = Permission.READ

    def __init__(self, engine: str = "auto"):
        if engine not in ("auto", "rg", "python"):
            raise ValueError(f"unknown grep engine {engine!r}")
        self.engine = engine  # "python" forces the fallback (tests, benchmarks)

    def _uses_rg(self, ctx: ToolContext) -> bool:
        if self.engine != "auto":
            return self.engine == "rg"
        if ctx.rg_available is None:
            ctx.rg_available = rg_available(ctx.sandbox)
        return ctx.rg_available

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        pattern = args.get("pattern")
        if not isinstance(pattern, str) or pattern == "":
            return ToolResult(False, "grep needs a non-empty `pattern`.")
        try:
            target = resolve_workspace_target(ctx.sandbox, args.get("path"))
        except WorkspacePathError as exc:
            return ToolResult(False, str(exc))
        info = ctx.sandbox.stat(target.real)  # of what a symlink points to
        if info is None:
            return ToolResult(False, f"path {args.get('path')!r} does not exist")
        if not info.is_dir:
            problem = _unsearchable(info)
            if problem:
                return ToolResult(False, f"{target.shown} {problem}")
        query = GrepQuery(
            pattern=pattern,
            target=target.path,
            target_real=target.real,
            target_is_file=not info.is_dir,
            glob=args.get("glob") or None,
            ignore_case=bool(args.get("ignore_case", False)),
            context=max(0, min(int(args.get("context", 0)), 10)),
            max_results=max(1, min(int(args.get("max_results", 100)), 2000)),
        )
        root = posixpath.normpath(ctx.root)
        try:
            outcome = (
                rg_grep(ctx.sandbox, root, query)
                if self._uses_rg(ctx)
                else python_grep(ctx.sandbox, root, query)
            )
        except GrepError as exc:
            return ToolResult(False, str(exc))
        return format_grep(outcome, query)


def _unsearchable(info: Any) -> str | None:
    """Why grep will not read a file it was pointed at: a FIFO would block, a device never end."""
    if not stat.S_ISREG(info.mode):
        return "is not a regular file (a FIFO, socket or device); grep searches regular files only"
    if info.size > MAX_FILE_BYTES:
        return (
            f"is {info.size / 1e6:.0f} MB, more than the {MAX_FILE_BYTES // 2**20} MiB grep reads; use bash"
        )
    return None


def format_grep(outcome: GrepOutcome, query: GrepQuery) -> ToolResult:
    """Matches grouped by file: `LINE:text` for matches, `LINE-text` for context, `--` between
    separate context groups; at most max_results matches and MAX_GREP_OUTPUT_CHARS of text."""
    blocks, shown = [], []
    budget, used, cut = query.max_results, 0, False
    for found in outcome.files:
        if budget <= 0 or cut:
            break
        to_show = set(found.match_lines[:budget])
        all_matches = set(found.match_lines)
        block, previous = [found.path], None
        used += len(found.path) + 2
        for number in sorted(found.lines):
            if query.context and previous is not None and number != previous + 1:
                block.append("--")
            marker = ":" if number in all_matches else "-"
            line = f"{number}{marker}{clip_line(found.lines[number])}"
            if used + len(line) + 1 > MAX_GREP_OUTPUT_CHARS:
                cut = True
                break
            block.append(line)
            used += len(line) + 1
            previous = number
            if number in to_show:
                shown.append({"path": found.path, "line": number, "text": clip_line(found.lines[number])})
                budget -= 1
        if len(block) > 1:
            blocks.append("\n".join(block).removesuffix("\n--"))
    data = {
        "matches": shown,
        "total_matches": outcome.total_matches,
        "files_with_matches": len(outcome.files),
        "engine": outcome.engine,
    }
    if outcome.cut:
        data["cut"] = True
    if not outcome.files:
        return ToolResult(True, f"No matches for {query.pattern!r}.", data)
    text = "\n\n".join(blocks)
    if outcome.cut:
        text += (
            f"\n\n[the search stopped reading lines after {query.output_budget:,} bytes; some lines of "
            "these matches may be missing: narrow the pattern, path or glob]"
        )
    hidden = outcome.total_matches - len(shown)
    if hidden > 0:
        why = (
            "the output size limit was reached"
            if cut
            else "narrow the pattern, path or glob, or raise max_results"
        )
        text += f"\n\n[{hidden} more matches not shown ({outcome.total_matches} in {len(outcome.files)} files); {why}]"
    return ToolResult(True, text, data)


class GlobTool(ToolBase):
    name = "glob"
    description = (
        "List files and directories whose paths match a glob, relative to `path` (default the root). "
        "`*` stays in one directory, `**` spans directories, `{a,b}` alternatives: '**/*.py', "
        "'src/**/test_*.{js,ts}'. Skips hidden and .gitignored entries; directories end with '/'."
    )
    parameters = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string"},
            "path": {"type": "string", "description": "Directory the pattern is relative to."},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 200},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }
    permission = Permission.READ

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        pattern = args.get("pattern")
        if not isinstance(pattern, str) or not pattern.strip():
            return ToolResult(False, "glob needs a non-empty `pattern`.")
        limit = max(1, min(int(args.get("max_results", 200)), 5000))
        try:
            base, info = _resolve(ctx, args.get("path"))
            if not info.is_dir:
                return ToolResult(False, f"path {args.get('path')!r} is a file; give a directory.")
            prefix = literal_prefix(pattern)
            start = resolve_workspace_path(
                ctx.sandbox, posixpath.join(display_path(ctx.sandbox, base), prefix)
            )
        except WorkspacePathError as exc:
            return ToolResult(False, str(exc))
        regex = compile_glob(pattern)
        root = posixpath.normpath(ctx.root)
        base_rel = display_path(ctx.sandbox, base)
        matches = []
        if ctx.sandbox.stat(start) is not None:
            for rel, is_dir in walk_workspace(ctx.sandbox, start, IgnoreRules(ctx.sandbox, root)):
                under_base = rel if base_rel == "." else posixpath.relpath(rel, base_rel)
                if regex.match(under_base):
                    matches.append(rel + "/" if is_dir else rel)
        matches.sort()
        data = {"paths": matches[:limit], "total": len(matches)}
        if not matches:
            return ToolResult(True, f"No paths match {pattern!r}.", data)
        text = "\n".join(matches[:limit])
        if len(matches) > limit:
            text += (
                f"\n[{len(matches) - limit} more paths not shown; narrow the pattern or raise max_results]"
            )
        return ToolResult(True, text, data)


class LsTool(ToolBase):
    name = "ls"
    description = (
        "List one directory: subdirectories end with '/', files show their size. Hidden entries are "
        "listed (except .git); .gitignored ones are only counted."
    )
    parameters = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Directory to list; default: the root."},
            "max_entries": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500},
        },
        "additionalProperties": False,
    }
    permission = Permission.READ

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        limit = max(1, min(int(args.get("max_entries", 500)), 5000))
        try:
            directory, info = _resolve(ctx, args.get("path"))
        except WorkspacePathError as exc:
            return ToolResult(False, str(exc))
        if not info.is_dir:
            return ToolResult(False, f"{args.get('path')!r} is a file, not a directory.")
        sandbox = ctx.sandbox
        rules = IgnoreRules(sandbox, posixpath.normpath(ctx.root))
        rel_dir = display_path(sandbox, directory)
        try:
            names = sorted(sandbox.listdir(directory))
        except (SandboxError, OSError) as exc:
            return ToolResult(False, f"cannot list {rel_dir!r}: {exc}")
        entries, ignored = [], []
        for name in names:
            if name == ".git":
                continue
            entry = sandbox.stat(posixpath.join(directory, name))
            if entry is None:
                continue
            rel = name if rel_dir == "." else posixpath.join(rel_dir, name)
            if rules.is_ignored(rel, entry.is_dir):
                ignored.append(name + "/" if entry.is_dir else name)
                continue
            entries.append(
                {
                    "name": name,
                    "type": "symlink" if entry.is_symlink else "dir" if entry.is_dir else "file",
                    "size": None if entry.is_dir else entry.size,
                }
            )
        lines = [_ls_line(entry) for entry in entries[:limit]]
        if len(entries) > limit:
            lines.append(f"[{len(entries) - limit} more entries not shown]")
        if ignored:
            listed = ", ".join(ignored[:10]) + (", …" if len(ignored) > 10 else "")
            lines.append(f"[{len(ignored)} gitignored entries not shown: {listed}]")
        data = {"path": rel_dir, "entries": entries[:limit], "total": len(entries), "ignored": ignored}
        return ToolResult(True, "\n".join(lines) if lines else f"{rel_dir} is empty.", data)


def _ls_line(entry: dict[str, Any]) -> str:
    if entry["type"] == "dir":
        return entry["name"] + "/"
    if entry["type"] == "symlink":
        return entry["name"] + "@"
    return f"{entry['name']}  {_human_size(entry['size'])}"


def _human_size(size: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size}"


TOOLS: list = [GrepTool(), GlobTool(), LsTool()]
