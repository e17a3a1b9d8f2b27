"""Shell-style glob patterns for the glob tool, compiled to one regex over relative paths.

Syntax: `*` and `?` stay within one path component, `**` spans any number of directories,
`[abc]` / `[!abc]` are character classes and `{a,b}` alternatives (nesting allowed). A pattern is
anchored at the search directory: `*.py` matches there only, `**/*.py` at any depth.
"""

from __future__ import annotations

import re


def compile_glob(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip().removeprefix("./").rstrip("/") or "*"
    return re.compile(_translate(pattern) + r"\Z", re.DOTALL)


def literal_prefix(pattern: str) -> str:
    """The leading directories without wildcards (`src/app/**/*.ts` -> `src/app`): where to walk."""
    parts = pattern.strip().removeprefix("./").split("/")
    prefix = []
    for part in parts[:-1]:
        if any(c in part for c in "*?[{"):
            break
        prefix.append(part)
    return "/".join(prefix)


def _translate(pattern: str) -> str:
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")  # zero or more whole directories
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1 : end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "{":
            end = _matching_brace(pattern, i)
            if end == -1:
                out.append(re.escape(c))
                i += 1
                continue
            options = _split_top_level(pattern[i + 1 : end])
            out.append("(?:" + "|".join(_translate(option) for option in options) + ")")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _matching_brace(pattern: str, start: int) -> int:
    depth = 0
    for index in range(start, len(pattern)):
        if pattern[index] == "{":
            depth += 1
        elif pattern[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _split_top_level(body: str) -> list[str]:
    options, depth, current = [], 0, []
    for c in body:
        if c == "," and depth == 0:
            options.append("".join(current))
            current = []
            continue
        depth += (c == "{") - (c == "}")
        current.append(c)
    options.append("".join(current))
    return options
