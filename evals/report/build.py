"""Loading the outputs and writing the requested report files."""

from __future__ import annotations

from pathlib import Path

from evals.report import html, markdown
from evals.report.load import load_outputs
from evals.run_store import write_atomic


def write_reports(
    outputs: list[Path], *, html_path: Path | None, markdown_path: Path | None, trajectories: bool = True
) -> dict[str, str]:
    """Writes the files asked for; returns {"html": path, "markdown": path} for those written."""
    loaded = load_outputs(outputs)
    written: dict[str, str] = {}
    if html_path is not None:
        write_atomic(html_path, html.render(loaded, trajectories=trajectories))
        written["html"] = str(html_path)
    if markdown_path is not None:
        write_atomic(markdown_path, markdown.render(loaded))
        written["markdown"] = str(markdown_path)
    return written
