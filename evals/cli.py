"""`mmx-agent eval ...`: run a suite, validate a suite, re-grade saved outputs, render a report.

stdout carries one JSON object (the summary, the validation verdict, or the report files
written); progress, one line per finished task, and errors go to stderr. Exit status: 0 done (whatever the resolve rate), 1 some
tasks hit infrastructure failures (run the same command again to retry them) or a suite is not
valid, 2 bad usage or input, 3 no Docker engine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import typer

from agent.exit_codes import ExitCode
from sandbox.cli import positive_size

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Known errors become one line on stderr and an exit status, not a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from evals.agents import PredictionsError
        from evals.suite import SuiteError
        from evals.task import TaskError
        from sandbox.engine import DockerUnavailable

        try:
            return command(*args, **kwargs)
        except (SuiteError, TaskError, PredictionsError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(ExitCode.USAGE) from None
        except DockerUnavailable as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(ExitCode.NO_DOCKER) from None

    return wrapper


def _check_engine() -> None:
    from sandbox.engine import connect

    connect()  # DockerUnavailable with what to do, before anything is built


def _abandon() -> None:
    """Ctrl-C: leave at once. Finished tasks are saved; the same command resumes the rest."""
    typer.echo("interrupted: finished tasks are saved; run the same command again to resume", err=True)
    sys.stderr.flush()
    os._exit(130)  # not waiting for running tasks: their containers go with this process


def _emit(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False))


def _settings(flags: dict[str, Any]):
    from agent.config import ConfigError, load_settings

    try:
        return load_settings(Path.cwd(), flags)
    except ConfigError as e:
        raise ValueError(str(e)) from None


@app.command()
@_reports_errors
def run(
    suite: str = typer.Argument(
        ...,
        help="Suite: a JSON, JSONL or parquet file of instances, a directory of them, hf:NAME[:SPLIT], "
        "or a built-in name (pypi-fixes, swe-bench-lite, swe-bench-verified, swe-bench).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (rerun into it to resume)."),
    agent: str = typer.Option("mmx", "--agent", help="mmx | gold | empty."),
    predictions: Path = typer.Option(
        None,
        "--predictions",
        exists=True,
        dir_okay=False,
        help="Grade these SWE-bench predictions instead of running an agent.",
    ),
    repos_dir: Path = typer.Option(
        None,
        "--repos-dir",
        exists=True,
        file_okay=False,
        help="Directory of <owner>__<name> git repositories or mirrors.",
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Tasks run at once."),
    runs: int = typer.Option(
        1, "--runs", min=1, help="Run every task this many times (mean, standard error, pass@k)."
    ),
    instance_ids: list[str] = typer.Option(
        None, "--instance-ids", help="Only these tasks (repeat or comma-separate)."
    ),
    slice_spec: str = typer.Option(
        None, "--slice", help="Only tasks START:STOP[:STEP] of the suite (after --instance-ids, --shuffle)."
    ),
    shuffle: int = typer.Option(None, "--shuffle", help="Shuffle the tasks with this seed (before --slice)."),
    timeout: float = typer.Option(
        1800.0, "--timeout", min=1, help="Seconds per task for the agent, and again for the test run."
    ),
    force: bool = typer.Option(False, "--force", help="Grade again even where an identical result exists."),
    rerun_infra: bool = typer.Option(
        True,
        "--rerun-infra/--keep-infra",
        help="Retry tasks whose last attempt failed for infrastructure reasons.",
    ),
    memory: str = typer.Option(
        "4g", "--memory", callback=positive_size, help="Memory limit of each container (Docker units)."
    ),
    backend: str = typer.Option(None, "--backend", help="mmx agent: the model backend (as for `mmx-agent`)."),
    model: str = typer.Option(None, "--model", help="mmx agent: model name or checkpoint directory."),
    base_url: str = typer.Option(None, "--base-url", help="mmx agent: the endpoint's /v1 root."),
    replay: str = typer.Option(None, "--replay", help="mmx agent: replay file for --backend replay."),
    max_turns: int = typer.Option(None, "--max-turns", help="mmx agent: most model rounds per task."),
    images: str = typer.Option(
        "local", "--images", help="local: images built here; swebench: SWE-bench's published instance images."
    ),
    ray: str = typer.Option(
        None,
        "--ray",
        help="Run the jobs on a Ray cluster: auto, ray://host:port, host:port, or local[:N] "
        "(a throwaway cluster of N nodes here). Needs the extra mmx-agent[fleet].",
    ),
) -> None:
    """Run a suite with an agent (or grade predictions) in Docker sandboxes; print the summary as JSON."""
    from agent.backends.base import BackendError
    from evals.agents import make_agent
    from evals.runner import RunOptions
    from evals.suite import load_suite
    from evals.swebench_specs import check_derivable
    from sandbox.docker import Limits

    if predictions is not None and agent not in ("mmx",):
        raise ValueError("give either --agent or --predictions, not both")
    tasks = load_suite(suite, instance_ids, slice_spec=slice_spec, shuffle_seed=shuffle)
    check_derivable(tasks)  # bad input (exit 2) before the engine is asked for anything
    settings = None
    if predictions is None and agent == "mmx":
        flags = {
            "backend": backend,
            "model": model,
            "base_url": base_url,
            "replay": replay,
            "max_turns": max_turns,
        }
        settings = _settings(flags)
    fleet = _fleet_address(ray)
    if fleet is None:  # on a cluster the nodes' engines do the work, not this machine's
        _check_engine()
    try:
        chosen = make_agent(agent, settings=settings, predictions=predictions, timeout=timeout)
    except BackendError as e:  # the backend's own configuration errors (no API key, no replay file)
        raise ValueError(f"the mmx agent cannot start: {e}") from None
    options = RunOptions(
        output=output,
        workers=workers,
        runs=runs,
        timeout=timeout,
        repos_dir=repos_dir,
        rerun_infra=rerun_infra,
        force=force,
        limits=Limits(cpus=2.0, memory=memory, pids=2048, disk=None),
        title=f"{Path(suite).name}: {chosen.name}",
        images=images,
    )
    try:
        summary = _runner(tasks, chosen, options, fleet).run()
    except KeyboardInterrupt:
        _abandon()
    _emit({"output": str(output), **summary})
    if summary["infra_failures"]:
        raise typer.Exit(ExitCode.ERROR)


def _fleet_address(text: str | None):
    if text is None:
        return None
    from evals.fleet import import_ray, parse_address

    address = parse_address(text)
    import_ray()  # the missing extra is named before any work starts
    return address


def _runner(tasks, agent, options, fleet):
    from evals.runner import EvalRunner

    if fleet is None:
        return EvalRunner(tasks, agent, options)
    from evals.fleet import FleetRunner

    return FleetRunner(tasks, agent, options, fleet)


@app.command()
@_reports_errors
def validate(
    suite: str = typer.Argument(..., help="Suite to validate (path or built-in name)."),
    runs: int = typer.Option(
        3, "--runs", min=1, help="Runs of the gold patch and of the unchanged base each."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Keep the runs here (default: a temporary directory)."
    ),
    repos_dir: Path = typer.Option(
        None, "--repos-dir", exists=True, file_okay=False, help="Directory of <owner>__<name> repositories."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Tasks run at once."),
    instance_ids: list[str] = typer.Option(None, "--instance-ids", help="Only these tasks."),
    slice_spec: str = typer.Option(None, "--slice", help="Only tasks START:STOP[:STEP] of the suite."),
    shuffle: int = typer.Option(None, "--shuffle", help="Shuffle the tasks with this seed (before --slice)."),
    timeout: float = typer.Option(1800.0, "--timeout", min=1, help="Seconds per test run."),
    images: str = typer.Option(
        "local", "--images", help="local: images built here; swebench: SWE-bench's published instance images."
    ),
) -> None:
    """Check a suite: gold resolves every task every run, the base none, and no test is flaky."""
    from evals.runner import RunOptions
    from evals.suite import load_suite
    from evals.swebench_specs import check_derivable
    from evals.validation import validate as validate_suite

    tasks = load_suite(suite, instance_ids, slice_spec=slice_spec, shuffle_seed=shuffle)
    check_derivable(tasks)
    _check_engine()
    with tempfile.TemporaryDirectory(prefix="mmx-validate-") as scratch:
        base = output or Path(scratch)
        options = RunOptions(
            output=base,
            workers=workers,
            runs=runs,
            timeout=timeout,
            repos_dir=repos_dir,
            force=True,
            images=images,
        )
        try:
            checks = validate_suite(tasks, options)
        except KeyboardInterrupt:
            _abandon()
    for check in checks:
        mark = "ok     " if check.valid else "INVALID"
        typer.echo(
            f"{mark} {check.instance_id}: gold {check.gold_resolved}/{runs}, base {check.empty_resolved}/{runs}"
            + "".join(f"\n        {problem}" for problem in check.problems),
            err=True,
        )
    valid = all(check.valid for check in checks)
    _emit({"valid": valid, "runs": runs, "tasks": [check.to_json() for check in checks]})
    if not valid:
        raise typer.Exit(ExitCode.ERROR)


def _cross_check(output: Path, *, from_logs: bool) -> None:
    from evals.cross_check import cross_check
    from evals.regrade import regrade

    summary = regrade(output, from_logs=True) if from_logs else {}
    result = cross_check(output)
    _emit({"output": str(output), **summary, "cross_check": result.to_json()})
    for item in result.disagree:
        typer.echo(
            f"disagree run-{item['run']}/{item['instance_id']}: ours {item['ours']}, swebench {item['swebench']}",
            err=True,
        )
    if result.disagree:
        raise typer.Exit(ExitCode.ERROR)


@app.command()
@_reports_errors
def grade(
    output: Path = typer.Argument(..., exists=True, file_okay=False, help="An `eval run` output directory."),
    from_logs: bool = typer.Option(
        False, "--from-logs", help="Re-evaluate the saved JUnit reports only (no Docker)."
    ),
    repos_dir: Path = typer.Option(
        None,
        "--repos-dir",
        exists=True,
        file_okay=False,
        help="Directory of <owner>__<name> repositories (to rebuild images).",
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Tasks graded at once."),
    timeout: float = typer.Option(
        None, "--timeout", min=1, help="Seconds per test run (default: the run's)."
    ),
    cross_check: bool = typer.Option(
        False,
        "--cross-check",
        help="Grade the saved test logs again with swebench's own grading and report where it disagrees "
        "(no Docker; after --from-logs when both are given).",
    ),
) -> None:
    """Re-grade the patches saved in an output directory (in fresh containers, or from saved logs)."""
    from evals.regrade import regrade

    if cross_check:
        _cross_check(output, from_logs=from_logs)
        return
    try:
        summary = regrade(output, from_logs=from_logs, repos_dir=repos_dir, workers=workers, timeout=timeout)
    except KeyboardInterrupt:
        _abandon()
    _emit({"output": str(output), **summary})
    if summary["infra_failures"]:
        raise typer.Exit(ExitCode.ERROR)


@app.command()
@_reports_errors
def report(
    outputs: list[Path] = typer.Argument(
        ...,
        metavar="OUTPUT",
        help="`eval run` output directories; with two or more, each is compared with the first.",
    ),
    html: Path = typer.Option(None, "--html", help="Write the self-contained HTML report here."),
    markdown: Path = typer.Option(None, "--markdown", help="Write the summary tables in Markdown here."),
    trajectories: bool = typer.Option(
        True, "--trajectories/--no-trajectories", help="Include each job's trajectory in the HTML page."
    ),
) -> None:
    """Render eval outputs as one offline HTML page (and Markdown tables); print the files written as JSON."""
    from evals.report import missing_dependencies

    if html is None and markdown is None:
        raise ValueError("give --html FILE and/or --markdown FILE")
    if missing := missing_dependencies():
        raise ValueError(
            f"the report needs {', '.join(missing)}: install the extra with pip install 'mmx-agent[report]'"
        )
    from evals.report.build import write_reports

    try:
        written = write_reports(
            list(outputs), html_path=html, markdown_path=markdown, trajectories=trajectories
        )
    except OSError as e:
        raise ValueError(f"cannot read the outputs or write the report: {e}") from None
    _emit(written)
