"""One eval job on a fleet node: the single-machine job function, run in a scratch folder.

The head sends the job's folder as OUTPUT holds it; the node copies it into a scratch output
directory, runs the job there exactly as `eval run` does on one machine (its own Docker engine
builds or reuses the images), and hands back the folder as the job left it with the events the job
logged. Nothing is shared by file system: only the head writes OUTPUT.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evals.agents import Agent
from evals.environments import EnvironmentBuilder
from evals.runner import EvalRunner, JobResult, RunOptions
from evals.task import Task


@dataclass
class JobInput:
    run: int
    task: Task
    options: RunOptions  # its output is the head's: only the layout below it is used here
    files: dict[str, bytes]  # the job's folder in OUTPUT, by file name


@dataclass
class JobOutput:
    result: JobResult
    files: dict[str, bytes]  # the job's folder as the job left it
    events: list[dict[str, Any]] = field(default_factory=list)
    node: str = ""


_BUILDER: EnvironmentBuilder | None = None


def _builder(progress: Callable[[str], None]) -> EnvironmentBuilder:
    """One per worker process, as one per run on a single machine (a Ray worker serves one run):
    images found or built, and the engine connection, are not looked up again for every job."""
    global _BUILDER
    if _BUILDER is None:
        _BUILDER = EnvironmentBuilder(progress=progress)
    return _BUILDER


def run_job(job: JobInput, agent: Agent) -> JobOutput:
    """Runs on a node (a Ray task): the job, against a copy of its folder. The agent comes apart
    from the job: the head stores it in Ray once for all jobs (a predictions file can be large)."""
    # The head's stdout carries one JSON object; Ray forwards a worker's stdout there.
    with (
        contextlib.redirect_stdout(sys.stderr),
        tempfile.TemporaryDirectory(prefix="mmx-fleet-job-") as scratch,
    ):
        options = replace(job.options, output=Path(scratch), workers=1)
        runner = EvalRunner([job.task], agent, options)
        runner.builder = _builder(runner.progress.message)
        folder = runner.store.job(job.run, job.task.instance_id)
        folder.path.mkdir(parents=True)
        folder.replace_files(job.files)
        result = runner._job_guarded(job.run, job.task)
        events_file = Path(scratch) / "events.jsonl"
        lines = events_file.read_text(encoding="utf-8").splitlines() if events_file.is_file() else []
        return JobOutput(result, folder.files(), [json.loads(line) for line in lines], socket.gethostname())
