"""`eval grade OUTPUT`: grade the patches an earlier run saved, again, without running any agent.

In fresh containers (images rebuilt when missing), or with --from-logs by re-reading each task's
saved JUnit report and exit status (no Docker at all: for a changed verdict rule, say).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from evals.agents import AgentOutput
from evals.grading import evaluate, verdict
from evals.junit import JUnitError, outcomes_for
from evals.run_store import JobDir, RunStore
from evals.runner import EvalRunner, RunOptions
from evals.task import Task


class SavedPatchAgent:
    """Answers with the patch saved in the job directory, and leaves the agent's files as they are."""

    runs_in_container = False
    keeps_saved_outputs = True

    def __init__(self, name: str):
        self.name = name

    def fingerprint(self, task: Task) -> str:
        return "saved"

    def solve(self, task, instance, workdir: Path, client) -> AgentOutput:
        job = JobDir(workdir, task.instance_id)
        if not job.has_agent_output():
            return AgentOutput(None, "missing")
        saved = job.read_agent()
        if saved is None:
            return AgentOutput(job.read_patch(), "submitted")
        return AgentOutput(job.read_patch(), saved.status or "submitted", None, saved.details)


def _from_logs(store: RunStore, runs: int, tasks: list[Task]) -> None:
    for run in range(1, runs + 1):
        for task in tasks:
            job = store.job(run, task.instance_id)
            entry, grading = job.read_report(), job.read_grading()
            if not entry or not grading or entry.get("infra_failure") or grading.test_exit_code is None:
                continue  # nothing was tested: nothing to re-read
            notes = [n for n in grading.notes if "did not pass" not in n and "exited" not in n]
            if task.environment.log_parser or task.environment.test_runner != "pytest":
                # Spec environments: the saved output is read again, by the log parser too.
                verdicts = ("no usable JUnit report", "tampering:", "swebench's log parser failed")
                notes = [n for n in notes if not n.startswith(verdicts)]
                junit_xml: bytes | str | None = None
                if task.environment.test_runner == "pytest":
                    try:
                        junit_xml = job.read_junit()
                    except OSError as e:
                        junit_xml = f"cannot read it: {e}"
                output_file = job.path / "test_output.txt"
                test_output = output_file.read_text(errors="replace") if output_file.is_file() else ""
                outcomes, resolved, tests_status, verdict_notes = verdict(
                    task, grading.test_exit_code, junit_xml, test_output
                )
                entry.update(resolved=resolved, tests_status=tests_status)
                job.save_verdict(replace(grading, outcomes=outcomes, notes=notes + verdict_notes), entry)
                continue
            try:
                outcomes = outcomes_for(task.tests, job.read_junit())
            except (OSError, JUnitError) as e:
                outcomes = dict.fromkeys(task.tests, "missing")
                notes.append(f"no usable JUnit report, so no test counts as passed: {e}")
            resolved, tests_status, verdict_notes = evaluate(task, outcomes, grading.test_exit_code)
            entry.update(resolved=resolved, tests_status=tests_status)
            job.save_verdict(replace(grading, outcomes=outcomes, notes=notes + verdict_notes), entry)


def regrade(
    output: Path,
    *,
    from_logs: bool = False,
    repos_dir: Path | None = None,
    workers: int = 1,
    timeout: float | None = None,
) -> dict[str, Any]:
    store = RunStore(output)
    manifest, tasks = store.read_manifest()
    options = RunOptions(
        output=output,
        workers=workers,
        runs=manifest["runs"],
        timeout=timeout or manifest.get("timeout") or 1800.0,
        repos_dir=repos_dir,
        force=True,
        title=manifest.get("title", "mmx-agent eval"),
        images=manifest.get("images", "local"),
    )
    runner = EvalRunner(tasks, SavedPatchAgent(manifest["agent"]), options)
    if from_logs:
        _from_logs(store, manifest["runs"], tasks)
        return runner.write_reports()
    return runner.run()
