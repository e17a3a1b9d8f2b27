"""Validating a suite: the gold patch must resolve every task every time, the unchanged base never,
and no test may change its outcome between identical runs (a flaky test makes a task useless).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evals import junit
from evals.agents import EmptyAgent, GoldAgent
from evals.run_store import RunStore
from evals.runner import EvalRunner, RunOptions
from evals.task import Task


@dataclass
class TaskValidation:
    instance_id: str
    runs: int
    gold_resolved: int = 0
    empty_resolved: int = 0
    infra_failures: int = 0
    flaky_tests: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # agent -> test -> outcomes
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "valid": self.valid}


def _outcomes(output: Path, runs: int, instance_id: str) -> list[dict[str, str] | None]:
    """Each run's outcome per test (None for a run without a usable result)."""
    found = []
    for run in range(1, runs + 1):
        job = RunStore(output).job(run, instance_id)
        report, grading = job.read_report(), job.read_grading()
        found.append(
            None if not report or report.get("infra_failure") else grading.outcomes if grading else {}
        )
    return found


def _resolved_count(output: Path, runs: int, instance_id: str) -> int:
    count = 0
    for run in range(1, runs + 1):
        report = RunStore(output).job(run, instance_id).read_report() or {}
        count += bool(report.get("resolved"))
    return count


def check_task(task: Task, gold_output: Path, empty_output: Path, runs: int) -> TaskValidation:
    check = TaskValidation(task.instance_id, runs)
    check.gold_resolved = _resolved_count(gold_output, runs, task.instance_id)
    check.empty_resolved = _resolved_count(empty_output, runs, task.instance_id)
    for agent, output in (("gold", gold_output), ("empty", empty_output)):
        per_run = _outcomes(output, runs, task.instance_id)
        check.infra_failures += sum(outcomes is None for outcomes in per_run)
        usable = [o for o in per_run if o is not None]
        for test in task.tests:
            seen = [o.get(test, junit.MISSING) for o in usable]
            if len(set(seen)) > 1:
                check.flaky_tests.setdefault(agent, {})[test] = seen
        if agent == "empty" and usable:
            base = usable[0]
            passing = [t for t in task.FAIL_TO_PASS if base.get(t) == junit.PASSED]
            failing = [t for t in task.PASS_TO_PASS if base.get(t) != junit.PASSED]
            if passing:
                check.problems.append(f"FAIL_TO_PASS test(s) pass without the fix: {', '.join(passing[:5])}")
            if failing:
                check.problems.append(
                    f"PASS_TO_PASS test(s) do not pass on the base: {', '.join(failing[:5])}"
                )
    if check.gold_resolved < runs:
        check.problems.append(f"the gold patch resolved it in {check.gold_resolved} of {runs} runs")
    if check.empty_resolved:
        check.problems.append(f"the unchanged base resolved it in {check.empty_resolved} of {runs} runs")
    if check.infra_failures:
        check.problems.append(f"{check.infra_failures} run(s) failed for infrastructure reasons")
    for agent, tests in check.flaky_tests.items():
        check.problems.append(f"flaky with the {agent} patch: {', '.join(list(tests)[:5])}")
    return check


def validate(tasks: list[Task], options: RunOptions, console=None) -> list[TaskValidation]:
    """Runs gold and empty `options.runs` times each under options.output/{gold,empty}; checks every task."""
    outputs = {}
    for agent in (GoldAgent(), EmptyAgent()):
        output = options.output / agent.name
        outputs[agent.name] = output
        agent_options = RunOptions(
            **{**options.__dict__, "output": output, "title": f"validation: {agent.name}"}
        )
        EvalRunner(tasks, agent, agent_options, console=console).run()
    return [check_task(task, outputs["gold"], outputs["empty"], options.runs) for task in tasks]
