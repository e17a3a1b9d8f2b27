"""Verification we run ourselves: the project's test command, run at the end of a run that changed files.

The command comes from `--verify` / `verify_command`, else it is detected from the repository as it
was when the session started (the model can rewrite a Makefile or pyproject.toml during the run; the
command we trust was chosen before it could). It runs through the sandbox like the agent's shell:
confined, with a timeout, its output redacted and capped.
"""

from __future__ import annotations

import configparser
import json
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from agent.secrets import Redactor
from sandbox.base import Sandbox, SandboxError

OUTPUT_TAIL_CHARS = 4_000  # what the result and the model's retry message carry of the output
CONFIG_MAX_BYTES = 1_000_000  # a config file bigger than this is not read for detection
# The command npm writes into a new package.json: a test script that only fails.
NPM_PLACEHOLDER = re.compile(r"no test specified")


@dataclass
class VerifyCommand:
    command: str
    source: str  # flag | config | detected
    rule: str = ""  # for a detected command: which file said so


@dataclass
class Verification:
    command: str
    source: str
    rule: str
    exit_code: int | None  # None: it timed out
    passed: bool
    duration_ms: int
    output_tail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        how = "timed out" if self.exit_code is None else f"exit {self.exit_code}"
        return f"verification {'passed' if self.passed else 'FAILED'}: `{self.command}` ({how}, {self.duration_ms} ms)"


def _text(sandbox: Sandbox, name: str) -> str | None:
    path = f"{sandbox.root.rstrip('/')}/{name}"
    try:
        info = sandbox.stat(path)
        if info is None or info.is_dir or info.is_symlink:
            return None
        return sandbox.read_file(path, max_bytes=CONFIG_MAX_BYTES).decode("utf-8", errors="replace")
    except SandboxError:
        return None


def _pyproject(text: str) -> bool:
    try:
        tool = tomllib.loads(text).get("tool", {})
    except tomllib.TOMLDecodeError:
        return False
    return isinstance(tool, dict) and isinstance(tool.get("pytest"), dict) and "ini_options" in tool["pytest"]


def _ini_has(text: str, *sections: str) -> bool:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return False
    return any(parser.has_section(section) for section in sections)


def _npm_test(text: str) -> bool:
    try:
        scripts = json.loads(text).get("scripts", {})
    except (ValueError, AttributeError):
        return False
    test = scripts.get("test") if isinstance(scripts, dict) else None
    return isinstance(test, str) and bool(test.strip()) and not NPM_PLACEHOLDER.search(test)


def _make_target(text: str) -> str | None:
    for target in ("test", "check"):
        if re.search(rf"^{target}\s*:(?!=)", text, re.MULTILINE):
            return target
    return None


# (file, does it say how to test, command, rule shown in the result), in the order they are tried.
RULES: list[tuple[str, Callable[[str], bool], str, str]] = [
    ("pyproject.toml", _pyproject, "python -m pytest -q", "pyproject.toml has [tool.pytest.ini_options]"),
    ("pytest.ini", lambda text: _ini_has(text, "pytest"), "python -m pytest -q", "pytest.ini"),
    (
        "setup.cfg",
        lambda text: _ini_has(text, "tool:pytest"),
        "python -m pytest -q",
        "setup.cfg has [tool:pytest]",
    ),
    ("tox.ini", lambda text: _ini_has(text, "pytest"), "python -m pytest -q", "tox.ini has [pytest]"),
    ("tox.ini", lambda text: _ini_has(text, "tox", "testenv"), "tox", "tox.ini"),
    ("noxfile.py", lambda text: True, "nox", "noxfile.py"),
    ("package.json", _npm_test, "npm test", "package.json has scripts.test"),
    ("go.mod", lambda text: True, "go test ./...", "go.mod"),
    ("Cargo.toml", lambda text: True, "cargo test", "Cargo.toml"),
]


def detect_test_command(sandbox: Sandbox) -> VerifyCommand | None:
    """The repository's own test command, or None when nothing in it says how to test."""
    texts: dict[str, str | None] = {}
    for name, says_so, command, rule in RULES:
        if name not in texts:
            texts[name] = _text(sandbox, name)
        text = texts[name]
        if text is not None and says_so(text):
            return VerifyCommand(command, "detected", rule)
    makefile = _text(sandbox, "Makefile") or _text(sandbox, "makefile")
    target = _make_target(makefile) if makefile is not None else None
    if target is not None:
        return VerifyCommand(f"make {target}", "detected", f"Makefile has a `{target}` target")
    return None


def choose_verify_command(flag: str | None, config: str | None, sandbox: Sandbox) -> VerifyCommand | None:
    if flag:
        return VerifyCommand(flag, "flag")
    if config:
        return VerifyCommand(config, "config")
    return detect_test_command(sandbox)


def run_verification(
    sandbox: Sandbox, chosen: VerifyCommand, *, timeout: float, env: dict[str, str], redactor: Redactor
) -> Verification:
    started = time.monotonic()
    result = sandbox.exec(
        chosen.command, timeout=timeout, cwd=sandbox.root, env=env, max_output=200_000, redactor=redactor
    )
    tail = result.output[-OUTPUT_TAIL_CHARS:]
    return Verification(
        command=chosen.command,
        source=chosen.source,
        rule=chosen.rule,
        exit_code=None if result.timed_out else result.exit_code,
        passed=result.exit_code == 0 and not result.timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
        output_tail=redactor.redact(tail),
    )
