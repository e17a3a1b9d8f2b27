"""Fleet overhead: jobs per hour with --workers 2 on this machine against --ray local:2 (a Ray
cluster of two nodes on this same machine), on the same suite in the same run, and a projection
for N nodes from the fleet's measured time per job.

The suite is pypi-fixes with the gold agent (grading only: no model in the loop), images built
beforehand so that only the jobs are timed; every task runs `--runs` times per setting, and the two
settings alternate over `--rounds` rounds, which one goes first taking turns (medians count). Jobs
per hour are measured over the jobs alone, as `eval run` reports them; the cluster's start is
printed apart.

    python benchmarks/fleet.py [--runs 3] [--rounds 4] [--nodes 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from evals.agents import GoldAgent  # noqa: E402
from evals.fleet import FleetRunner, parse_address  # noqa: E402
from evals.runner import EvalRunner, RunOptions  # noqa: E402
from evals.suite import load_suite  # noqa: E402

QUIET = Console(stderr=True, quiet=True)


def measure(runner: EvalRunner) -> tuple[float, float]:
    """(jobs per hour over the jobs, seconds end to end)."""
    started = time.monotonic()
    summary = runner.run()
    failures = [
        p.read_text() for p in runner.options.output.glob("run-*/*/report.json") if '"kind"' in p.read_text()
    ]
    assert summary["mean_resolve_rate"] == 1.0 and not failures, failures[:1] or summary
    return summary["tasks_per_hour"], time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=2, help="local nodes, and --workers on one machine")
    args = parser.parse_args()
    tasks = load_suite("pypi-fixes")
    jobs = len(tasks) * args.runs
    here: list[float] = []
    fleet: list[float] = []
    fleet_total: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mmx-fleet-bench-") as scratch:

        def options(name: str) -> RunOptions:
            return RunOptions(output=Path(scratch, name), workers=args.nodes, runs=args.runs, force=True)

        EvalRunner(
            tasks, GoldAgent(), replace(options("warm-up"), runs=1), console=QUIET
        ).run()  # every image
        address = parse_address(f"local:{args.nodes}")
        for n in range(args.rounds):

            def on_one_machine(n: int = n) -> None:
                here.append(measure(EvalRunner(tasks, GoldAgent(), options(f"here-{n}"), console=QUIET))[0])

            def on_the_fleet(n: int = n) -> None:
                rate, total = measure(
                    FleetRunner(tasks, GoldAgent(), options(f"fleet-{n}"), address, console=QUIET)
                )
                fleet.append(rate)
                fleet_total.append(total)

            # Which goes first takes turns: the drift of a shared machine falls on both alike.
            for setting in (on_one_machine, on_the_fleet) if n % 2 == 0 else (on_the_fleet, on_one_machine):
                setting()
    one, many = statistics.median(here), statistics.median(fleet)
    ratio = statistics.median(f / h for f, h in zip(fleet, here, strict=True))
    per_job = 3600 / many * args.nodes  # seconds one node spends on a job
    end_to_end = jobs * 3600 / statistics.median(fleet_total)
    print(f"{jobs} jobs per setting ({len(tasks)} tasks x {args.runs} runs), {args.rounds} rounds, medians:")
    print(f"  --workers {args.nodes}:  {one:.0f} jobs/hour")
    print(
        f"  --ray local:{args.nodes}: {many:.0f} jobs/hour (end to end, with the cluster's start: {end_to_end:.0f})"
    )
    print(f"  rounds: --workers {[round(r) for r in here]}, --ray {[round(r) for r in fleet]}")
    print(
        f"the fleet on one machine: {(ratio - 1) * 100:+.1f}% jobs/hour against --workers "
        "(median of the rounds' ratios; target: no worse than -15%)"
    )
    print(
        f"measured: {per_job:.1f} s per job per node (one job at a time per node; the nodes share these cores)"
    )
    print(
        "projection, not a measurement (these tasks, images already on every node, the head not a bottleneck):"
    )
    for nodes in (1, 4, 16, 64):
        print(f"  {nodes:>3} node(s): ~{nodes * 3600 / per_job:.0f} jobs/hour")


if __name__ == "__main__":
    main()
