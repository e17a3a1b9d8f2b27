"""`mmx-agent sandbox ...`: base and env images, one-off commands, listing, clean-up.

Results go to stdout (a tag, a table, one JSON object); progress and errors go to stderr.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import typer

from sandbox.base import SandboxError
from sandbox.base_image import DEFAULT_SUITE, SUITES, base_image_tag, ensure_base_image
from sandbox.docker import SANDBOX_USER, WORKSPACE_LIMITS, DockerSandbox, Limits, parse_size
from sandbox.engine import connect
from sandbox.env_image import ensure_env_image
from sandbox.images import list_images
from sandbox.prune import prune as prune_leftovers

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

BUILD_API_SECONDS = 900  # importing a root filesystem or committing a layer is one long request
# `exec`'s JSON has an integer exit code even when the command did not exit on its own.
TIMED_OUT_EXIT_CODE = 124  # as timeout(1)
CANCELLED_EXIT_CODE = 130


def _reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Sandbox errors become one line on stderr and exit status 1, not a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SandboxError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def positive_size(value: str | None) -> str | None:
    """A typer callback: a Docker size above 0 ("512m", "2g"); anything else is a usage error (exit 2)."""
    if value is not None:
        try:
            parse_size(value)
        except ValueError as e:
            raise typer.BadParameter(f"{e} (got {value!r})") from None
    return value


def positive_number(value: float | None) -> float | None:
    """A typer callback: a number above 0 (Docker reads 0 as "no limit"); else a usage error (exit 2)."""
    if value is not None and not 0 < value < float("inf"):
        raise typer.BadParameter(f"must be above 0 (got {value:g})")
    return value


def _suite_option() -> Any:
    return typer.Option(DEFAULT_SUITE, "--suite", help=f"Debian suite: {' | '.join(SUITES)}.")


@app.command()
@_reports_errors
def base(
    suite: str = _suite_option(),
    mirror: str = typer.Option(None, help="Debian mirror (default: the one this machine's apt uses)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build even if the image exists."),
) -> None:
    """Build the base image (debootstrap + docker import; reused when it exists) and print its tag."""
    tag = ensure_base_image(connect(timeout=BUILD_API_SECONDS), suite, mirror=mirror, rebuild=rebuild)
    typer.echo(tag)


@app.command()
@_reports_errors
def env(
    requirements: Path = typer.Argument(..., exists=True, dir_okay=False, help="Requirements file (pinned)."),
    base_image: str = typer.Option(None, "--base", help="Image to build on (default: the suite's base)."),
    suite: str = _suite_option(),
    find_links: list[Path] = typer.Option([], "--find-links", help="Extra local wheel directories."),
    no_index: bool = typer.Option(False, "--no-index", help="Download from --find-links only, not PyPI."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build even if the image exists."),
) -> None:
    """Build an env layer: requirements downloaded on the host, installed offline; print its tag."""
    pip_args = [arg for link in find_links for arg in ("--find-links", str(link.resolve()))]
    pip_args += ["--no-index"] if no_index else []
    tag = ensure_env_image(
        connect(timeout=BUILD_API_SECONDS),
        requirements.read_text().splitlines(),
        base=base_image or base_image_tag(suite),
        pip_args=pip_args,
        rebuild=rebuild,
    )
    typer.echo(tag)


@app.command()
@_reports_errors
def images(as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """List our images (base and env layers) with their sizes."""
    summaries = list_images(connect())
    if as_json:
        for summary in summaries:
            typer.echo(json.dumps(summary.to_json()))
        return
    rows = [("TAG", "KIND", "SIZE", "OWN LAYER", "CREATED")]
    rows += [(s.tag, s.kind, _megabytes(s.size), _megabytes(s.layer_size), s.created) for s in summaries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


@app.command(context_settings={"allow_interspersed_args": False})
@_reports_errors
def exec(
    command: list[str] = typer.Argument(..., help="The command and its arguments (after --)."),
    image: str = typer.Option(None, help="Image (default: the bookworm base image)."),
    timeout: float = typer.Option(None, help="Seconds before the command's process tree is killed."),
    memory: str = typer.Option(
        Limits.memory, callback=positive_size, help="Memory limit (Docker units: 512m, 2g)."
    ),
    pids: int = typer.Option(Limits.pids, callback=positive_number, help="Process (and thread) limit."),
    cpus: float = typer.Option(Limits.cpus, callback=positive_number, help="CPU limit."),
    disk: str = typer.Option(
        WORKSPACE_LIMITS.disk,
        callback=positive_size,
        help="Size of the sandbox's /workspace and of its /tmp (tmpfs; counted in memory too).",
    ),
    max_output: int = typer.Option(1_000_000, help="Bytes of output kept (head and tail)."),
) -> None:
    """Run one command in a fresh sandbox (no network, as nobody, read-only but for /workspace and /tmp)
    and print one JSON object:
    {"exit_code": int, "output": str, "timed_out": bool, "oom_killed": bool}."""
    limits = Limits(cpus=cpus, memory=memory, pids=pids, disk=disk)
    image = image or base_image_tag(DEFAULT_SUITE)
    with DockerSandbox.create(image, user=SANDBOX_USER, limits=limits) as sandbox:
        try:
            result = sandbox.exec(shlex.join(command), timeout=timeout, max_output=max_output)
        except KeyboardInterrupt:
            raise typer.Exit(CANCELLED_EXIT_CODE) from None
    exit_code = result.exit_code
    if exit_code is None:
        exit_code = TIMED_OUT_EXIT_CODE if result.timed_out else CANCELLED_EXIT_CODE
    output = {
        "exit_code": exit_code,
        "output": result.output,
        "timed_out": result.timed_out,
        "oom_killed": result.oom_killed,
    }
    typer.echo(json.dumps(output))


@app.command()
@_reports_errors
def prune(
    include_images: bool = typer.Option(False, "--images", help="Also remove our base and env images."),
    include_live: bool = typer.Option(False, "--all", help="Also remove sandboxes of runs still alive."),
) -> None:
    """Remove containers and volumes that crashed runs left behind (project label only)."""
    report = prune_leftovers(connect(), include_live=include_live, include_images=include_images)
    typer.echo(
        f"removed {len(report.containers)} container(s), {len(report.volumes)} volume(s), "
        f"{len(report.images)} image(s)"
    )
    for name in report.containers + report.volumes + report.images:
        typer.echo(f"  {name}")
    if report.kept:
        typer.echo(f"kept {len(report.kept)} container(s) of runs still alive (--all removes them too)")
    for error in report.errors:
        typer.echo(f"error: {error}", err=True)
    if report.errors:
        raise typer.Exit(1)
