"""Custom slash commands: Markdown files whose text becomes the prompt of `/NAME args`.

They live in `.mmx-agent/commands/NAME.md` (the project's, in the workspace) and in
`$XDG_CONFIG_HOME/mmx-agent/commands/NAME.md` (the user's); a project command shadows a user one of
the same name, and the built-in commands (`/help`, `/undo`, ...) cannot be shadowed at all. The
file may start with front matter between `---` lines:

    ---
    description: Review the staged changes
    allowed-tools: bash(git diff *), bash(git log *)
    ---
    Review the staged changes. Focus on $ARGUMENTS.

`$ARGUMENTS` is replaced by what follows the name (without it, the arguments are appended as a
paragraph of their own). `allowed-tools` are permission rules (as for --allow) that hold only while
the command's prompt runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agent.config import user_config_dir

PROJECT_DIR = Path(".mmx-agent") / "commands"
# The interactive UI's own commands: a file of one of these names is never used.
BUILTIN_NAMES = frozenset({"help", "undo", "todo", "compact", "model", "sessions", "expand", "exit", "quit"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MAX_FILE_BYTES = 256 * 1024


class CustomCommandError(ValueError):
    pass


@dataclass(frozen=True)
class CustomCommand:
    name: str
    body: str
    path: Path
    scope: str  # "project" or "user"
    description: str = ""
    allowed_tools: tuple[str, ...] = ()

    def prompt(self, arguments: str) -> str:
        arguments = arguments.strip()
        if "$ARGUMENTS" in self.body:
            return self.body.replace("$ARGUMENTS", arguments)
        return f"{self.body}\n\n{arguments}" if arguments else self.body


def command_dirs(workspace: Path) -> list[tuple[str, Path]]:
    """Where commands are looked for, the one that wins first."""
    return [("project", workspace / PROJECT_DIR), ("user", user_config_dir() / "commands")]


def load_commands(workspace: Path) -> dict[str, CustomCommand]:
    """Every usable command by name; files that cannot be read are left out (load_command says why)."""
    commands: dict[str, CustomCommand] = {}
    for scope, directory in command_dirs(workspace):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.md")):
            name = path.stem
            if name in commands or name in BUILTIN_NAMES or not _NAME.fullmatch(name):
                continue
            try:
                commands[name] = load_command(path, scope)
            except CustomCommandError:
                continue
    return commands


def load_command(path: Path, scope: str) -> CustomCommand:
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            raise CustomCommandError(f"{path}: larger than {_MAX_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CustomCommandError(f"cannot read {path}: {exc}") from None
    fields, body = split_front_matter(text)
    return CustomCommand(
        name=path.stem,
        body=body.strip(),
        path=path,
        scope=scope,
        description=str(fields.get("description", "")).strip(),
        allowed_tools=tuple(_as_list(fields.get("allowed-tools", []))),
    )


def find_invocation(text: str, workspace: Path) -> tuple[CustomCommand, str] | None:
    """`/NAME args` naming a custom command: the command and its arguments; None otherwise."""
    if not text.startswith("/"):
        return None
    name, _, arguments = text[1:].partition(" ")
    name, newline, more = name.partition("\n")  # `/NAME` alone on the first line, arguments below
    if newline:
        arguments = f"{more} {arguments}".strip() if arguments else more
    if name in BUILTIN_NAMES or not _NAME.fullmatch(name):
        return None
    command = load_commands(workspace).get(name)
    return None if command is None else (command, arguments)


def split_front_matter(text: str) -> tuple[dict[str, str | list[str]], str]:
    """The `key: value` lines between a leading `---` and the next one (a value may also be a
    `[a, b]` list or `- item` lines below its key), and the text after them."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        return {}, text  # no closing line: it was not front matter
    fields: dict[str, str | list[str]] = {}
    key = None
    for line in lines[1:end]:
        item = re.match(r"^\s*-\s+(.*)$", line)
        if item and key is not None:
            previous = fields.get(key)
            fields[key] = [*(previous if isinstance(previous, list) else []), _unquote(item.group(1))]
            continue
        key_value = re.match(r"^([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(.*)$", line)
        if key_value:
            key, value = key_value.group(1).lower(), key_value.group(2).strip()
            fields[key] = _unquote(value) if value else []
    return fields, "\n".join(lines[end + 1 :])


def _as_list(value: str | list[str]) -> list[str]:
    if isinstance(value, list):
        return [item for item in value if item]
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return [_unquote(part) for part in _split_outside_parentheses(value) if part.strip()]


def _split_outside_parentheses(text: str) -> list[str]:
    """`bash(git add a, b), read_file` -> the two rules: a comma inside a rule's pattern stays."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
