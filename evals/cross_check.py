"""`eval grade OUTPUT --cross-check`: our verdicts against SWE-bench's own grading of the same logs.

Each job that ran its tests left test_output.txt. Its test section (between SWE-bench's
START_TEST_OUTPUT / END_TEST_OUTPUT markers when the eval script prints them, else what followed
`$ bash eval.sh`) goes through swebench's log parser for the task's repository
(MAP_REPO_TO_PARSER; pytest's for a repository it does not know), then through
swebench.harness.grading's get_eval_tests_report and get_resolution_status on the task's
FAIL_TO_PASS / PASS_TO_PASS. Where that verdict differs from ours, the job is reported with the
tests whose outcome the two read differently.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from evals import junit
from evals.datasets import EXTRA_HINT
from evals.run_store import RunStore
from evals.task import Task

LogParser = Callable[[str, Any], dict[str, str]]
EVAL_SCRIPT_HEADER = "$ bash eval.sh\n"
EXIT_TRAILER = re.compile(r"\n\[exit -?\d+\]\s*$")


class CrossCheckUnavailable(ValueError):
    """swebench is not installed."""


def _swebench() -> SimpleNamespace:
    try:
        from swebench.harness import grading
        from swebench.harness.constants import (
            END_TEST_OUTPUT,
            FAIL_ONLY_REPOS,
            FAIL_TO_PASS,
            PASS_TO_PASS,
            START_TEST_OUTPUT,
            EvalType,
            ResolvedStatus,
        )
        from swebench.harness.log_parsers import MAP_REPO_TO_PARSER
        from swebench.harness.log_parsers.python import parse_log_pytest
    except ImportError:
        raise CrossCheckUnavailable(f"--cross-check grades with the swebench package; {EXTRA_HINT}") from None
    return SimpleNamespace(
        grading=grading,
        parsers=MAP_REPO_TO_PARSER,
        pytest_parser=parse_log_pytest,
        fail_only_repos=FAIL_ONLY_REPOS,
        eval_type=EvalType,
        full=ResolvedStatus.FULL.value,
        f2p=FAIL_TO_PASS,
        p2p=PASS_TO_PASS,
        start=START_TEST_OUTPUT,
        end=END_TEST_OUTPUT,
    )


def runner_output(log: str, start_marker: str, end_marker: str) -> str:
    """The test runner's own output inside our test_output.txt."""
    if start_marker in log and end_marker in log:
        return log.split(start_marker, 1)[1].split(end_marker, 1)[0]
    if EVAL_SCRIPT_HEADER in log:
        return EXIT_TRAILER.sub("", log.rsplit(EVAL_SCRIPT_HEADER, 1)[1])
    return log


def parser_for(repo: str) -> LogParser:
    """swebench's parser for the repository, or its pytest parser for one it does not know."""
    sb = _swebench()
    return sb.parsers.get(repo, sb.pytest_parser)


@dataclass
class CrossCheck:
    agree: int = 0
    disagree: list[dict[str, Any]] = field(default_factory=list)
    not_tested: int = 0  # jobs whose tests never ran (no patch, not applied, infrastructure failure)

    def to_json(self) -> dict[str, Any]:
        return {"agree": self.agree, "disagree": self.disagree, "not_tested": self.not_tested}


def swebench_verdict(task: Task, log: str, parser: LogParser) -> tuple[str, dict[str, str]]:
    """(resolution status, the parser's status map) as SWE-bench grades this log."""
    sb = _swebench()
    spec = SimpleNamespace(  # what parsers read of a TestSpec (some need the instance id)
        instance_id=task.instance_id,
        repo=task.repo,
        version=task.version,
        FAIL_TO_PASS=task.FAIL_TO_PASS,
        PASS_TO_PASS=task.PASS_TO_PASS,
    )
    status_map = parser(runner_output(log, sb.start, sb.end), spec)
    if not status_map:  # as get_logs_eval does: the runner may have printed outside the section
        status_map = parser(log, spec)
    eval_type = sb.eval_type.FAIL_ONLY if task.repo in sb.fail_only_repos else sb.eval_type.PASS_AND_FAIL
    report = sb.grading.get_eval_tests_report(
        status_map, {sb.f2p: task.FAIL_TO_PASS, sb.p2p: task.PASS_TO_PASS}, eval_type=eval_type
    )
    return sb.grading.get_resolution_status(report), status_map


def cross_check(output: Path, *, parser: Callable[[str], LogParser] = parser_for) -> CrossCheck:
    """Every tested job of OUTPUT graded again by swebench; `parser` picks the log parser per repo."""
    sb = _swebench()
    store = RunStore(output)
    manifest, tasks = store.read_manifest()
    result = CrossCheck()
    for run in range(1, manifest["runs"] + 1):
        for task in tasks:
            job = store.job(run, task.instance_id)
            entry, grading = job.read_report(), job.read_grading()
            log_path = job.path / "test_output.txt"
            if (
                not entry
                or entry.get("infra_failure")
                or not grading
                or grading.test_exit_code is None
                or not log_path.is_file()
            ):
                result.not_tested += 1
                continue
            log = log_path.read_text(encoding="utf-8", errors="replace")
            status, status_map = swebench_verdict(task, log, parser(task.repo))
            ours = bool(entry.get("resolved"))
            if ours == (status == sb.full):
                result.agree += 1
                continue
            result.disagree.append(
                {
                    "instance_id": task.instance_id,
                    "run": run,
                    "ours": "resolved" if ours else "unresolved",
                    "swebench": status,
                    "tests": _differing_tests(task, grading.outcomes, status_map),
                    "notes": grading.notes,
                }
            )
    return result


def _differing_tests(task: Task, ours: dict[str, str], theirs: dict[str, str]) -> list[dict[str, str]]:
    """The FAIL_TO_PASS / PASS_TO_PASS tests that one side counts as passed and the other not."""
    differing = []
    for test in task.tests:
        our_pass = ours.get(test) == junit.PASSED
        their_pass = theirs.get(test) in ("PASSED", "XFAIL")  # swebench's test_passed
        if our_pass != their_pass:
            differing.append(
                {"test": test, "ours": ours.get(test, "missing"), "swebench": theirs.get(test, "missing")}
            )
    return differing
