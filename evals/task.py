"""One SWE-style task: SWE-bench's instance fields plus where the code and the environment come from.

The SWE-bench fields keep their dataset spelling (FAIL_TO_PASS, ...), so rows of real datasets load
as they are; FAIL_TO_PASS / PASS_TO_PASS may be lists or JSON-encoded strings, as older dataset
files store them. Our additions:

- `environment`: {"python": "3.9" | "3.11" | "3.13", "pip": [pinned requirements],
  "install": [shell commands run in the repository after checkout], "test_cmd": "pytest"}, plus
  what an environment derived from swebench's specs carries (swebench_specs.py): "apt" (Debian
  packages), "pre_install" and "eval_commands" (shell commands), "test_runner" ("pytest": test ids
  as arguments, graded by JUnit; "directives": the spec's test files or modules, graded by the
  log parser), "log_parser" (the repository whose swebench log parser reads the output), "spec"
  and "notes" (where it came from, and what differs from the official environment). A task
  without `environment` gets one derived from the specs when it is run.
- `source`: {"git": URL or path} or {"sdist": "package==version"} (else --repos-dir, else GitHub)
- `fix_release`: {"sdist": "package==version", "patch_files": [...], "test_files": [...]}: the gold
  and test patches are derived from that release's source distribution (see derive.py) instead of
  being stored in the task.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

PYTHON_SUITES = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}  # Debian suite per Python
DEFAULT_PYTHON = "3.11"
DEFAULT_TEST_CMD = "pytest"
# Instance ids name directories in the output: keep them to characters every file system takes.
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]*$")
SDIST_SPEC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
SWE_BENCH_FIELDS = (
    "instance_id",
    "repo",
    "base_commit",
    "problem_statement",
    "hints_text",
    "patch",
    "test_patch",
    "FAIL_TO_PASS",
    "PASS_TO_PASS",
    "version",
    "environment_setup_commit",
    "created_at",
)


class TaskError(ValueError):
    """A task record is malformed; the message names the task and the field."""


TEST_RUNNERS = ("pytest", "directives")
# Optional environment fields (lists of strings, or strings) and their defaults.
EXTRA_LIST_FIELDS = ("apt", "pre_install", "eval_commands", "notes")
EXTRA_STRING_FIELDS = {"test_runner": "pytest", "log_parser": "", "spec": ""}


@dataclass
class Environment:
    python: str = DEFAULT_PYTHON
    pip: list[str] = field(default_factory=list)
    install: list[str] = field(default_factory=list)
    test_cmd: str = DEFAULT_TEST_CMD
    apt: list[str] = field(default_factory=list)  # Debian packages on top of the base image's
    pre_install: list[str] = field(default_factory=list)  # run as root before `install`
    eval_commands: list[str] = field(default_factory=list)  # run before the tests (exports, locales)
    test_runner: str = "pytest"
    log_parser: str = ""  # a repository name in swebench's MAP_REPO_TO_PARSER, or none
    spec: str = ""  # "owner/name version" when derived from swebench's specs
    notes: list[str] = field(default_factory=list)  # how it differs from the official environment

    @property
    def debian_suite(self) -> str:
        return PYTHON_SUITES[self.python]

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "python": self.python,
            "pip": self.pip,
            "install": self.install,
            "test_cmd": self.test_cmd,
        }
        for name in EXTRA_LIST_FIELDS:
            if getattr(self, name):
                record[name] = getattr(self, name)
        for name, default in EXTRA_STRING_FIELDS.items():
            if getattr(self, name) != default:
                record[name] = getattr(self, name)
        return record


@dataclass
class FixRelease:
    """Where a gold and test patch come from when the task does not carry them."""

    sdist: str
    patch_files: list[str]
    test_files: list[str]

    def to_record(self) -> dict[str, Any]:
        return {"sdist": self.sdist, "patch_files": self.patch_files, "test_files": self.test_files}


@dataclass
class Task:
    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str]
    patch: str = ""
    test_patch: str = ""
    hints_text: str = ""
    version: str = ""
    environment_setup_commit: str = ""
    created_at: str = ""
    environment: Environment = field(default_factory=Environment)
    has_environment: bool = True  # False: none given; swebench_specs derives one before a run
    source: dict[str, str] | None = None
    fix_release: FixRelease | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other fields (image, eval_script, ...), kept

    @property
    def tests(self) -> list[str]:
        """Every test the grader runs: FAIL_TO_PASS then PASS_TO_PASS, without repeats."""
        return list(dict.fromkeys([*self.FAIL_TO_PASS, *self.PASS_TO_PASS]))

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {name: getattr(self, name) for name in SWE_BENCH_FIELDS}
        if self.has_environment:
            record["environment"] = self.environment.to_record()
        if self.source is not None:
            record["source"] = dict(self.source)
        if self.fix_release is not None:
            record["fix_release"] = self.fix_release.to_record()
        return {**self.extra, **record}


def _string(record: dict[str, Any], name: str, where: str, *, required: bool = False) -> str:
    value = record.get(name)
    if value is None:
        if required:
            raise TaskError(f"{where}: missing field {name!r}")
        return ""
    if not isinstance(value, str):
        raise TaskError(f"{where}: field {name!r} must be a string, not {type(value).__name__}")
    return value


def _string_list(value: Any, name: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # older SWE-bench files: a JSON-encoded list
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as e:
            raise TaskError(f"{where}: field {name!r} is a string but not a JSON list ({e.msg})") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TaskError(f"{where}: field {name!r} must be a list of strings")
    return value


def _environment(value: Any, where: str) -> Environment:
    if value is None:
        return Environment()
    if not isinstance(value, dict):
        raise TaskError(f"{where}: field 'environment' must be an object")
    unknown = set(value) - {"python", "pip", "install", "test_cmd", *EXTRA_LIST_FIELDS, *EXTRA_STRING_FIELDS}
    if unknown:
        raise TaskError(f"{where}: unknown environment field(s) {sorted(unknown)}")
    python = str(value.get("python", DEFAULT_PYTHON))
    if python not in PYTHON_SUITES:
        raise TaskError(
            f"{where}: environment.python {python!r} is not supported; choose one of {', '.join(PYTHON_SUITES)}"
        )
    test_cmd = value.get("test_cmd", DEFAULT_TEST_CMD)
    if not isinstance(test_cmd, str) or not test_cmd.strip():
        raise TaskError(f"{where}: environment.test_cmd must be a non-empty string")
    strings = {}
    for name, default in EXTRA_STRING_FIELDS.items():
        strings[name] = value.get(name, default)
        if not isinstance(strings[name], str):
            raise TaskError(f"{where}: environment.{name} must be a string")
    if strings["test_runner"] not in TEST_RUNNERS:
        raise TaskError(f"{where}: environment.test_runner must be one of {', '.join(TEST_RUNNERS)}")
    if strings["test_runner"] == "directives" and not strings["log_parser"]:
        raise TaskError(
            f"{where}: environment.test_runner 'directives' needs a log_parser to read its output"
        )
    return Environment(
        python=python,
        pip=_string_list(value.get("pip"), "environment.pip", where),
        install=_string_list(value.get("install"), "environment.install", where),
        test_cmd=test_cmd,
        **{name: _string_list(value.get(name), f"environment.{name}", where) for name in EXTRA_LIST_FIELDS},
        **strings,
    )


def _source(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("git", "sdist"):
        raise TaskError(
            f'{where}: field \'source\' must be {{"git": URL or path}} or {{"sdist": "package==version"}}'
        )
    kind, location = next(iter(value.items()))
    if not isinstance(location, str) or not location:
        raise TaskError(f"{where}: source.{kind} must be a non-empty string")
    if kind == "sdist" and not SDIST_SPEC.match(location):
        raise TaskError(f"{where}: source.sdist must look like 'package==version', not {location!r}")
    return {kind: location}


def _fix_release(value: Any, where: str) -> FixRelease | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TaskError(f"{where}: field 'fix_release' must be an object")
    sdist = value.get("sdist")
    if not isinstance(sdist, str) or not SDIST_SPEC.match(sdist):
        raise TaskError(f"{where}: fix_release.sdist must look like 'package==version'")
    patch_files = _string_list(value.get("patch_files"), "fix_release.patch_files", where)
    test_files = _string_list(value.get("test_files"), "fix_release.test_files", where)
    if not patch_files or not test_files:
        raise TaskError(f"{where}: fix_release needs both patch_files and test_files")
    return FixRelease(sdist, patch_files, test_files)


def parse_task(record: Any, where: str = "task") -> Task:
    """A Task from one record (a dict as in a SWE-bench dataset file); TaskError says what is wrong."""
    if not isinstance(record, dict):
        raise TaskError(f"{where}: a task must be a JSON object, not {type(record).__name__}")
    instance_id = _string(record, "instance_id", where, required=True)
    if not INSTANCE_ID.match(instance_id):
        raise TaskError(f"{where}: instance_id {instance_id!r} may hold only letters, digits and ._+=@-")
    where = f"{where} ({instance_id})"
    source = _source(record.get("source"), where)
    fix_release = _fix_release(record.get("fix_release"), where)
    repo = _string(record, "repo", where)
    if source is None and not re.match(r"^[^/\s]+/[^/\s]+$", repo):
        raise TaskError(f"{where}: field 'repo' must be 'owner/name' (or give a 'source')")
    base_commit = _string(record, "base_commit", where)
    if (source is None or "git" in source) and not base_commit:
        raise TaskError(f"{where}: missing field 'base_commit' (a git source needs one)")
    patch = _string(record, "patch", where)
    test_patch = _string(record, "test_patch", where)
    if fix_release is None and not test_patch.strip():
        raise TaskError(f"{where}: missing 'test_patch' (or a 'fix_release' to derive it from)")
    if fix_release is not None and (patch.strip() or test_patch.strip()):
        raise TaskError(f"{where}: give either 'patch'/'test_patch' or 'fix_release', not both")
    fail_to_pass = _string_list(record.get("FAIL_TO_PASS"), "FAIL_TO_PASS", where)
    if not fail_to_pass:
        raise TaskError(f"{where}: FAIL_TO_PASS is empty: a task needs at least one test the fix makes pass")
    known = {*SWE_BENCH_FIELDS, "environment", "source", "fix_release"}
    return Task(
        instance_id=instance_id,
        repo=repo,
        base_commit=base_commit,
        problem_statement=_string(record, "problem_statement", where, required=True),
        FAIL_TO_PASS=fail_to_pass,
        PASS_TO_PASS=_string_list(record.get("PASS_TO_PASS"), "PASS_TO_PASS", where),
        patch=patch,
        test_patch=test_patch,
        hints_text=_string(record, "hints_text", where),
        version=str(record.get("version") or ""),
        environment_setup_commit=_string(record, "environment_setup_commit", where),
        created_at=str(record.get("created_at") or ""),
        environment=_environment(record.get("environment"), where),
        has_environment=record.get("environment") is not None,
        source=source,
        fix_release=fix_release,
        extra={k: v for k, v in record.items() if k not in known},
    )
