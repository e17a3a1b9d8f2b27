"""File tools: read_file, write_file, edit_file, multi_edit.

Paths are relative to the workspace root (absolute paths inside it are accepted); anything that
leaves the workspace, lexically or through a symlink, is refused, and so is any write into `.git`.
The tools open the resolved path, and the sandbox refuses a symlink anywhere on it, so a path
changed after the check fails instead of leading out. Writes go through the sandbox's atomic
write, so a crash leaves the old file or the new one, never half of each, and keep the file's mode.

Text is decoded as UTF-8. Bytes that are not UTF-8 are shown as U+FFFD when read and kept byte for
byte by edits (surrogateescape); an edit may add only ASCII text to such a file, since anything
else would be written as UTF-8 and mix two encodings in one file.
"""

from __future__ import annotations

import difflib
import posixpath
from dataclasses import dataclass
from typing import Any

from agent.json_limits import without_lone_surrogates
from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult
from agent.tools.edit_match import EditError, EditOutcome, apply_edit
from agent.tools.workspace_paths import (
    WorkspacePath,
    WorkspacePathError,
    display_path,
    resolve_workspace_target,
    writable_workspace_target,
)
from sandbox.base import FileTooLarge, SandboxError

MAX_READ_BYTES = 50 * 1024 * 1024  # larger files are refused: slice them with bash instead
DEFAULT_LINE_LIMIT = 2000
MAX_LINE_CHARS = 2000
MAX_OUTPUT_CHARS = 100_000
BINARY_SNIFF_BYTES = 8192


class FileToolError(Exception):
    """A file tool cannot do what was asked; the message is written for the model."""


def _reports_failures(run):
    """Turns the expected failures of a file tool into ToolResults the model can act on."""

    def wrapped(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            return run(self, args, ctx)
        except (FileToolError, EditError, WorkspacePathError, SandboxError) as e:
            return ToolResult(False, displayable(str(e)))

    return wrapped


def displayable(text: str) -> str:
    """Text for the model: undecodable bytes kept as surrogate escapes are shown as U+FFFD."""
    return without_lone_surrogates(text)


# -- reading and writing text -------------------------------------------------------------------


@dataclass
class TextFile:
    path: str  # absolute and resolved, as the sandbox sees it
    shown: str  # relative to the workspace, for messages
    text: str  # "\n" line endings; undecodable bytes kept as surrogates
    crlf: bool  # the file used "\r\n" throughout; restored on save
    undecodable: int  # how many bytes are not UTF-8 (0 for a UTF-8 file)


def _existing_file(ctx: ToolContext, target: WorkspacePath) -> None:
    info = ctx.sandbox.stat(target.real)
    if info is None:
        raise FileToolError(f"file not found: {target.shown}{_similar_names_hint(ctx, target.path)}")
    if info.is_dir:
        raise FileToolError(f"{target.shown} is a directory; list it with ls or glob")


def _read_capped(ctx: ToolContext, target: WorkspacePath) -> bytes:
    """The file's bytes, or a FileToolError over MAX_READ_BYTES (of the file itself, not of a link)."""
    _existing_file(ctx, target)
    try:
        return ctx.sandbox.read_file(target.real, max_bytes=MAX_READ_BYTES)
    except FileTooLarge as e:
        raise FileToolError(
            f"{target.shown} is {e.size / 1e6:.0f} MB, larger than the {MAX_READ_BYTES // 2**20} MiB the file "
            "tools read; use bash (head, sed -n 'A,Bp', grep -n) to look at parts of it"
        ) from None


def _similar_names_hint(ctx: ToolContext, absolute: str) -> str:
    parent, name = posixpath.split(absolute)
    try:
        siblings = ctx.sandbox.listdir(parent)
    except SandboxError:
        return " (its directory does not exist either)"
    close = difflib.get_close_matches(name, siblings, n=3, cutoff=0.6)
    if not close:
        return ""
    return (
        " (did you mean: "
        + ", ".join(display_path(ctx.sandbox, posixpath.join(parent, c)) for c in close)
        + "?)"
    )


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_SNIFF_BYTES]


def load_text(ctx: ToolContext, path: str) -> TextFile:
    """A text file to edit (so never one inside .git)."""
    target = writable_workspace_target(ctx.sandbox, path)
    data = _read_capped(ctx, target)
    if _is_binary(data):
        raise FileToolError(
            f"{target.shown} is a binary file ({len(data)} bytes); the text tools will not change it"
        )
    text = data.decode("utf-8", errors="surrogateescape")
    undecodable = len(text) - len(data.decode("utf-8", errors="ignore"))  # one surrogate per such byte
    crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    if crlf:
        text = text.replace("\r\n", "\n")
    return TextFile(target.real, target.shown, text, crlf, undecodable)


