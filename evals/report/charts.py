"""Charts drawn with matplotlib, each saved as SVG and inlined as a data: URI image.

An <img> of SVG runs no script and shares no element ids with the page, so charts need no
escaping review and several of them never clash. No pyplot: Figure objects keep no global state.
"""

from __future__ import annotations

import base64
import io

import matplotlib
from matplotlib.figure import Figure

from evals.report.load import EvalOutput
from evals.report.stats import METRICS, Distribution, RepoRate

COLORS = ["#3b6ea8", "#d9822b", "#4f9d69", "#b54a4a", "#7d5ba6", "#8c8c8c"]


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "mmx-report", "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def resolve_rates(outputs: list[EvalOutput]) -> str:
    """Each run's resolve rate as a dot, and each output's mean with its standard error."""
    figure = Figure(figsize=(max(4.0, 1.6 * len(outputs) + 2), 3.2))
    axes = figure.subplots()
    for index, output in enumerate(outputs):
        summary = output.summary
        color = COLORS[index % len(COLORS)]
        axes.scatter([index] * len(summary.rates), summary.rates, color=color, alpha=0.6, zorder=3)
        axes.errorbar(
            [index + 0.15], [summary.mean], yerr=[summary.stderr or 0.0], fmt="D", color=color, capsize=5
        )
    axes.set_xticks(range(len(outputs)), [o.label for o in outputs], rotation=15, ha="right")
    axes.set_xlim(-0.5, len(outputs) - 0.35)
    axes.set_ylim(-0.05, 1.05)
    axes.set_ylabel("resolve rate")
    axes.set_title("Resolve rate per run (dots), mean ± standard error (diamond)")
    axes.grid(axis="y", alpha=0.3)
    return _data_uri(figure)


def per_repository(outputs: list[EvalOutput], rates: list[list[RepoRate]]) -> str:
    repos = sorted({r.repo for output_rates in rates for r in output_rates})
    figure = Figure(figsize=(max(4.5, 0.9 * len(repos) * len(outputs) + 2), 3.4))
    axes = figure.subplots()
    width = 0.8 / len(outputs)
    for index, (output, output_rates) in enumerate(zip(outputs, rates, strict=True)):
        by_repo = {r.repo: r.rate for r in output_rates}
        xs = [n + index * width for n in range(len(repos))]
        axes.bar(xs, [by_repo.get(r, 0.0) for r in repos], width, label=output.label,
                 color=COLORS[index % len(COLORS)])  # fmt: skip
    axes.set_xticks([n + 0.4 - width / 2 for n in range(len(repos))], repos, rotation=20, ha="right")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("resolved jobs / jobs")
    axes.set_title("Resolve rate per repository")
    if len(outputs) > 1:
        axes.legend(fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    return _data_uri(figure)


def distributions(outputs: list[EvalOutput], per_output: list[dict[str, Distribution]]) -> str | None:
    """One box plot per metric that any output recorded, one box per output."""
    shown = [name for name in METRICS if any(d[name].count for d in per_output)]
    if not shown:
        return None
    figure = Figure(figsize=(3.2 * len(shown), 3.4))
    axes_list = figure.subplots(1, len(shown), squeeze=False)[0]
    for axes, name in zip(axes_list, shown, strict=True):
        series = [d[name].values or [float("nan")] for d in per_output]
        boxes = axes.boxplot(series, patch_artist=True, showfliers=True)
        for index, box in enumerate(boxes["boxes"]):
            box.set_facecolor(COLORS[index % len(COLORS)])
            box.set_alpha(0.55)
        axes.set_xticks(range(1, len(outputs) + 1), [o.label for o in outputs], rotation=20, ha="right")
        axes.set_title(METRICS[name][0], fontsize="medium")
        axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return _data_uri(figure)
