"""Permission modes and --allow / --deny rules: which tool calls run without asking.

Modes: `ask` (reads run; edits, shell and destructive tools ask), `auto-edit` (reads and edits run;
shell asks), `full-auto` (everything runs). Without a terminal to ask on, "ask" means deny, with a
message saying how to allow it. Rules look like `edit_file`, `bash(pytest *)` or `write_file(src/*)`:
a tool-name glob, optionally with a glob over the call's main argument (the command for bash, the
path for file tools). Deny rules win over allow rules; allow rules win over the mode.

The destructive-action firewall in the tools is separate and applies in every mode.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.tools.base import Permission

MODES = ("ask", "auto-edit", "full-auto")
_RULE = re.compile(r"^\s*([A-Za-z0-9_*?\[\]-]+)\s*(?:\((.*)\))?\s*$", re.S)
_MAIN_ARGUMENT = {"bash": "command", "bash_output": "id", "bash_kill": "id"}


class PermissionRuleError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    tool: str
    argument: str | None = None

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = _RULE.match(text)
        if not match:
            raise PermissionRuleError(
                f"bad permission rule {text!r}: write TOOL or TOOL(pattern), e.g. 'bash(pytest *)'"
            )
        return cls(match.group(1), match.group(2))

    def matches(self, tool: str, args: dict[str, Any]) -> bool:
        if not fnmatch.fnmatchcase(tool, self.tool):
            return False
        return self.argument is None or fnmatch.fnmatchcase(main_argument(tool, args), self.argument)


def main_argument(tool: str, args: dict[str, Any]) -> str:
    key = _MAIN_ARGUMENT.get(tool)
    if key is None and "path" in args:
        key = "path"
    if key is not None:
        return str(args.get(key, ""))
    return json.dumps(args, sort_keys=True, ensure_ascii=False)


@dataclass
class Decision:
    allowed: bool
    reason: str = ""


@dataclass
class PermissionPolicy:
    mode: str = "ask"
    allow: list[Rule] = field(default_factory=list)
    deny: list[Rule] = field(default_factory=list)
    # Asks the person at the terminal; None when there is nobody to ask (CI, -p).
    ask: Callable[[str, dict[str, Any]], bool] | None = None
    # Shell commands run in an isolating sandbox (Docker): auto-edit lets them run too.
    shell_isolated: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PermissionRuleError(
                f"unknown permission mode {self.mode!r}: choose one of {', '.join(MODES)}"
            )

    def decide(self, tool: str, permission: Permission, args: dict[str, Any]) -> Decision:
        call = _show_call(tool, args)
        for rule in self.deny:
            if rule.matches(tool, args):
                return Decision(False, f"{call} is denied by the rule --deny '{_show(rule)}'.")
        if any(rule.matches(tool, args) for rule in self.allow):
            return Decision(True)
        if permission == Permission.READ or self.mode == "full-auto":
            return Decision(True)
        if self.mode == "auto-edit" and permission == Permission.EDIT:
            return Decision(True)
        if self.mode == "auto-edit" and permission == Permission.EXECUTE and self.shell_isolated:
            return Decision(True)  # commands run in a container: the host is out of their reach
        if self.ask is not None:
            return Decision(True) if self.ask(tool, args) else Decision(False, f"The user declined {call}.")
        return Decision(
            False,
            f"{call} ({permission.value}) is not permitted in permission mode '{self.mode}' without a person to "
            f"ask. Do without it, or the user can rerun with --permission-mode full-auto or "
            f"--allow '{tool}(...)'.",
        )


def _show(rule: Rule) -> str:
    return rule.tool if rule.argument is None else f"{rule.tool}({rule.argument})"


def _show_call(tool: str, args: dict[str, Any], limit: int = 200) -> str:
    """`'bash' `rm -rf build``: the tool and the argument rules match, so a refusal says what it refused."""
    argument = main_argument(tool, args).replace("\n", " ")
    if len(argument) > limit:
        argument = argument[: limit - 3] + "..."
    return f"'{tool}' `{argument}`" if argument and argument != "{}" else f"'{tool}'"