def save_text(ctx: ToolContext, file: TextFile, text: str) -> None:
    if file.crlf:
        text = text.replace("\n", "\r\n")
    # surrogateescape turns the file's own undecodable bytes back into exactly those bytes.
    ctx.sandbox.write_file(file.path, text.encode("utf-8", errors="surrogateescape"))


def _check_encoding(file: TextFile, new_texts: list[str]) -> None:
    """Refuses non-ASCII text for a file that is not UTF-8: written as UTF-8 it would mix encodings."""
    if not file.undecodable:
        return
    if all(text.isascii() for text in new_texts):
        return
    raise FileToolError(
        f"{file.shown} is not UTF-8 ({file.undecodable} bytes are not: it is probably in a legacy encoding "
        "such as Latin-1). An edit may add only ASCII text to it, since other characters would be written "
        "as UTF-8 and mix two encodings in one file; write them as escapes the language understands, or "
        "convert the file to UTF-8 first. The file was not changed."
    )


def _not_found_hint(file: TextFile, old_texts: list[str]) -> str:
    if file.undecodable and any("\ufffd" in old for old in old_texts):
        return (
            "\nNote: this file has bytes that are not UTF-8, which read_file shows as U+FFFD; `old` cannot "
            "contain them. Choose an `old` that avoids those characters."
        )
    return ""


def _numbered(lines: list[str], first_number: int) -> str:
    return "\n".join(f"{first_number + i:6}\t{line}" for i, line in enumerate(lines))


def _snippet(text: str, first_line: int, line_count: int, context: int = 3) -> str:
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()  # the final newline ends the last line; it does not start another
    start = max(first_line - 1 - context, 0)
    end = min(first_line - 1 + line_count + context, len(lines))
    return _numbered(lines[start:end], start + 1)


# -- the tools --------------------------------------------------------------------------------


class ReadFile(ToolBase):
    name = "read_file"
    description = (
        "Read a text file from the workspace. Returns lines numbered like `cat -n` (number, tab, text). "
        f"Reads up to {DEFAULT_LINE_LIMIT} lines by default; use offset (1-based first line) and limit to "
        "page through longer files. Paths are relative to the workspace root."
    )
    parameters = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path relative to the workspace root."},
            "offset": {"type": "integer", "minimum": 1, "description": "First line to show (1-based)."},
            "limit": {"type": "integer", "minimum": 1, "description": "Maximum number of lines to show."},
        },
        "required": ["path"],
        "additionalProperties": False,
    }
    permission = Permission.READ

    @_reports_failures
    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        target = resolve_workspace_target(ctx.sandbox, args["path"])
        shown = target.shown
        data = _read_capped(ctx, target)
        if _is_binary(data):
            return ToolResult(
                False,
                f"{shown} is a binary file ({len(data)} bytes); not shown. Inspect it with bash (file, xxd | head).",
                {"path": shown, "binary": True, "bytes": len(data)},
            )
        text = data.decode("utf-8", errors="replace")
        notes = []
        bad_bytes = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
        if bad_bytes:
            notes.append(
                f"the file is not valid UTF-8: {bad_bytes} undecodable byte sequence(s) shown as U+FFFD"
            )
        # Split on "\n" only (not splitlines), so numbers agree with grep -n and with edit_file.
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        if lines[-1] == "":
            lines.pop()
        if not lines:
            return ToolResult(True, f"({shown} is empty)", {"path": shown, "total_lines": 0})

        first = args.get("offset", 1)
        limit = args.get("limit", DEFAULT_LINE_LIMIT)
        if first > len(lines):
            raise FileToolError(f"offset {first} is past the end of {shown}, which has {len(lines)} lines")
        shown_lines, size = [], 0
        for line in lines[first - 1 : first - 1 + limit]:
            if len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS] + f"... [line cut: {len(line) - MAX_LINE_CHARS} more characters]"
            size += len(line) + 8
            if size > MAX_OUTPUT_CHARS and shown_lines:
                notes.append(f"output capped at about {MAX_OUTPUT_CHARS // 1000} KB")
                break
            shown_lines.append(line)
        last = first + len(shown_lines) - 1
        if last < len(lines):
            notes.append(f"showing lines {first}-{last} of {len(lines)}; continue with offset={last + 1}")
        output = _numbered(shown_lines, first)
        if notes:
            output += "\n[" + "; ".join(notes) + "]"
        data_fields = {"path": shown, "total_lines": len(lines), "start_line": first, "end_line": last}
        return ToolResult(True, output, data_fields)


