"""Loading a suite: a JSON list, a JSONL file, or a directory of task files (each a task or a list).

Built-in suites (evals/suites/<name>) can be named instead of a path: `mmx-agent eval run pypi-fixes`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evals.derive import derive_patches
from evals.sources import SourceError
from evals.task import Task, TaskError, parse_task

BUILTIN_SUITES = Path(__file__).parent / "suites"


class SuiteError(ValueError):
    """The suite cannot be read; the message names the file (and line)."""


def resolve_suite_path(name: str | Path) -> Path:
    path = Path(name)
    if path.exists():
        return path
    builtin = BUILTIN_SUITES / str(name)
    if builtin.exists():
        return builtin
    known = (
        sorted(p.name for p in BUILTIN_SUITES.iterdir() if not p.name.startswith((".", "_")))
        if BUILTIN_SUITES.is_dir()
        else []
    )
    raise SuiteError(f"no suite at {str(name)!r} (not a path; built-in suites: {', '.join(known) or 'none'})")


def _records_of_file(path: Path) -> Iterable[tuple[Any, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SuiteError(f"cannot read {path}: {e}") from None
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line), f"{path}:{number}"
                except json.JSONDecodeError as e:
                    raise SuiteError(f"{path}:{number}: not JSON ({e.msg})") from None
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SuiteError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, list):
        for index, record in enumerate(data):
            yield record, f"{path}[{index}]"
    else:
        yield data, str(path)


def load_tasks(path: str | Path) -> list[Task]:
    """The suite's tasks as written (no downloads): a SuiteError or TaskError for bad input."""
    path = resolve_suite_path(path)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and not p.name.startswith(".")
        )
        if not files:
            raise SuiteError(f"{path}: no .json or .jsonl task files in this directory")
    else:
        files = [path]
    tasks: list[Task] = []
    seen: dict[str, str] = {}
    for file in files:
        for record, where in _records_of_file(file):
            task = parse_task(record, where)
            if task.instance_id in seen:
                raise SuiteError(
                    f"{where}: instance_id {task.instance_id!r} already appears in {seen[task.instance_id]}"
                )
            seen[task.instance_id] = where
            tasks.append(task)
    if not tasks:
        raise SuiteError(f"{path}: the suite holds no tasks")
    return tasks


def select(tasks: list[Task], instance_ids: list[str] | None) -> list[Task]:
    """The tasks named (in suite order); a SuiteError naming any id the suite lacks."""
    if not instance_ids:
        return tasks
    wanted = list(dict.fromkeys(i.strip() for item in instance_ids for i in item.split(",") if i.strip()))
    known = {task.instance_id for task in tasks}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise SuiteError(f"instance id(s) not in the suite: {', '.join(unknown)}")
    return [task for task in tasks if task.instance_id in wanted]


def load_suite(path: str | Path, instance_ids: list[str] | None = None) -> list[Task]:
    """Tasks ready to run: selected, with gold and test patches derived where a task asks for it."""
    tasks = select(load_tasks(path), instance_ids)
    for task in tasks:
        try:
            derive_patches(task)
        except SourceError as e:
            raise SuiteError(f"{task.instance_id}: cannot derive its patches: {e}") from None
    return tasks


__all__ = ["SuiteError", "TaskError", "load_suite", "load_tasks", "resolve_suite_path", "select"]
