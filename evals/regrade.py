"""`eval grade OUTPUT`: grade the patches an earlier run saved, again, without running any agent.

In fresh containers (images rebuilt when missing), or with --from-logs by re-reading each task's
saved JUnit report and exit status (no Docker at all: for a changed verdict rule, say).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.agents import AgentOutput
from evals.grading import evaluate
from evals.junit import JUnitError, outcomes_for
from evals.runner import EvalRunner, RunOptions, read_json, read_patch, run_dir, write_json
from evals.task import Task, parse_task


class SavedPatchAgent:
    """Answers with the patch saved in the job directory, and leaves the agent's files as they are."""

    runs_in_container = False
    keeps_saved_outputs = True

    def __init__(self, name: str):
        self.name = name

    def fingerprint(self, task: Task) -> str:
        return "saved"

    def solve(self, task, instance, workdir: Path, client) -> AgentOutput:
        saved = read_json(workdir / "agent.json") or {}
        if not saved and not (workdir / "patch.diff").is_file():
            return AgentOutput(None, "missing")
        return AgentOutput(
            read_patch(workdir), saved.get("status", "submitted"), None, saved.get("details") or {}
        )


def _load_run(output: Path) -> tuple[dict[str, Any], list[Task]]:
    manifest = read_json(output / "run.json")
    tasks_file = output / "tasks.jsonl"
    if not manifest or not tasks_file.is_file():
        raise ValueError(f"{output} is not an `eval run` output directory (no run.json or tasks.jsonl)")
    lines = tasks_file.read_text(encoding="utf-8").splitlines()
    tasks = [
        parse_task(json.loads(line), f"{tasks_file}:{n}") for n, line in enumerate(lines, 1) if line.strip()
    ]
    return manifest, tasks


def _from_logs(output: Path, manifest: dict[str, Any], tasks: list[Task]) -> None:
    for run in range(1, manifest["runs"] + 1):
        for task in tasks:
            job_dir = run_dir(output, run) / task.instance_id
            report = read_json(job_dir / "report.json") or {}
            entry, grading = report.get(task.instance_id), read_json(job_dir / "grading.json")
            if (
                not entry
                or not grading
                or entry.get("infra_failure")
                or grading.get("test_exit_code") is None
            ):
                continue  # nothing was tested: nothing to re-read
            notes = [n for n in grading.get("notes", []) if "did not pass" not in n and "exited" not in n]
            try:
                outcomes = outcomes_for(task.tests, (job_dir / "junit.xml").read_bytes())
            except (OSError, JUnitError) as e:
                outcomes = dict.fromkeys(task.tests, "missing")
                notes.append(f"no usable JUnit report, so no test counts as passed: {e}")
            resolved, tests_status, verdict_notes = evaluate(task, outcomes, grading["test_exit_code"])
            entry.update(resolved=resolved, tests_status=tests_status)
            write_json(
                job_dir / "grading.json", {**grading, "outcomes": outcomes, "notes": notes + verdict_notes}
            )
            write_json(job_dir / "report.json", {task.instance_id: entry})


def regrade(
    output: Path,
    *,
    from_logs: bool = False,
    repos_dir: Path | None = None,
    workers: int = 1,
    timeout: float | None = None,
) -> dict[str, Any]:
    manifest, tasks = _load_run(output)
    options = RunOptions(
        output=output,
        workers=workers,
        runs=manifest["runs"],
        timeout=timeout or manifest.get("timeout") or 1800.0,
        repos_dir=repos_dir,
        force=True,
        title=manifest.get("title", "mmx-agent eval"),
    )
    runner = EvalRunner(tasks, SavedPatchAgent(manifest["agent"]), options)
    if from_logs:
        _from_logs(output, manifest, tasks)
        return runner.write_reports()
    return runner.run()
