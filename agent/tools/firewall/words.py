"""Words as the firewall sees them after expansion, and a small option parser for verbs.

An argument is a plain str when its value is known, `Unknown` when it depends on something
that only exists at run time, and `Found` when it stands for the paths another command
produces (find's results behind `{}` or a pipe into xargs).
"""

from __future__ import annotations

from dataclasses import dataclass


class Unknown(str):
    """An argument whose value cannot be known before running (a variable, `$(...)`)."""


class Found(str):
    """Stands for paths another command produces: anything under `starts` (find results)."""

    def __new__(cls, starts: list[str], spares_git: bool) -> Found:
        found = super().__new__(cls, "{}")
        found.starts = starts
        found.spares_git = spares_git
        return found


@dataclass
class Parsed:
    flags: set[str]  # short letters and --long names seen
    values: dict[str, list[str]]  # option -> values, for options that take one
    operands: list[str]


def parse_options(
    args: list[str], value_short: str = "", value_long: tuple[str, ...] = (), attached_short: str = ""
) -> Parsed:
    """GNU-style options anywhere in `args`: clusters (-rf), attached values (-tDIR, --x=y), `--`.
    Letters in `attached_short` take the rest of their cluster as their value, maybe empty (sed's -i.bak)."""
    flags: set[str] = set()
    values: dict[str, list[str]] = {}
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if isinstance(arg, Unknown | Found) or arg == "-" or not arg.startswith("-"):
            operands.append(arg)
        elif arg == "--":
            operands += args[i:]
            break
        elif arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            flags.add(name)
            if eq:
                values.setdefault(name, []).append(value)
            elif name in value_long and i < len(args):
                values.setdefault(name, []).append(args[i])
                i += 1
        else:
            for j, letter in enumerate(arg[1:], start=1):
                flags.add(letter)
                if letter in attached_short:
                    values.setdefault(letter, []).append(arg[j + 1 :])
                    break
                if letter in value_short:
                    value = arg[j + 1 :]
                    if not value and i < len(args):
                        value = args[i]
                        i += 1
                    values.setdefault(letter, []).append(value)
                    break
    return Parsed(flags, values, operands)
