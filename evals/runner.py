"""Running a suite: images, agent, grading and reports for every (run, task), resumable after a crash.

Output layout (OUTPUT):
    run.json, tasks.jsonl          what was run (tasks with their derived patches: `eval grade` needs them)
    summary.md, summary.json       resolve rate per run, mean ± standard error, pass@k
    events.jsonl                   one line per finished job (append-only)
    run-K/report.json, preds.json  SWE-bench run report and predictions of run K
    run-K/<instance_id>/           patch.diff, trajectory.jsonl (mmx), agent.json, eval.sh,
                                   test_output.txt, junit.xml, grading.json, report.json

A job's report.json is written last and atomically, so it exists only for finished jobs. A rerun
into the same OUTPUT skips a job whose grading key (task, patch hash, instance image id, grader
version) is unchanged, re-runs infrastructure failures, and reuses an mmx agent's finished patch
when its settings and image are unchanged. Results are never keyed by a run id alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agent.backends.base import BackendError
from agent.secrets import redact
from evals import reports
from evals.agents import Agent, AgentOutput
from evals.environments import EnvironmentBuilder, EnvironmentBuildError, InstanceImage
from evals.grading import GRADER_VERSION, Grade, Grader, infra
from evals.sources import SourceError, materialize
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


@dataclass
class JobResult:
    run: int
    instance_id: str
    resolved: bool
    infra_failure: dict[str, str] | None
    cached: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def write_atomic(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    partial.write_bytes(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)
    os.replace(partial, path)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


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


def run_dir(output: Path, run: int) -> Path:
    return output / f"run-{run}"


def read_patch(job_dir: Path) -> str | None:
    agent = read_json(job_dir / "agent.json") or {}
    if agent.get("patch_is_None"):
        return None
    path = job_dir / "patch.diff"
    return path.read_bytes().decode("utf-8", "surrogateescape") if path.is_file() else None


class Reporter:
    """Progress on stderr: a bar when stderr is a terminal, one line per finished job always."""

    def __init__(self, total: int, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("resolved {task.fields[resolved]}, infra {task.fields[infra]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.bar = self.progress.add_task("eval", total=total, resolved=0, infra=0)
        self.resolved = self.infra = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Reporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def finished(self, result: JobResult) -> None:
        with self._lock:
            self.resolved += result.resolved
            self.infra += result.infra_failure is not None
            if result.infra_failure:
                verdict = f"INFRA ({result.infra_failure['kind']}): {result.infra_failure['message'].splitlines()[0][:200]}"
            else:
                verdict = "resolved" if result.resolved else "unresolved"
            cached = " (cached)" if result.cached else ""
            self.message(f"run {result.run} {result.instance_id}: {verdict}{cached} [{result.seconds:.1f} s]")
            self.progress.update(self.bar, advance=1, resolved=self.resolved, infra=self.infra)


class EvalRunner:
    def __init__(
        self, tasks: list[Task], agent: Agent, options: RunOptions, *, console: Console | None = None
    ):
        self.tasks = tasks
        self.agent = agent
        self.options = options
        self.console = console or Console(stderr=True)
        self.reporter: Reporter | None = None
        self.builder = EnvironmentBuilder(progress=self._progress)
        self.grader = Grader(
            timeout=options.timeout, **({"limits": options.limits} if options.limits else {})
        )
        self._events_lock = threading.Lock()

    def _progress(self, text: str) -> None:
        (self.reporter.message if self.reporter else lambda t: self.console.print(t, markup=False))(text)

    # -- the whole run --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Runs every job not already done; returns the summary (also written to OUTPUT)."""
        options = self.options
        options.output.mkdir(parents=True, exist_ok=True)
        self._write_manifest()
        jobs = [(run, task) for run in range(1, options.runs + 1) for task in self.tasks]
        started = time.monotonic()
        results: list[JobResult] = []
        self.reporter = Reporter(len(jobs), self.console)
        self._progress(
            f"{len(jobs)} job(s): {len(self.tasks)} task(s) x {options.runs} run(s), "
            f"{options.workers} at once, into {options.output} (a first run also fetches sources and "
            "builds images)"
        )
        pool = ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="eval")
        with self.reporter:
            pending: set[Future] = {pool.submit(self._job_guarded, run, task) for run, task in jobs}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        result = future.result()
                        results.append(result)
                        self.reporter.finished(result)
            except KeyboardInterrupt:
                # Jobs in flight are abandoned, not awaited: their reports are never written, so
                # a rerun redoes them, and their containers go when this process does.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
        self.reporter = None
        return self.write_reports(wall_seconds=time.monotonic() - started, results=results)

    def _write_manifest(self) -> None:
        output = self.options.output
        write_json(
            output / "run.json",
            {
                "title": self.options.title,
                "agent": self.agent.name,
                "runs": self.options.runs,
                "instance_ids": [t.instance_id for t in self.tasks],
                "timeout": self.options.timeout,
                "grader_version": GRADER_VERSION,
            },
        )
        write_atomic(output / "tasks.jsonl", "".join(json.dumps(saved_record(t)) + "\n" for t in self.tasks))

    def write_reports(
        self, *, wall_seconds: float | None = None, results: list[JobResult] | None = None
    ) -> dict[str, Any]:
        """Run reports, predictions and the summary, from the per-instance files on disk."""
        output, ids = self.options.output, [t.instance_id for t in self.tasks]
        run_reports = []
        for run in range(1, self.options.runs + 1):
            directory = run_dir(output, run)
            entries, patches, preds = {}, {}, {}
            for instance_id in ids:
                job_dir = directory / instance_id
                report = read_json(job_dir / "report.json")
                if report and instance_id in report:
                    entries[instance_id] = report[instance_id]
                patches[instance_id] = read_patch(job_dir)
                if (job_dir / "agent.json").is_file() or patches[instance_id] is not None:
                    preds[instance_id] = {
                        "instance_id": instance_id,
                        "model_name_or_path": self.agent.name,
                        "model_patch": patches[instance_id],
                    }
            run_report = reports.run_report(ids, entries, patches)
            write_json(directory / "report.json", run_report)
            write_json(directory / "preds.json", preds)
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
        write_json(output / "summary.json", data)
        write_atomic(
            output / "summary.md",
            reports.summary_markdown(self.options.title, self.agent.name, summary, run_reports),
        )
        return data

    def _event(self, **fields: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), **fields}) + "\n"
        with self._events_lock, (self.options.output / "events.jsonl").open("a", encoding="utf-8") as f:
            f.write(line)

    # -- one job --------------------------------------------------------------------------------

    def _job_guarded(self, run: int, task: Task) -> JobResult:
        started = time.monotonic()
        try:
            return self._job(run, task, started)
        except Exception as e:  # a bug must cost one job, not the run: record it as such
            detail = redact("".join(traceback.format_exception(e)))
            self._progress(f"run {run} {task.instance_id}: harness error:\n{detail}")
            grade = infra(task.instance_id, "harness", redact(f"{type(e).__name__}: {e}"))
            self._save(run_dir(self.options.output, run) / task.instance_id, grade, key=None, instance=None)
            return JobResult(
                run, task.instance_id, False, grade.infra_failure, False, time.monotonic() - started
            )

    def _job(self, run: int, task: Task, started: float) -> JobResult:
        job_dir = run_dir(self.options.output, run) / task.instance_id
        job_dir.mkdir(parents=True, exist_ok=True)
        previous = read_json(job_dir / "grading.json") or {}
        previous_report = (read_json(job_dir / "report.json") or {}).get(task.instance_id)

        def done(grade: Grade, key: str | None, instance: InstanceImage | None) -> JobResult:
            self._save(job_dir, grade, key=key, instance=instance)
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
            return bool(previous_report) and previous.get("key") == key and not self.options.force

        def cached() -> JobResult:
            return JobResult(
                run, task.instance_id, bool(previous_report.get("resolved")), previous_report.get("infra_failure"),
                True, time.monotonic() - started,
            )  # fmt: skip

        keep_infra = not self.options.rerun_infra and not self.options.force
        if keep_infra and previous_report and previous_report.get("infra_failure"):
            return cached()  # --keep-infra: leave infrastructure failures as they are
        output: AgentOutput | None = None
        if not self.agent.runs_in_container:
            output = self.agent.solve(task, None, job_dir, None)
            if output.patch is None:  # nothing to grade and no image needed
                self._save_agent(job_dir, task, output, None)
                key = grading_key(task, None, None)
                if unchanged(key):
                    return cached()
                grade = Grade(task.instance_id, patch_is_None=True, notes=["no patch was submitted"])
                return done(grade, key, None)
        try:
            source = materialize(
                task, self.options.repos_dir, lambda text: self._progress(f"{task.instance_id}: {text}")
            )
            instance = self.builder.instance_image(task, source)
        except (SourceError, EnvironmentBuildError) as e:
            return done(infra(task.instance_id, "build", str(e)), None, None)
        if output is None:
            output = self._agent_output(task, instance, job_dir)
            if output.infra_failure:
                return done(
                    infra(task.instance_id, output.infra_failure["kind"], output.infra_failure["message"]),
                    None,
                    instance,
                )
        else:
            self._save_agent(job_dir, task, output, instance)
        key = grading_key(task, output.patch, instance)
        if unchanged(key) and not previous_report.get("infra_failure"):
            return cached()
        grade = self.grader.grade(task, instance, output.patch, self.builder.client())
        return done(grade, key, instance)

    def _agent_output(self, task: Task, instance: InstanceImage, job_dir: Path) -> AgentOutput:
        """The in-container agent's patch: reused when the same agent already finished on this image."""
        fingerprint = self.agent.fingerprint(task)
        saved = read_json(job_dir / "agent.json") or {}
        if (
            saved.get("fingerprint") == fingerprint
            and saved.get("instance_image_id") == instance.image_id
            and not saved.get("infra_failure")
        ):
            return AgentOutput(
                read_patch(job_dir), saved.get("status", "done"), None, saved.get("details") or {}
            )
        for stale in ("agent.json", "patch.diff", "trajectory.jsonl"):
            (job_dir / stale).unlink(missing_ok=True)
        try:
            output = self.agent.solve(task, instance, job_dir, self.builder.client())
        except SandboxError as e:
            output = AgentOutput(
                None, "error", {"kind": "daemon", "message": f"the agent's container failed: {e}"}
            )
        except BackendError as e:
            output = AgentOutput(None, "error", {"kind": "backend", "message": str(e)})
        self._save_agent(job_dir, task, output, instance)
        return output

    def _save_agent(
        self, job_dir: Path, task: Task, output: AgentOutput, instance: InstanceImage | None
    ) -> None:
        if output.patch is not None:
            write_atomic(job_dir / "patch.diff", output.patch)
        else:
            (job_dir / "patch.diff").unlink(missing_ok=True)
        write_json(
            job_dir / "agent.json",
            {
                "agent": self.agent.name,
                "fingerprint": self.agent.fingerprint(task),
                "status": output.status,
                "patch_is_None": output.patch is None,
                "infra_failure": output.infra_failure,
                "instance_image_id": instance.image_id if instance else None,
                "details": output.details,
            },
        )

    def _save(self, job_dir: Path, grade: Grade, *, key: str | None, instance: InstanceImage | None) -> None:
        job_dir.mkdir(parents=True, exist_ok=True)
        for name, content in (("eval.sh", grade.eval_script), ("test_output.txt", grade.log)):
            if content:
                write_atomic(job_dir / name, content)
            else:
                (job_dir / name).unlink(missing_ok=True)
        if grade.junit_xml is not None:
            write_atomic(job_dir / "junit.xml", grade.junit_xml)
        else:
            (job_dir / "junit.xml").unlink(missing_ok=True)
        write_json(
            job_dir / "grading.json",
            {
                "key": key,
                "grader_version": GRADER_VERSION,
                "instance_image": instance.tag if instance else None,
                "instance_image_id": instance.image_id if instance else None,
                "snapshot_commit": instance.snapshot_commit if instance else None,
                "apply_method": grade.apply_method,
                "test_exit_code": grade.test_exit_code,
                "outcomes": grade.outcomes,
                "notes": grade.notes,
                "duration_s": grade.duration_s,
                "graded_at": time.time(),
            },
        )
        write_json(job_dir / "report.json", reports.instance_report(grade))  # last: marks the job done
        self._event(
            event="graded",
            run=job_dir.parent.name,
            instance_id=grade.instance_id,
            key=key,
            resolved=grade.resolved,
        )
