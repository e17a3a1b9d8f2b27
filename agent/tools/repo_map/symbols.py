"""Symbol definitions (classes, functions, methods, ...) found with tree-sitter queries.

One query per language lives in symbol_queries/<language>.scm: `@definition.<kind>` captures a
whole definition and `@name` its name. Nesting comes from byte ranges, so a function inside a
class-like symbol becomes a method whatever the grammar calls it. Shared by outline and repo_map.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tree_sitter import Node, Query, QueryCursor
from tree_sitter_language_pack import get_language, get_parser

LANGUAGE_BY_EXTENSION = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
}
QUERY_FILE_BY_LANGUAGE = {"tsx": "typescript"}  # TSX shares TypeScript's node names
CLASS_LIKE = {"class", "struct", "interface", "trait", "impl", "enum", "union"}
CALLABLE = {"function", "method", "constructor"}
# Where C/C++ keep a function's name, under any depth of pointer/reference declarators.
DECLARATOR_NAME_TYPES = {
    "identifier",
    "field_identifier",
    "qualified_identifier",
    "destructor_name",
    "operator_name",
    "type_identifier",
}
MAX_SIGNATURE_CHARS = 160


@dataclass
class Symbol:
    kind: str  # class, function, method, struct, interface, enum, trait, impl, namespace, ...
    name: str
    start_line: int  # 1-based, inclusive
    end_line: int
    signature: str  # the definition's first line, right-stripped
    children: list[Symbol] = field(default_factory=list)
    start_byte: int = 0
    end_byte: int = 0
    in_callable: bool = False  # defined inside a function body (a local helper)
    node_type: str = ""

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "signature": self.signature,
            "children": [child.to_json() for child in self.children],
        }


def language_for_path(path: str) -> str | None:
    return LANGUAGE_BY_EXTENSION.get(posixpath.splitext(path)[1].lower())


@cache
def _parser(language: str):
    return get_parser(language)


@cache
def _query(language: str) -> Query:
    file_name = QUERY_FILE_BY_LANGUAGE.get(language, language) + ".scm"
    source = (Path(__file__).parent / "symbol_queries" / file_name).read_text()
    return Query(get_language(language), source)


def parse(source: bytes, language: str):
    return _parser(language).parse(source)


def extract_symbols(source: bytes, language: str, tree=None) -> list[Symbol]:
    """The top-level symbols of `source`, each with its nested children."""
    return nest_symbols(extract_flat_symbols(source, language, tree))


def extract_flat_symbols(source: bytes, language: str, tree=None) -> list[Symbol]:
    """Every definition in source order (outer before inner), not nested yet."""
    tree = tree or parse(source, language)
    lines = source.split(b"\n")
    by_range: dict[tuple[int, int], tuple[int, Symbol]] = {}
    for pattern_index, captures in QueryCursor(_query(language)).matches(tree.root_node):
        definition = kind = None
        for capture_name, nodes in captures.items():
            if capture_name.startswith("definition."):
                definition, kind = nodes[0], capture_name.removeprefix("definition.")
        if definition is None:
            continue
        key = (definition.start_byte, definition.end_byte)
        if key in by_range and by_range[key][0] <= pattern_index:
            continue  # an earlier (more specific) pattern already named this node
        name_nodes = captures.get("name")
        name = _text(name_nodes[0]) if name_nodes else _declarator_name(definition)
        if not name:
            continue
        by_range[key] = (pattern_index, _make_symbol(kind, name, definition, lines))
    symbols = [symbol for _, symbol in by_range.values()]
    symbols.sort(key=lambda s: (s.start_byte, -s.end_byte))
    return symbols


def nest_symbols(flat: list[Symbol]) -> list[Symbol]:
    """Nest by byte range; functions directly in class-like symbols become methods."""
    top: list[Symbol] = []
    stack: list[Symbol] = []
    for symbol in flat:
        symbol.children = []
        while stack and symbol.start_byte >= stack[-1].end_byte:
            stack.pop()
        parent = stack[-1] if stack else None
        if parent is not None:
            symbol.in_callable = parent.in_callable or parent.kind in CALLABLE
            if symbol.in_callable and symbol.node_type == "declaration":
                continue  # a prototype or declaration inside a function body is not a symbol
            if symbol.kind == "function" and parent.kind in CLASS_LIKE:
                symbol.kind = "method"
            parent.children.append(symbol)
        else:
            top.append(symbol)
        stack.append(symbol)
    return top


def _make_symbol(kind: str, name: str, node: Node, lines: list[bytes]) -> Symbol:
    start_row, end_row = node.start_point.row, node.end_point.row
    if node.end_point.column == 0 and end_row > start_row:
        end_row -= 1  # the node ends with its final newline
    first_line = lines[start_row].decode("utf-8", "replace").rstrip() if start_row < len(lines) else ""
    if len(first_line) > MAX_SIGNATURE_CHARS:
        first_line = first_line[:MAX_SIGNATURE_CHARS] + "…"
    return Symbol(
        kind=kind,
        name=name,
        start_line=start_row + 1,
        end_line=end_row + 1,
        signature=first_line,
        start_byte=node.start_byte,
        end_byte=node.end_byte,
        node_type=node.type,
    )


def _declarator_name(node: Node) -> str | None:
    """C/C++: follow the `declarator` fields down to the function's name."""
    current: Node | None = node
    while current is not None:
        if current.type in DECLARATOR_NAME_TYPES:
            return _text(current)
        current = current.child_by_field_name("declarator")
    return None


def _text(node: Node) -> str:
    return node.text.decode("utf-8", "replace") if node.text is not None else ""
