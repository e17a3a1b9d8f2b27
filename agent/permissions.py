"""Permission modes and --allow / --deny rules: which tool calls run without asking.

Modes: `ask` (reads run; edits, shell and destructive tools ask), `auto-edit` (reads and edits run;
shell asks), `full-auto` (everything runs). Without a terminal to ask on, "ask" means deny, with a
message saying how to allow it. Rules look like `edit_file`, `bash(pytest *)` or `write_file(src/*)`:
a tool-name glob, optionally with a glob over the call's main argument (the path for file tools).
Deny rules win over allow rules; allow rules win over the mode.

A `bash(...)` rule matches one simple command, not the command line: the line is parsed with the
firewall's own walk (agent.tools.firewall.screen.simple_commands) into every command it would run, through
`;`, `&&`, pipelines, subshells, `$(...)`, `sh -c`, `eval` and wrappers like `timeout` or `xargs`.
The line runs without asking only when every one of them is allowed by a rule (or is a shell
built-in that only moves around or tests: cd, pushd, popd, true, false, :, test, [, set -OPTIONS);
a deny rule refuses the line when it matches any of them. Allow rules never approve what the
parser cannot see (`$CMD args`, `eval "$V"`, `source FILE`, code fed to an interpreter through a
here-document, syntax bashlex does not read) nor a redirection that writes a file (`> out.txt`):
those fall back to the mode. With a deny rule for bash in force, a line with such hidden parts is
refused too, since it cannot be checked against the rule.

The destructive-action firewall in the tools is separate and applies in every mode.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.tools.base import Permission
from agent.tools.firewall.screen import CommandLine, SimpleCommand, simple_commands
from agent.tools.firewall.verbs import command_name

PLAN_ONLY = (
    "Investigate with them, record the plan with todo_write, and finish with a message that explains it."
)
MODES = ("ask", "auto-edit", "full-auto", "plan")  # plan: read-only tools, the run ends with a plan
_RULE = re.compile(r"^\s*([A-Za-z0-9_*?\[\]-]+)\s*(?:\((.*)\))?\s*$", re.S)
_MAIN_ARGUMENT = {"bash": "command", "bash_output": "id", "bash_kill": "id", "web_fetch": "url"}
SHELL_TOOL = "bash"
# Built-ins that only change the shell's directory, do nothing or test something: no rule needed.
_HARMLESS_BUILTINS = {"cd", "pushd", "popd", "true", "false", ":", "test", "["}


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

    def names(self, tool: str) -> bool:
        return fnmatch.fnmatchcase(tool, self.tool)

    def matches(self, tool: str, args: dict[str, Any]) -> bool:
        """For tools other than bash: the glob against the call's main argument (its path)."""
        if not self.names(tool):
            return False
        return self.argument is None or fnmatch.fnmatchcase(main_argument(tool, args), self.argument)

    def allows(self, command: SimpleCommand) -> bool:
        """Exactly as written: `/tmp/x/python -m pytest` is not `python -m pytest`."""
        return self.argument is None or fnmatch.fnmatchcase(command.text, self.argument)

    def denies(self, command: SimpleCommand) -> bool:
        """Generously: with and without its NAME=value words, `/bin/rm` and `\\rm` as `rm` too, and
        words joined with and without quoting."""
        if self.argument is None:
            return True
        spellings = set()
        for words in ([*command.assignments, *command.argv], command.argv):
            bare = [command_name(words[0]), *words[1:]] if words else words
            spellings |= {shlex.join(words), " ".join(words), shlex.join(bare), " ".join(bare)}
        return any(fnmatch.fnmatchcase(text, self.argument) for text in spellings)


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
    # Applied to the command before a refusal quotes (and shortens) it: see agent/secrets.py.
    redact: Callable[[str], str] = lambda text: text

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PermissionRuleError(
                f"unknown permission mode {self.mode!r}: choose one of {', '.join(MODES)}"
            )

    def decide(self, tool: str, permission: Permission, args: dict[str, Any]) -> Decision:
        call = _show_call(tool, args, self.redact)
        line = None
        if tool == SHELL_TOOL and isinstance(args.get("command"), str):
            line = _parse(args["command"])
        for rule in self.deny:
            denied = self._denied_by(rule, tool, args, line)
            if denied is not None:
                return Decision(False, f"{call} is denied by the rule --deny '{_show(rule)}'{denied}.")
        if self.mode == "plan" and permission != Permission.READ:
            return Decision(False, f"{call} does not run in plan mode: only read-only tools do. {PLAN_ONLY}")
        unapproved = self._not_allowed_by_rules(tool, args, line)
        if unapproved is None:
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
            f"ask{unapproved}. Do without it, or the user can rerun with --permission-mode full-auto or "
            f"--allow '{tool}(...)'.",
        )

    def _denied_by(self, rule: Rule, tool: str, args: dict[str, Any], line: CommandLine | None) -> str | None:
        """None when `rule` does not deny the call; else what the refusal adds (the part it hit)."""
        if line is None or rule.argument is None:
            return "" if rule.matches(tool, args) else None
        if not rule.names(tool):
            return None
        if fnmatch.fnmatchcase(args["command"], rule.argument):
            return ""
        for command in line.commands:
            if rule.denies(command):
                return f" (it runs `{self._clip(command.text)}`)"
        if line.hidden:
            return f" (it cannot be checked against the rule: {self._clip(line.hidden[0])})"
        return None

    def _not_allowed_by_rules(self, tool: str, args: dict[str, Any], line: CommandLine | None) -> str | None:
        """None when allow rules approve the call; else why not, worded to follow 'not permitted ...'."""
        rules = [rule for rule in self.allow if rule.names(tool)]
        if line is None:
            return None if any(rule.matches(tool, args) for rule in rules) else ""
        if any(rule.argument is None for rule in rules):
            return None  # `--allow bash`: every command
        if not rules:
            return ""
        if line.hidden:
            return f"; --allow rules cannot approve it: {self._clip(line.hidden[0])}"
        if line.writes:
            return f"; --allow rules do not approve redirections that write files (`{self._clip(line.writes[0])}`)"
        matched = False
        for number, command in enumerate(line.commands, start=1):
            if any(rule.allows(command) for rule in rules):
                matched = True
            elif not _harmless(command):
                part = f" (part {number} of {len(line.commands)})" if len(line.commands) > 1 else ""
                return f"; no --allow rule matches `{self._clip(command.text)}`{part}"
        return None if matched else ""

    def _clip(self, text: str, limit: int = 160) -> str:
        text = self.redact(text).replace("\n", " ")
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse(command: str) -> CommandLine:
    try:
        return simple_commands(command)
    except Exception as exc:  # noqa: BLE001 - whatever breaks the reader, the line stays unapproved
        return CommandLine(hidden=[f"it could not be read ({type(exc).__name__})"])


def _harmless(command: SimpleCommand) -> bool:
    if command.assignments or not command.argv:
        return False
    name, args = command.argv[0], command.argv[1:]
    if name == "set":  # `set -euo pipefail`: shell options only
        return bool(args) and all(re.fullmatch(r"[-+]?[A-Za-z]+", arg) for arg in args)
    return name in _HARMLESS_BUILTINS


def _show(rule: Rule) -> str:
    return rule.tool if rule.argument is None else f"{rule.tool}({rule.argument})"


def _show_call(
    tool: str, args: dict[str, Any], redact: Callable[[str], str] = lambda t: t, limit: int = 200
) -> str:
    """`'bash' `rm -rf build``: the tool and the argument rules match, so a refusal says what it refused.

    Redacted before it is shortened: a cut through a secret would otherwise show its first characters."""
    argument = redact(main_argument(tool, args)).replace("\n", " ")
    if len(argument) > limit:
        argument = argument[: limit - 3] + "..."
    return f"'{tool}' `{argument}`" if argument and argument != "{}" else f"'{tool}'"
