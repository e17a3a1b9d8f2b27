"""Two engines behind the grep tool: ripgrep in the sandbox, and a pure-Python one.

Both return the same GrepOutcome for the same tree: the same files (rg's default filters, see
ignore_rules.py), sorted by path, the same 1-based line numbers, the same line texts. Each file's
matches are *matching lines*, as `rg --count` counts them.

The rg engine runs two passes so its output stays bounded on any repository: `rg --count` lists
every matching file with its count (one short line per file), then a second rg prints the lines
of only the files that will be shown.

Caps, the same in both engines, so that no file can make a search eat the machine (a 200 MB
all-matching file once drove `rg --json` past 9 GB: it builds every match of a line in memory):
files over MAX_FILE_BYTES are not searched (rg --max-filesize); per file, only the matching lines
that can be shown are read (rg --max-count); a line over LONG_LINE_BYTES comes back cut to its start
(rg --max-columns with a preview; --json ignores that option, which is why the second pass reads
rg's plain output); and the second pass stops after OUTPUT_BUDGET_BYTES (rg is killed by the
closed pipe), which the outcome reports as `cut`.

Regex dialects: rg uses Rust's `regex`, the fallback uses Python's `re` (with re.MULTILINE, one
line at a time). Common syntax (classes, \\b \\w \\d \\s, alternation, groups, {m,n}, (?i)) behaves
the same. Rust-only: \\p{Greek}-style classes, [[:alpha:]]. Python-only: lookarounds and
backreferences (rg rejects them without --pcre2). A match never spans lines in either engine.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field

from pathspec import GitIgnoreSpec

from agent.tools.search.ignore_rules import IgnoreRules, Override, walk_workspace
from sandbox.base import Sandbox, SandboxError

MAX_FILE_BYTES = 50 * 2**20  # as read_file's cap; bigger files are logs or data: use bash
LONG_LINE_BYTES = 1200  # enough for the 300 characters a result line shows, in any script
LONG_LINE_MARK = " [... omitted end of long line]"  # what rg --max-columns-preview appends
OUTPUT_BUDGET_BYTES = 4_000_000  # of the second pass; a result shows at most 50,000 characters


class GrepError(Exception):
    """The search could not run (bad regex, engine failure); the message is for the model."""


@dataclass
class GrepQuery:
    pattern: str
    target: str  # absolute sandbox path of the file or directory to search, as the model named it
    target_is_file: bool
    glob: str | None = None  # rg -g syntax: gitignore-style, "!" to exclude, relative to the root
    ignore_case: bool = False
    context: int = 0
    max_results: int = 100
    target_real: str = ""  # `target` with symlinks resolved (what the Python engine opens); "" = target
    output_budget: int = OUTPUT_BUDGET_BYTES  # bytes of lines read before the search stops reading


@dataclass
class FileMatches:
    path: str  # relative to the workspace root
    match_lines: list[int]  # matching lines of the file, ascending (rg: those up to --max-count)
    lines: dict[int, str] = field(default_factory=dict)  # texts of the lines that may be shown


@dataclass
class GrepOutcome:
    files: list[FileMatches]  # sorted by path; only the first ones carry `lines`
    total_matches: int
    engine: str
    cut: bool = False  # the output budget stopped the reading of lines: some may be missing


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
    total = kept_bytes = 0
    cut = False
    for rel in paths:
        try:
            data = sandbox.read_file(_real_path(root, rel, query), max_bytes=MAX_FILE_BYTES)
        except (SandboxError, OSError):
            continue  # unreadable, vanished, too big or not a regular file: rg skips it silently
        if _is_binary(data):
            continue
        text = decode_text(data)
        budget = query.max_results - total
        match_lines, starts = _matching_lines(regex, text, keep=max(budget, 0))
        if not match_lines:
            continue
        found = FileMatches(rel, match_lines)
        if starts and not cut:
            for number, start in sorted(_lines_around(text, starts, query.context).items()):
                line = _preview(text[start : _line_end(text, start)])
                kept_bytes += len(rel) + len(line) + 8  # about what rg would print for it
                if kept_bytes > query.output_budget:
                    cut = True
                    break
                found.lines[number] = line
        files.append(found)
        total += len(match_lines)
    return GrepOutcome(files, total, "python", cut)


def _real_path(root: str, rel: str, query: GrepQuery) -> str:
    """Where to open `rel`: under the resolved target (the walk below it follows no symlinks)."""
    if not query.target_real:
        return posixpath.join(root, rel)
    below = posixpath.relpath(posixpath.join(root, rel), query.target)
    return query.target_real if below == "." else posixpath.join(query.target_real, below)


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end == -1 else end


def _lines_around(text: str, starts: dict[int, int], context: int) -> dict[int, int]:
    """Line number -> start offset of the given lines and `context` lines on each side."""
    wanted = dict(starts)
    for number, start in starts.items():
        before = start
        for distance in range(1, context + 1):
            if before == 0:
                break
            before = text.rfind("\n", 0, before - 1) + 1
            wanted.setdefault(number - distance, before)
        after = start
        for distance in range(1, context + 1):
            after = _line_end(text, after) + 1
            if after >= len(text):
                break  # the text after the final newline is not a line
            wanted.setdefault(number + distance, after)
    return wanted


def _preview(line: str) -> str:
    """A line as rg --max-columns LONG_LINE_BYTES --max-columns-preview shows it."""
    encoded = line.encode("utf-8")
    if len(encoded) <= LONG_LINE_BYTES:
        return line
    return encoded[:LONG_LINE_BYTES].decode("utf-8", "ignore") + LONG_LINE_MARK


def _matching_lines(regex: re.Pattern[str], text: str, keep: int) -> tuple[list[int], dict[int, int]]:
    """1-based numbers of the lines containing a match, jumping from match to match, and the start
    offsets of the first `keep` of them."""
    found: list[int] = []
    starts: dict[int, int] = {}
    position = 0
    line_number = 1
    counted_up_to = 0  # newlines before this offset are already counted in line_number
    while position <= len(text):
        match = regex.search(text, position)
        if match is None:
            break
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = _line_end(text, match.start())
        if line_start >= len(text) and match.start() == len(text):
            break  # an empty match after the final newline is on no line
        # A match that runs past the end of its line would not exist line by line: re-check.
        if match.end() <= line_end or regex.search(text[line_start:line_end]):
            line_number += text.count("\n", counted_up_to, line_start)
            counted_up_to = line_start
            found.append(line_number)
            if len(starts) < keep:
                starts[line_number] = line_start
        position = line_end + 1
    return found, starts


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

_RG_COMMON = (
    "rg --no-config --no-require-git --no-ignore-parent --no-ignore-global --no-messages "
    f"--max-filesize {MAX_FILE_BYTES}"
)
# What rg --max-columns-preview appends to a cut line (13.x; 14.x may count the matches left out).
_RG_CUT_LINE = re.compile(r" \[\.\.\. (?:omitted end of long line|\d+ more match(?:es)?)\]$")
_RG_LINE = re.compile(r"(\d+)([:-])")
_SIGPIPE_EXIT = 141  # rg killed by the closed pipe: head had read its budget


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
    details, cut = _read_details(sandbox, root, query, shown, flags, timeout) if shown else ({}, False)
    files = []
    budget = query.max_results
    for path, count in counts:
        found = details.get(path) or FileMatches(path, [])
        if budget > 0:
            wanted = _lines_to_show(found.match_lines, query.context, budget)
            found.lines = {n: t for n, t in found.lines.items() if n in wanted}
        else:
            found.lines = {}
        if len(found.match_lines) > count:  # a file changed between the passes: trust the count
            found.match_lines = found.match_lines[:count]
        budget -= count
        files.append(found)
    return GrepOutcome(files, total, "rg", cut)


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
) -> tuple[dict[str, FileMatches], bool]:
    """The lines rg prints for `paths` (plain output: `path NUL number [:-] text`), and whether the
    output budget cut them short."""
    context = ["-C", str(query.context)] if query.context else []
    cmd = [
        *_RG_COMMON.split(),
        "--line-number",
        "--with-filename",
        "--no-heading",
        "--null",
        "--color=never",
        "--sort=path",  # sequential, in the order results are shown: a cut loses only the end
        # The lines shown, and the matches among their trailing context (so those get ":" too).
        f"--max-count={query.max_results + query.context}",
        f"--max-columns={LONG_LINE_BYTES}",
        "--max-columns-preview",
        *flags,
        *context,
        "-e",
        query.pattern,
        "--",
        *paths,
    ]
    script = f"set -o pipefail; {shlex.join(cmd)} | head -c {query.output_budget}"
    result = sandbox.exec(script, cwd=root, timeout=timeout, max_output=query.output_budget + 65536)
    lines = result.output.split("\n")
    cut = result.exit_code == _SIGPIPE_EXIT or lines[-1] != ""
    lines.pop()  # "" after the final newline, or a line head cut in the middle
    by_path: dict[str, FileMatches] = {}
    for raw in lines:
        # "--" separates context groups. A path holding a newline cannot be told apart here; such
        # a file's lines are left out (its count from the first pass still stands).
        path, nul, rest = raw.partition("\0")
        parsed = _RG_LINE.match(rest) if nul else None
        if parsed is None:
            continue
        found = by_path.setdefault(posixpath.normpath(path), FileMatches(posixpath.normpath(path), []))
        number = int(parsed.group(1))
        found.lines[number] = _RG_CUT_LINE.sub(LONG_LINE_MARK, rest[parsed.end() :])
        if parsed.group(2) == ":":
            found.match_lines.append(number)
    return by_path, cut


def _raise_if_bad_regex(sandbox: Sandbox, pattern: str, root: str) -> None:
    # --no-messages hides rg's regex errors too; searching /dev/null shows them without noise.
    probe = sandbox.exec(shlex.join(["rg", "--no-config", "-e", pattern, "/dev/null"]), cwd=root, timeout=10)
    if probe.exit_code == 2:
        raise GrepError(f"invalid regex {pattern!r} (ripgrep syntax): {probe.output.strip()}")
