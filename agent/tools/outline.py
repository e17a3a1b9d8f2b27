"""outline: the symbols of one source file (classes, functions, methods, ...) with line ranges.

Cheaper than reading a whole file to find one's way in it; the line ranges feed a later
read_file with an offset. Parsing is tree-sitter (see repo_map/symbols.py for the languages).
"""

from __future__ import annotations

from typing import Any

from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult
from agent.tools.repo_map.symbols import LANGUAGE_BY_EXTENSION, Symbol, extract_symbols, language_for_path
from agent.tools.workspace_paths import WorkspacePathError, resolve_workspace_target
from sandbox.base import FileTooLarge, SandboxError

MAX_OUTLINE_LINES = 400  # a generated file can hold thousands of symbols
MAX_SOURCE_BYTES = 5_000_000


def format_outline(symbols: list[Symbol]) -> list[str]:
    lines: list[str] = []

    def add(symbol: Symbol, depth: int, parent_line: int | None) -> None:
        head = f"{'  ' * depth}{symbol.kind} {symbol.name} [{symbol.start_line}-{symbol.end_line}]"
        # The first line is worth showing unless it is the parent's too (one-line classes).
        signature = symbol.signature.strip() if symbol.start_line != parent_line else ""
        lines.append(f"{head}  {signature}" if signature else head)
        for child in symbol.children:
            add(child, depth + 1, symbol.start_line)

    for symbol in symbols:
        add(symbol, 0, None)
    return lines


class OutlineTool(ToolBase):
    name = "outline"
    description = (
        "Outline one source file: its classes, functions, methods (and structs, interfaces, "
        "traits, enums, ...) nested as in the code, each with its line range [start-end] and "
        "first line. Supports Python, JavaScript, TypeScript/TSX, Go, Rust, Java, C and C++."
    )
    parameters = {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "A source file in the workspace."}},
        "required": ["path"],
        "additionalProperties": False,
    }
    permission = Permission.READ

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        path = args.get("path")
        if not isinstance(path, str) or not path:
            return ToolResult(False, "outline needs a `path`.")
        try:
            target = resolve_workspace_target(ctx.sandbox, path)
        except WorkspacePathError as exc:
            return ToolResult(False, str(exc))
        language = language_for_path(target.path)
        if language is None:
            known = " ".join(sorted(LANGUAGE_BY_EXTENSION))
            return ToolResult(False, f"outline does not know this file type; supported extensions: {known}")
        info = ctx.sandbox.stat(target.real)
        if info is None or info.is_dir:
            return ToolResult(False, f"{path!r} is not a file")
        try:
            # The cap applies to the opened file (a symlink's target), FIFOs and devices are refused.
            source = ctx.sandbox.read_file(target.real, max_bytes=MAX_SOURCE_BYTES)
        except FileTooLarge as exc:
            return ToolResult(False, f"{path!r} is {exc.size} bytes, too big to outline; use grep instead")
        except SandboxError as exc:
            return ToolResult(False, f"cannot read {path!r}: {exc}")
        symbols = extract_symbols(source, language)
        rel = target.shown
        data = {"path": rel, "language": language, "symbols": [s.to_json() for s in symbols]}
        if not symbols:
            return ToolResult(True, f"{rel} ({language}): no symbols found.", data)
        lines = format_outline(symbols)
        total = len(lines)
        if total > MAX_OUTLINE_LINES:
            lines = lines[:MAX_OUTLINE_LINES] + [f"[{total - MAX_OUTLINE_LINES} more symbols not shown]"]
        line_count = source.count(b"\n") + (0 if source.endswith(b"\n") else 1)
        return ToolResult(True, f"{rel} ({language}, {line_count} lines)\n" + "\n".join(lines), data)


TOOLS: list = [OutlineTool()]
