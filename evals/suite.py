"""Loading a suite: a JSON file (a task, a list, or a dict of tasks by id), a JSONL or parquet file,
a directory of such files, or a Hugging Face dataset (`hf:NAME[:SPLIT]`, evals/datasets.py).

Built-in suites (evals/suites/<name>) can be named instead of a path: `mmx-agent eval run pypi-fixes`,
and so can the published SWE-bench datasets (`swe-bench-lite`, `swe-bench-verified`, `swe-bench`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evals.datasets import BUILTIN_DATASETS, DatasetError, is_dataset_name, load_hf_rows, read_parquet
from evals.derive import derive_patches
from evals.sources import SourceError
from evals.task import Task, TaskError, parse_task

BUILTIN_SUITES = Path(__file__).parent / "suites"
SUITE_SUFFIXES = (".json", ".jsonl", ".parquet")


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
    known += sorted(BUILTIN_DATASETS)
    raise SuiteError(
        f"no suite at {str(name)!r} (not a path or hf:NAME[:SPLIT]; built-in suites: {', '.join(known)})"
    )


def read_rows(path: Path) -> Iterable[tuple[Any, str]]:
    """(record, where) for each task record in one file."""
    if path.suffix == ".parquet":
        try:
            rows = read_parquet(path)
        except DatasetError as e:
            raise SuiteError(str(e)) from None
        for index, row in enumerate(rows):
            yield row, f"{path}[{index}]"
        return
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
    elif (
        isinstance(data, dict)
        and "instance_id" not in data
        and data
        and all(isinstance(v, dict) for v in data.values())
    ):
        for key, record in data.items():  # a dict of instances by id
            yield {"instance_id": key, **record}, f"{path}[{key!r}]"
    else:
        yield data, str(path)


def _records(name: str | Path) -> tuple[str, Iterable[tuple[Any, str]]]:
    """(what the suite is called in messages, its records with where each comes from)."""
    if isinstance(name, str) and is_dataset_name(name) and not Path(name).exists():
        try:
            rows = load_hf_rows(name)
        except DatasetError as e:
            raise SuiteError(str(e)) from None
        return name, ((row, f"{name}[{index}]") for index, row in enumerate(rows))
    path = resolve_suite_path(name)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUITE_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise SuiteError(f"{path}: no .json, .jsonl or .parquet task files in this directory")
    else:
        files = [path]
    return str(path), (item for file in files for item in read_rows(file))


def load_tasks(path: str | Path) -> list[Task]:
    """The suite's tasks as written (no downloads but a named dataset's): a SuiteError or TaskError."""
    path, records = _records(path)
    tasks: list[Task] = []
    seen: dict[str, str] = {}
    for record, where in records:
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


def parse_slice(text: str) -> slice:
    """`START:STOP[:STEP]` as Python writes a slice (`0:50`, `:10`, `100:`, `::2`)."""
    parts = text.strip().split(":")
    if not 2 <= len(parts) <= 3:
        raise SuiteError(f"--slice {text!r}: use Python's slice syntax START:STOP[:STEP], e.g. 0:50")
    try:
        bounds = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise SuiteError(f"--slice {text!r}: START, STOP and STEP must be integers (or empty)") from None
    if len(bounds) == 3 and bounds[2] == 0:
        raise SuiteError(f"--slice {text!r}: the step cannot be zero")
    return slice(*bounds)


def select(
    tasks: list[Task],
    instance_ids: list[str] | None,
    *,
    slice_spec: str | None = None,
    shuffle_seed: int | None = None,
) -> list[Task]:
    """The tasks named (in suite order), then shuffled with the seed, then sliced.

    A SuiteError names any id the suite lacks, or a bad slice.
    """
    chosen = _by_ids(tasks, instance_ids)
    window = parse_slice(slice_spec) if slice_spec is not None else None
    if shuffle_seed is not None:
        chosen = list(chosen)
        random.Random(shuffle_seed).shuffle(chosen)  # the same seed, the same order, everywhere
    if window is not None:
        chosen = chosen[window]
        if not chosen:
            raise SuiteError(f"--slice {slice_spec!r} selects no task (of {len(tasks)})")
    return chosen


def _by_ids(tasks: list[Task], instance_ids: list[str] | None) -> list[Task]:
    if not instance_ids:
        return tasks
    wanted = list(dict.fromkeys(i.strip() for item in instance_ids for i in item.split(",") if i.strip()))
    known = {task.instance_id for task in tasks}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise SuiteError(f"instance id(s) not in the suite: {', '.join(unknown)}")
    return [task for task in tasks if task.instance_id in wanted]


def load_suite(
    path: str | Path,
    instance_ids: list[str] | None = None,
    *,
    slice_spec: str | None = None,
    shuffle_seed: int | None = None,
) -> list[Task]:
    """Tasks ready to run: selected, with gold and test patches derived where a task asks for it."""
    if slice_spec is not None:
        parse_slice(slice_spec)  # bad usage is told before a dataset is loaded
    tasks = select(load_tasks(path), instance_ids, slice_spec=slice_spec, shuffle_seed=shuffle_seed)
    for task in tasks:
        try:
            derive_patches(task)
        except SourceError as e:
            raise SuiteError(f"{task.instance_id}: cannot derive its patches: {e}") from None
    return tasks


__all__ = [
    "SuiteError",
    "TaskError",
    "load_suite",
    "load_tasks",
    "parse_slice",
    "read_rows",
    "resolve_suite_path",
    "select",
]
