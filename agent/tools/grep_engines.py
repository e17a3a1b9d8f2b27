"""Two engines behind the grep tool: ripgrep in the sandbox, and a pure-Python one.

Both return the same GrepOutcome for the same tree: the same files (rg's default filters, see
ignore_rules.py), sorted by path, the same 1-based line numbers, the same line texts. Each file's
matches are *matching lines*, as `rg --count` counts them.

The rg engine runs two passes so its output stays bounded on any repository: `rg --count` lists
every matching file with its count (one short line per file), then `rg --json` reads only the
files whose lines will be shown.

Regex dialects: rg uses Rust's `regex`, the fallback uses Python's `re` (with re.MULTILINE, one
line at a time). Common syntax (classes, \\b \\w \\d \\s, alternation, groups, {m,n}, (?i)) behaves
the same. Rust-only: \\p{Greek}-style classes, [[:alpha:]]. Python-only: lookarounds and
backreferences (rg rejects them without --pcre2). A match never spans lines in either engine.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field

from pathspec import GitIgnoreSpec

from agent.tools.ignore_rules import IgnoreRules, Override, walk_workspace
from sandbox.base import Sandbox, SandboxError


class GrepError(Exception):
    """The search could not run (bad regex, engine failure); the message is for the model."""


@dataclass
class GrepQuery:
    pattern: str
    target: str  # absolute sandbox path of the file or directory to search
    target_is_file: bool
    glob: str | None = None  # rg -g syntax: gitignore-style, "!" to exclude, relative to the root
    ignore_case: bool = False
    context: int = 0
    max_results: int = 100


@dataclass
class FileMatches:
    path: str  # relative to the workspace root
    match_lines: list[int]  # every matching line of the file, ascending
    lines: dict[int, str] = field(default_factory=dict)  # texts of the lines that may be shown


@dataclass
class GrepOutcome:
    files: list[FileMatches]  # sorted by path; only the first ones carry `lines`
    total_matches: int
    engine: str


def decode_text(data: bytes) -> str:
    """Bytes to text the way rg sees them: a BOM selects the encoding, bad UTF-8 is replaced."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    return data.decode("utf-8", "replace")


def _is_binary(data: bytes) -> bool:
    # rg skips a file it finds a NUL byte in (after transcoding a UTF-16 file with a BOM).
    return b"\0" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff"))


def _lines_to_show(match_lines: list[int], context: int, budget: int) -> set[int]:
    wanted: set[int] = set()
    for line in match_lines[:budget]:
        wanted.update(range(line - context, line + context + 1))
    return wanted


# --- pure Python ---------------------------------------------------------------------------


def python_grep(sandbox: Sandbox, root: str, query: GrepQuery) -> GrepOutcome:
    flags = re.MULTILINE | (re.IGNORECASE if query.ignore_case else 0)
    try:
        regex = re.compile(query.pattern, flags)
    except re.error as exc:
        raise GrepError(f"invalid regex {query.pattern!r}: {exc}") from exc
    rules = IgnoreRules(sandbox, root)
    if query.target_is_file:
        paths = [posixpath.relpath(query.target, root)]
    else:
        override = glob_override(query.glob)
        paths = sorted(
            rel
            for rel, is_dir in walk_workspace(sandbox, query.target, rules, override=override)
            if not is_dir
        )
    files: list[FileMatches] = []
    total = 0
    for rel in paths:
        try:
            data = sandbox.read_file(posixpath.join(root, rel))
        except (SandboxError, OSError):
            continue  # unreadable or vanished, as rg skips it silently
        if _is_binary(data):
            continue
        text = decode_text(data)
        match_lines = _matching_lines(regex, text)
        if not match_lines:
            continue
        found = FileMatches(rel, match_lines)
        budget = query.max_results - total
        if budget > 0:
            all_lines = text.split("\n")
            if all_lines and all_lines[-1] == "":
                all_lines.pop()  # the text after the final newline is not a line
            for number in _lines_to_show(match_lines, query.context, budget):
                if 1 <= number <= len(all_lines):
                    found.lines[number] = all_lines[number - 1]
        files.append(found)
        total += len(match_lines)
    return GrepOutcome(files, total, "python")


def _matching_lines(regex: re.Pattern[str], text: str) -> list[int]:
    """1-based numbers of the lines containing a match, jumping from match to match."""
    found = []
    position = 0
    line_number = 1
    counted_up_to = 0  # newlines before this offset are already counted in line_number
    while True:
        match = regex.search(text, position)
        if match is None:
            return found
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.start())
        if line_end == -1:
            line_end = len(text)
        if line_start >= len(text) and match.start() == len(text):
            return found  # an empty match after the final newline is on no line
        # A match that runs past the end of its line would not exist line by line: re-check.
        if match.end() <= line_end or regex.search(text[line_start:line_end]):
            line_number += text.count("\n", counted_up_to, line_start)
            counted_up_to = line_start
            found.append(line_number)
        position = line_end + 1
        if position > len(text):
            return found


