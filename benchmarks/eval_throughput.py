"""Eval throughput: tasks graded per hour with --workers 1 against --workers N, in the same run.

The suite is pypi-fixes with the gold agent (grading only: no model in the loop), images built
beforehand so that only grading is timed; every task is graded `--runs` times in each setting.
Ratio = tasks/hour with N workers / tasks/hour with one.

    python benchmarks/eval_throughput.py [--workers 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from evals.agents import GoldAgent  # noqa: E402
from evals.runner import EvalRunner, RunOptions  # noqa: E402
from evals.suite import load_suite  # noqa: E402


def tasks_per_hour(tasks, workers: int, runs: int, output: Path) -> float:
    options = RunOptions(output=output, workers=workers, runs=runs, force=True)
    summary = EvalRunner(tasks, GoldAgent(), options, console=Console(stderr=True, quiet=True)).run()
    assert summary["mean_resolve_rate"] == 1.0, summary
    return summary["tasks_per_hour"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tasks = load_suite("pypi-fixes")
    with tempfile.TemporaryDirectory(prefix="mmx-eval-bench-") as scratch:
        tasks_per_hour(tasks, 1, 1, Path(scratch, "warm-up"))  # builds or finds every image
        one = tasks_per_hour(tasks, 1, args.runs, Path(scratch, "one"))
        many = tasks_per_hour(tasks, args.workers, args.runs, Path(scratch, "many"))
    print(f"{len(tasks) * args.runs} gradings per setting")
    print(f"--workers 1: {one:.0f} tasks/hour")
    print(f"--workers {args.workers}: {many:.0f} tasks/hour")
    print(f"ratio: {many / one:.2f}")


if __name__ == "__main__":
    main()
