"""Find-and-replace for edit_file: exact first, then a short cascade of forgiving matches.

Models often copy a block with trailing spaces dropped, at the wrong indentation, or with
surrounding whitespace changed. Each fallback is tried only when the stricter ones found
nothing, it always names itself in the result (never a silent fuzzy edit), and an ambiguous
match is an error rather than a guess. When nothing matches, the error shows the closest region
of the file with line numbers and a diff, so the model can correct its `old` text.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass


class EditError(ValueError):
    """An edit that cannot be applied; the message is written for the model."""


@dataclass
class EditOutcome:
    text: str  # the whole new text
    strategy: str  # which matcher found `old`
    replacements: int
    first_line: int  # 1-based line where the first replacement starts
    new_line_count: int  # lines in the replacement text


@dataclass
class _Span:
    start: int  # character offsets into the text
    end: int
    replacement: str


def apply_edit(text: str, old: str, new: str, replace_all: bool = False) -> EditOutcome:
    if old == "":
        raise EditError("`old` is empty; give the exact text to replace (to create a file use write_file)")
    if old == new:
        raise EditError("`old` and `new` are identical; nothing to change")
    count = text.count(old)
    if count == 1 or (count > 1 and replace_all):
        first = text.index(old)
        return EditOutcome(
            text=text.replace(old, new),
            strategy="exact",
            replacements=count,
            first_line=text.count("\n", 0, first) + 1,
            new_line_count=new.count("\n") + 1,
        )
    if count > 1:
        raise EditError(_ambiguous_message(count, _line_numbers_of(text, old), "exactly"))

    lines = text.splitlines(keepends=True)
    old_lines = _split_block(old)
    new_lines = _split_block(new) if new else []  # an empty `new` deletes the matched lines
    for strategy, matcher in _FALLBACKS:
        windows = _matching_windows(lines, old_lines, matcher)
        if not windows:
            continue
        if len(windows) > 1 and not replace_all:
            starts = [start + 1 for start, _ in windows]
            raise EditError(_ambiguous_message(len(windows), starts, f"ignoring {strategy}"))
        spans = [_window_span(lines, start, len(old_lines), fix(new_lines)) for start, fix in windows]
        return EditOutcome(
            text=_apply_spans(text, spans),
            strategy=f"ignoring {strategy}",
            replacements=len(spans),
            first_line=windows[0][0] + 1,
            new_line_count=len(new_lines),
        )
    raise EditError(_not_found_message(lines, old_lines))


# -- fallback matchers ------------------------------------------------------------------------
# Each takes the file's lines and `old`'s lines (same length) and returns None when they do not
# match, or a function that adapts `new`'s lines to the file (e.g. re-indents them).

Reindent = Callable[[list[str]], list[str]]


def _as_given(new_lines: list[str]) -> list[str]:
    return new_lines


def _trailing_whitespace(file_lines: list[str], old_lines: list[str]) -> Reindent | None:
    if all(f.rstrip() == o.rstrip() for f, o in zip(file_lines, old_lines, strict=True)):
        return _as_given
    return None


def _indentation(file_lines: list[str], old_lines: list[str]) -> Reindent | None:
    """Matches when every non-blank line is shifted by the same leading whitespace."""
    shift: tuple[str, str] | None = None  # (added, removed): one of them is ""
    for f, o in zip(file_lines, old_lines, strict=True):
        f, o = f.rstrip(), o.rstrip()
        if not f and not o:
            continue
        f_body, o_body = f.lstrip(), o.lstrip()
        if f_body != o_body or not f_body:
            return None
        f_lead, o_lead = f[: len(f) - len(f_body)], o[: len(o) - len(o_body)]
        if f_lead.endswith(o_lead):
            line_shift = (f_lead[: len(f_lead) - len(o_lead)], "")
        elif o_lead.endswith(f_lead):
            line_shift = ("", o_lead[: len(o_lead) - len(f_lead)])
        else:
            return None
        if shift is None:
            shift = line_shift
        elif shift != line_shift:
            return None
    if shift is None or shift == ("", ""):
        return None
    added, removed = shift

    def reindent(new_lines: list[str]) -> list[str]:
        out = []
        for line in new_lines:
            if not line.strip():
                out.append(line)
            elif added:
                out.append(added + line)
            elif line.startswith(removed):
                out.append(line[len(removed) :])
            else:
                out.append(line.lstrip())  # less indented than the shift: clamp at the margin
        return out

    return reindent


def _surrounding_whitespace(file_lines: list[str], old_lines: list[str]) -> Reindent | None:
    if all(f.strip() == o.strip() for f, o in zip(file_lines, old_lines, strict=True)):
        return _as_given
    return None


_FALLBACKS: list[tuple[str, Callable[[list[str], list[str]], Reindent | None]]] = [
    ("trailing whitespace", _trailing_whitespace),
    ("indentation", _indentation),
    ("whitespace around each line", _surrounding_whitespace),
]


# -- helpers ----------------------------------------------------------------------------------


def _split_block(block: str) -> list[str]:
    """Lines of a block without their endings; a final newline does not add an empty line."""
    if block.endswith("\n"):
        block = block[:-1]
    return block.split("\n")


def _matching_windows(
    lines: list[str], old_lines: list[str], matcher: Callable[[list[str], list[str]], Reindent | None]
) -> list[tuple[int, Reindent]]:
    """Non-overlapping windows of the file that match, as (first line index, reindent)."""
    size = len(old_lines)
    found: list[tuple[int, Reindent]] = []
    i = 0
    while i + size <= len(lines):
        window = [line.rstrip("\r\n") for line in lines[i : i + size]]
        fix = matcher(window, old_lines)
        if fix is not None:
            found.append((i, fix))
            i += size
        else:
            i += 1
    return found


def _window_span(lines: list[str], start: int, size: int, new_lines: list[str]) -> _Span:
    begin = sum(len(line) for line in lines[:start])
    end = begin + sum(len(line) for line in lines[start : start + size])
    last = lines[start + size - 1]
    ending = last[len(last.rstrip("\r\n")) :]  # keep the window's own line ending
    replacement = "\n".join(new_lines) + ending if new_lines else ""
    return _Span(begin, end, replacement)


def _apply_spans(text: str, spans: list[_Span]) -> str:
    out, position = [], 0
    for span in spans:
        out.append(text[position : span.start])
        out.append(span.replacement)
        position = span.end
    out.append(text[position:])
    return "".join(out)


def _line_numbers_of(text: str, needle: str) -> list[int]:
    numbers, position = [], text.find(needle)
    while position != -1:
        numbers.append(text.count("\n", 0, position) + 1)
        position = text.find(needle, position + len(needle))
    return numbers


def _ambiguous_message(count: int, line_numbers: list[int], how: str) -> str:
    shown = ", ".join(str(n) for n in line_numbers[:10])
    return (
        f"`old` matches {count} places ({how}), starting at lines {shown}. Include more surrounding "
        "lines in `old` to make it unique, or set replace_all to change every one."
    )


def _not_found_message(lines: list[str], old_lines: list[str]) -> str:
    message = (
        "`old` was not found in the file (tried an exact match, then ignoring trailing whitespace, "
        "indentation, and whitespace around each line)."
    )
    region = _closest_region(lines, old_lines)
    if region is None:
        return message + " Nothing in the file looks similar; read the file again before editing."
    start, ratio = region
    window = [line.rstrip("\r\n") for line in lines[start : start + len(old_lines)]]
    numbered = "\n".join(f"{start + 1 + i:6}\t{line}" for i, line in enumerate(window))
    diff = list(difflib.unified_diff(old_lines, window, "your old", "the file", n=1, lineterm=""))[2:]
    shown_diff = "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else "")
    end = start + len(window)
    return (
        f"{message}\nThe closest region is lines {start + 1}-{end} ({ratio:.0%} similar):\n{numbered}\n"
        f"Differences (- your old, + the file):\n{shown_diff}\n"
        "Copy the exact text from the file (read_file shows it) and retry."
    )


def _closest_region(lines: list[str], old_lines: list[str]) -> tuple[int, float] | None:
    size = min(len(old_lines), len(lines))
    if size == 0:
        return None
    old_text = "\n".join(old_lines)
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(old_text)
    scored = []
    for i in range(len(lines) - size + 1):
        matcher.set_seq1("".join(lines[i : i + size]).rstrip("\n"))
        scored.append((matcher.quick_ratio(), i))
    # quick_ratio is an upper bound; compute the real ratio only for the best few.
    best: tuple[float, int] | None = None
    for _, i in sorted(scored, reverse=True)[:25]:
        matcher.set_seq1("".join(lines[i : i + size]).rstrip("\n"))
        candidate = (matcher.ratio(), -i)
        if best is None or candidate > best:
            best = candidate
    if best is None or best[0] < 0.4:
        return None
    return -best[1], best[0]