def glob_override(glob: str | None) -> Override | None:
    """rg -g: a gitignore-style glob relative to the root; a match includes the path even when
    hidden or ignored, `!` excludes; with a positive glob, files it does not match are out."""
    if not glob:
        return None
    spec = GitIgnoreSpec.from_lines([glob])
    positive = not glob.startswith("!")

    def decide(rel: str, is_dir: bool) -> bool | None:
        decision = spec.check_file(rel + "/" if is_dir else rel).include
        if decision is None and positive and not is_dir:
            return False
        return decision

    return decide


# --- ripgrep ---------------------------------------------------------------------------------

_RG_COMMON = "rg --no-config --no-require-git --no-ignore-parent --no-ignore-global --no-messages"


def rg_available(sandbox: Sandbox) -> bool:
    result = sandbox.exec("command -v rg >/dev/null 2>&1 && rg --version", timeout=10)
    return result.exit_code == 0 and "ripgrep" in result.output


def rg_grep(sandbox: Sandbox, root: str, query: GrepQuery, *, timeout: float = 60) -> GrepOutcome:
    flags = ["-i"] if query.ignore_case else []
    target = posixpath.relpath(query.target, root)
    where = [] if target == "." else ["--", target]
    globs = ["-g", query.glob] if query.glob and not query.target_is_file else []
    count_cmd = [
        *_RG_COMMON.split(),
        "--count",
        "--null",
        "--with-filename",
        *flags,
        *globs,
        "-e",
        query.pattern,
        *where,
    ]
    counted = sandbox.exec(shlex.join(count_cmd), cwd=root, timeout=timeout, max_output=50_000_000)
    counts = _parse_counts(counted.output)
    if counted.timed_out:
        raise GrepError(f"rg timed out after {timeout:.0f}s; narrow the path or pattern")
    if counted.exit_code == 2 and not counts:
        _raise_if_bad_regex(sandbox, query.pattern, root)  # else rg found no file to search
    counts.sort()
    total = sum(count for _, count in counts)
    shown, budget = [], query.max_results
    for path, count in counts:
        if budget <= 0:
            break
        shown.append(path)
        budget -= count
    details = _read_details(sandbox, root, query, shown, flags, timeout) if shown else {}
    files = []
    budget = query.max_results
    for path, count in counts:
        found = details.get(path) or FileMatches(path, [])
        if budget > 0:
            wanted = _lines_to_show(found.match_lines, query.context, budget)
            found.lines = {n: t for n, t in found.lines.items() if n in wanted}
        else:
            found.lines = {}
        if len(found.match_lines) != count:  # a file changed between the passes: trust the count
            found.match_lines = found.match_lines[:count]
        budget -= count
        files.append(found)
    return GrepOutcome(files, total, "rg")


def _parse_counts(output: str) -> list[tuple[str, int]]:
    """`rg --count --null` prints "path\\0count\\n" per file; paths may hold newlines."""
    chunks = output.split("\0")
    counts = []
    path = chunks[0]
    for chunk in chunks[1:]:
        count_text, _, next_path = chunk.partition("\n")
        if count_text.isdigit():
            counts.append((posixpath.normpath(path), int(count_text)))
        path = next_path
    return counts


def _read_details(
    sandbox: Sandbox, root: str, query: GrepQuery, paths: list[str], flags: list[str], timeout: float
) -> dict[str, FileMatches]:
    context = ["-C", str(query.context)] if query.context else []
    cmd = [*_RG_COMMON.split(), "--json", *flags, *context, "-e", query.pattern, "--", *paths]
    result = sandbox.exec(shlex.join(cmd), cwd=root, timeout=timeout, max_output=50_000_000)
    by_path: dict[str, FileMatches] = {}
    for raw in result.output.splitlines():
        if not raw.startswith("{"):
            continue
        event = json.loads(raw)
        if event.get("type") not in ("match", "context"):
            continue
        data = event["data"]
        path = posixpath.normpath(_json_text(data["path"]))
        found = by_path.setdefault(path, FileMatches(path, []))
        number = data["line_number"]
        found.lines[number] = _json_text(data["lines"]).removesuffix("\n")
        if event["type"] == "match":
            found.match_lines.append(number)
    return by_path


def _json_text(value: dict) -> str:
    if "text" in value:
        return value["text"]
    return base64.b64decode(value["bytes"]).decode("utf-8", "replace")


def _raise_if_bad_regex(sandbox: Sandbox, pattern: str, root: str) -> None:
    # --no-messages hides rg's regex errors too; searching /dev/null shows them without noise.
    probe = sandbox.exec(shlex.join(["rg", "--no-config", "-e", pattern, "/dev/null"]), cwd=root, timeout=10)
    if probe.exit_code == 2:
        raise GrepError(f"invalid regex {pattern!r} (ripgrep syntax): {probe.output.strip()}")