class WriteFile(ToolBase):
    name = "write_file"
    description = (
        "Create or overwrite a file with the given content (the whole file). Parent directories are "
        "created; an existing file keeps its permissions. Prefer edit_file for changes to existing files."
    )
    parameters = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path relative to the workspace root."},
            "content": {"type": "string", "description": "The complete new content of the file."},
        },
        "required": ["path", "content"],
        "additionalProperties": False,
    }
    permission = Permission.EDIT
    edits_files = True

    @_reports_failures
    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        target = writable_workspace_target(ctx.sandbox, args["path"])
        shown = target.shown
        info = ctx.sandbox.stat(target.real)
        if info is not None and info.is_dir:
            raise FileToolError(f"{shown} is a directory; give a file path")
        data = args["content"].encode("utf-8")  # run_tool refuses lone surrogates before we get here
        ctx.sandbox.write_file(target.real, data)
        lines = args["content"].count("\n") + (
            0 if args["content"].endswith("\n") or not args["content"] else 1
        )
        how = "created" if info is None else "overwrote"
        return ToolResult(
            True,
            f"{how} {shown} ({lines} lines, {len(data)} bytes)",
            {"path": shown, "created": info is None, "bytes": len(data)},
        )


class EditFile(ToolBase):
    name = "edit_file"
    description = (
        "Replace text in a file. `old` must match the file exactly and be unique (add surrounding lines "
        "to make it so), unless replace_all is true. If there is no exact match, near misses that differ "
        "only in trailing whitespace, indentation, or whitespace around lines are accepted and the result "
        "says so. On failure nothing is changed and the closest region of the file is shown."
    )
    parameters = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path relative to the workspace root."},
            "old": {"type": "string", "description": "The exact text to replace."},
            "new": {"type": "string", "description": "The replacement text."},
            "replace_all": {"type": "boolean", "description": "Replace every occurrence (default false)."},
        },
        "required": ["path", "old", "new"],
        "additionalProperties": False,
    }
    permission = Permission.EDIT
    edits_files = True

    @_reports_failures
    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        file = load_text(ctx, args["path"])
        _check_encoding(file, [args["new"]])
        try:
            outcome = apply_edit(file.text, args["old"], args["new"], args.get("replace_all", False))
        except EditError as e:
            hint = _not_found_hint(file, [args["old"]])
            raise EditError(f"{file.shown}: {e}\nThe file was not changed.{hint}") from None
        save_text(ctx, file, outcome.text)
        return ToolResult(
            True, _edit_report(file.shown, [outcome], outcome.text), _edit_data(file, [outcome])
        )


class MultiEdit(ToolBase):
    name = "multi_edit"
    description = (
        "Apply several edits to one file, in order, all or nothing: each edit sees the result of the "
        "previous ones, and if any edit fails the file is left unchanged. Each edit follows edit_file's rules."
    )
    parameters = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path relative to the workspace root."},
            "edits": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "old": {"type": "string"},
                        "new": {"type": "string"},
                        "replace_all": {"type": "boolean"},
                    },
                    "required": ["old", "new"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["path", "edits"],
        "additionalProperties": False,
    }
    permission = Permission.EDIT
    edits_files = True

    @_reports_failures
    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        file = load_text(ctx, args["path"])
        text, outcomes = file.text, []
        edits = args["edits"]
        _check_encoding(file, [edit["new"] for edit in edits])
        for number, edit in enumerate(edits, start=1):
            try:
                outcome = apply_edit(text, edit["old"], edit["new"], edit.get("replace_all", False))
            except EditError as e:
                raise EditError(
                    f"{file.shown}: edit {number} of {len(edits)} failed: {e}\n"
                    "No edit was applied; the file was not changed." + _not_found_hint(file, [edit["old"]])
                ) from None
            text = outcome.text
            outcomes.append(outcome)
        save_text(ctx, file, text)
        return ToolResult(True, _edit_report(file.shown, outcomes, text), _edit_data(file, outcomes))


def _edit_report(shown: str, outcomes: list[EditOutcome], text: str) -> str:
    parts = []
    for number, outcome in enumerate(outcomes, start=1):
        label = f"edit {number}: " if len(outcomes) > 1 else ""
        fuzzy = "" if outcome.strategy == "exact" else " (no exact match; matched " + outcome.strategy + ")"
        parts.append(
            f"{label}replaced {outcome.replacements} occurrence(s) at line {outcome.first_line}{fuzzy}"
        )
    last = outcomes[-1]
    snippet = _snippet(text, last.first_line, last.new_line_count)
    return f"edited {shown}: " + "; ".join(parts) + f"\n{displayable(snippet)}"


def _edit_data(file: TextFile, outcomes: list[EditOutcome]) -> dict[str, Any]:
    return {
        "path": file.shown,
        "strategies": [o.strategy for o in outcomes],
        "replacements": sum(o.replacements for o in outcomes),
    }


TOOLS = [ReadFile(), WriteFile(), EditFile(), MultiEdit()]
