"""What an eval run prints on stderr while it runs: a bar when stderr is a terminal, one line per
finished job always, and in between the messages of fetching sources and building images."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from evals.infra_failure import InfraFailure


class FinishedJob(Protocol):
    run: int
    instance_id: str
    resolved: bool
    infra_failure: InfraFailure | None
    cached: bool
    seconds: float


class RunProgress:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._bar: tuple[Progress, TaskID] | None = None  # while jobs run: the bar and its task
        self.resolved = self.infra = 0
        self._lock = threading.Lock()

    def message(self, text: str) -> None:
        # The same console the bar draws on, so a line printed while it runs lands above it.
        self.console.print(text, markup=False, highlight=False)

    def for_task(self, instance_id: str) -> Callable[[str], None]:
        """Messages about one task (a clone, a download), prefixed with its id."""
        return lambda text: self.message(f"{instance_id}: {text}")

    @contextmanager
    def running(self, *, jobs: int, tasks: int, runs: int, workers: int, output: Path) -> Iterator[None]:
        """The bar over `jobs` jobs, announced by the run's first line."""
        self.message(
            f"{jobs} job(s): {tasks} task(s) x {runs} run(s), {workers} at once, into {output} "
            "(a first run also fetches sources and builds images)"
        )
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("resolved {task.fields[resolved]}, infra {task.fields[infra]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.resolved = self.infra = 0
        self._bar = (progress, progress.add_task("eval", total=jobs, resolved=0, infra=0))
        progress.start()
        try:
            yield
        finally:
            progress.stop()
            self._bar = None

    def harness_error(self, run: int, instance_id: str, detail: str) -> None:
        self.message(f"run {run} {instance_id}: harness error:\n{detail}")

    def finished(self, job: FinishedJob) -> None:
        with self._lock:
            self.resolved += job.resolved
            self.infra += job.infra_failure is not None
            if job.infra_failure:
                verdict = f"INFRA ({job.infra_failure.kind}): {job.infra_failure.headline}"
            else:
                verdict = "resolved" if job.resolved else "unresolved"
            cached = " (cached)" if job.cached else ""
            self.message(f"run {job.run} {job.instance_id}: {verdict}{cached} [{job.seconds:.1f} s]")
            if self._bar:
                progress, bar = self._bar
                progress.update(bar, advance=1, resolved=self.resolved, infra=self.infra)
