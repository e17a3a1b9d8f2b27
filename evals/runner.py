"""Running a suite: images, agent, grading and reports for every (run, task), resumable after a crash.

What lands where is in run_store.py. A rerun into the same OUTPUT skips a job whose grading key
(task, patch hash, instance image id, grader version) is unchanged, re-runs infrastructure
failures, and reuses an mmx agent's finished patch when its settings and image are unchanged.
Results are never keyed by a run id alone.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from agent.backends.base import BackendError
from agent.secrets import redact
from evals import reports
from evals.agents import NO_PREDICTION, Agent, AgentOutput
from evals.environments import EnvironmentBuilder, EnvironmentBuildError, InstanceImage
from evals.grading import GRADER_VERSION, Grade, Grader, infra
from evals.infra_failure import InfraFailure
from evals.progress import RunProgress
from evals.run_store import AgentRecord, GradingRecord, JobDir, RunStore
from evals.sources import SourceError, materialize
from evals.swebench_specs import complete_environments
from evals.task import Task
from sandbox.base import SandboxError
from sandbox.docker import Limits


@dataclass
class RunOptions:
    output: Path
    workers: int = 1
    runs: int = 1
    timeout: float = 1800.0  # per task: the agent's wall time, and again the test run's
    repos_dir: Path | None = None
    rerun_infra: bool = True  # re-run jobs whose last attempt was an infrastructure failure
    force: bool = False  # grade again even when an identical result exists
    limits: Limits | None = None  # grading containers (None: the grader's default)
    title: str = "mmx-agent eval"
    images: str = "local"  # local: built here; swebench: SWE-bench's published instance images


@dataclass
class JobResult:
    run: int
    instance_id: str
    resolved: bool
    infra_failure: InfraFailure | None
    cached: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def patch_sha(patch: str | None) -> str | None:
    return None if patch is None else hashlib.sha256(patch.encode("utf-8", "surrogateescape")).hexdigest()


def grading_key(task: Task, patch: str | None, instance: InstanceImage | None) -> str:
    """Everything a verdict depends on; equal keys mean the cached verdict stands."""
    recipe = [
        GRADER_VERSION,
        task.instance_id,
        patch_sha(patch),
        instance.image_id if instance else None,
        patch_sha(task.test_patch),
        task.FAIL_TO_PASS,
        task.PASS_TO_PASS,
        task.environment.test_cmd,
    ]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()


def saved_record(task: Task) -> dict[str, Any]:
    """The task as run: patches included (derived ones too), so `eval grade` needs no download."""
    record = task.to_record()
    if "fix_release" in record:
        record["derived_from"] = record.pop("fix_release")  # kept for reference, not derived again
    return record


class EvalRunner:
    def __init__(
        self, tasks: list[Task], agent: Agent, options: RunOptions, *, console: Console | None = None
    ):
        self.tasks = tasks
        self.agent = agent
        self.options = options
        self.store = RunStore(options.output)
        self.progress = RunProgress(console)
        if options.images not in ("local", "swebench"):
            raise ValueError(f"--images must be local or swebench, not {options.images!r}")
        # Before anything runs: an instance without a derivable environment is bad input (SpecError).
        complete_environments(tasks, self.progress.message, published=options.images == "swebench")
        self.builder = EnvironmentBuilder(progress=self.progress.message)
        self.grader = Grader(
            timeout=options.timeout, **({"limits": options.limits} if options.limits else {})
        )

    # -- the whole run --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Runs every job not already done; returns the summary (also written to OUTPUT)."""
        options = self.options
        self._write_manifest()
        jobs = [(run, task) for run in range(1, options.runs + 1) for task in self.tasks]
        started = time.monotonic()
        results: list[JobResult] = []
        running = self.progress.running(
            jobs=len(jobs),
            tasks=len(self.tasks),
            runs=options.runs,
            workers=options.workers,
            output=options.output,
        )
        with running:
            for result in self._execute(jobs):
                results.append(result)
                self.progress.finished(result)
        return self.write_reports(wall_seconds=time.monotonic() - started, results=results)

    def _execute(self, jobs: list[tuple[int, Task]]) -> Iterator[JobResult]:
        """Runs the jobs, `workers` at once in this process; yields each result as it finishes."""
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.workers), thread_name_prefix="eval")
        pending: set[Future] = {pool.submit(self._job_guarded, run, task) for run, task in jobs}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except (KeyboardInterrupt, GeneratorExit):
            # Jobs in flight are abandoned, not awaited: their reports are never written, so
            # a rerun redoes them, and their containers go when this process does.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def _write_manifest(self) -> None:
        manifest = {
            "title": self.options.title,
            "agent": self.agent.name,
            "runs": self.options.runs,
            "instance_ids": [t.instance_id for t in self.tasks],
            "timeout": self.options.timeout,
            "grader_version": GRADER_VERSION,
            "images": self.options.images,
        }
        self.store.write_manifest(manifest, [saved_record(t) for t in self.tasks])

    def write_reports(
        self, *, wall_seconds: float | None = None, results: list[JobResult] | None = None
    ) -> dict[str, Any]:
        """Run reports, predictions and the summary, from the per-instance files on disk."""
        ids = [t.instance_id for t in self.tasks]
        run_reports = []
        for run in range(1, self.options.runs + 1):
            entries, patches, preds = {}, {}, {}
            for instance_id in ids:
                job = self.store.job(run, instance_id)
                entry = job.read_report()
                if entry:
                    entries[instance_id] = entry
                patches[instance_id] = job.read_patch()
                agent = job.read_agent()
                # A task the predictions file left out was not submitted (SWE-bench: incomplete).
                if job.has_agent_output() and not (agent and agent.status == NO_PREDICTION):
                    preds[instance_id] = {
                        "instance_id": instance_id,
                        "model_name_or_path": self.agent.name,
                        "model_patch": patches[instance_id],
                    }
            run_report = reports.run_report(ids, entries, patches)
            self.store.write_run_report(run, run_report, preds)
            evaluated = {
                i: reports.swebench_instance_report(i, entries[i])
                for i in ids
                if i in preds
                and (preds[i]["model_patch"] or "")
                and reports.swebench_evaluated(entries.get(i))
            }
            swebench_summary = reports.swebench_run_report(ids, entries, preds)
            self.store.write_swebench_run(run, self.agent.name, swebench_summary, evaluated)
            run_reports.append(run_report)
        summary = reports.summarize(ids, run_reports)
        data = {"title": self.options.title, "agent": self.agent.name, **summary.to_json()}
        if wall_seconds is not None and results is not None:
            graded = sum(not r.cached for r in results)
            data["wall_seconds"] = round(wall_seconds, 1)
            data["jobs_run"] = graded
            data["tasks_per_hour"] = (
                round(graded * 3600 / wall_seconds, 1) if wall_seconds > 0 and graded else None
            )
        markdown = reports.summary_markdown(self.options.title, self.agent.name, summary, run_reports)
        self.store.write_summary(data, markdown)
        return data

    # -- one job --------------------------------------------------------------------------------

    def _job_guarded(self, run: int, task: Task) -> JobResult:
        started = time.monotonic()
        try:
            return self._job(run, task, started)
        except Exception as e:  # a bug must cost one job, not the run: record it as such
            self.progress.harness_error(run, task.instance_id, redact("".join(traceback.format_exception(e))))
            grade = infra(task.instance_id, "harness", redact(f"{type(e).__name__}: {e}"))
            self._save(self.store.job(run, task.instance_id), grade, key=None, instance=None)
            return JobResult(
                run, task.instance_id, False, grade.infra_failure, False, time.monotonic() - started
            )

    def _job(self, run: int, task: Task, started: float) -> JobResult:
        job = self.store.job(run, task.instance_id)
        job.path.mkdir(parents=True, exist_ok=True)
        previous = job.read_grading()
        previous_report = job.read_report()

        def done(grade: Grade, key: str | None, instance: InstanceImage | None) -> JobResult:
            self._save(job, grade, key=key, instance=instance)
            return JobResult(
                run,
                task.instance_id,
                grade.resolved,
                grade.infra_failure,
                False,
                time.monotonic() - started,
                grade.notes,
            )

        def unchanged(key: str | None) -> bool:
            previous_key = previous.key if previous else None
            return bool(previous_report) and previous_key == key and not self.options.force

        def cached() -> JobResult:
            return JobResult(
                run, task.instance_id, bool(previous_report.get("resolved")),
                InfraFailure.from_json(previous_report.get("infra_failure")), True, time.monotonic() - started,
            )  # fmt: skip

        keep_infra = not self.options.rerun_infra and not self.options.force
        if keep_infra and previous_report and previous_report.get("infra_failure"):
            return cached()  # --keep-infra: leave infrastructure failures as they are
        output: AgentOutput | None = None
        if not self.agent.runs_in_container:
            output = self.agent.solve(task, None, job.path, None)
            if output.patch is None:  # nothing to grade and no image needed
                self._save_agent(job, task, output, None)
                key = grading_key(task, None, None)
                if unchanged(key):
                    return cached()
                grade = Grade(task.instance_id, patch_is_None=True, notes=["no patch was submitted"])
                return done(grade, key, None)
        try:
            if self.options.images == "swebench":
                instance = self.builder.published_image(task)
            else:
                source = materialize(task, self.options.repos_dir, self.progress.for_task(task.instance_id))
                instance = self.builder.instance_image(task, source)
        except (SourceError, EnvironmentBuildError) as e:
            return done(infra(task.instance_id, "build", str(e)), None, None)
        if output is None:
            output = self._agent_output(task, instance, job)
            if output.infra_failure:
                return done(Grade(task.instance_id, infra_failure=output.infra_failure), None, instance)
        else:
            self._save_agent(job, task, output, instance)
        key = grading_key(task, output.patch, instance)
        if unchanged(key) and not previous_report.get("infra_failure"):
            return cached()
        grade = self.grader.grade(task, instance, output.patch, self.builder.client())
        return done(grade, key, instance)

    def _agent_output(self, task: Task, instance: InstanceImage, job: JobDir) -> AgentOutput:
        """The in-container agent's patch: reused when the same agent already finished on this image."""
        saved = job.read_agent()
        if (
            saved
            and saved.fingerprint == self.agent.fingerprint(task)
            and saved.instance_image_id == instance.image_id
            and not saved.infra_failure
        ):
            return AgentOutput(job.read_patch(), saved.status or "done", None, saved.details)
        job.forget_agent_output()
        try:
            output = self.agent.solve(task, instance, job.path, self.builder.client())
        except SandboxError as e:
            failure = InfraFailure("daemon", f"the agent's container failed: {e}")
            output = AgentOutput(None, "error", failure)
        except BackendError as e:
            output = AgentOutput(None, "error", InfraFailure("backend", str(e)))
        self._save_agent(job, task, output, instance)
        return output

    def _save_agent(
        self, job: JobDir, task: Task, output: AgentOutput, instance: InstanceImage | None
    ) -> None:
        record = AgentRecord(
            agent=self.agent.name,
            fingerprint=self.agent.fingerprint(task),
            status=output.status,
            patch_is_None=output.patch is None,
            infra_failure=output.infra_failure,
            instance_image_id=instance.image_id if instance else None,
            details=output.details,
        )
        job.save_agent_output(record, output.patch)

    def _save(self, job: JobDir, grade: Grade, *, key: str | None, instance: InstanceImage | None) -> None:
        grading = GradingRecord(
            key=key,
            grader_version=GRADER_VERSION,
            instance_image=instance.tag if instance else None,
            instance_image_id=instance.image_id if instance else None,
            snapshot_commit=instance.snapshot_commit if instance else None,
            apply_method=grade.apply_method,
            test_exit_code=grade.test_exit_code,
            outcomes=grade.outcomes,
            notes=grade.notes,
            duration_s=grade.duration_s,
            graded_at=time.time(),
        )
        job.save_grade(grade, grading, reports.instance_report(grade)[grade.instance_id])
        self.store.append_event(
            event="graded",
            run=job.path.parent.name,
            instance_id=grade.instance_id,
            key=key,
            resolved=grade.resolved,
        )
