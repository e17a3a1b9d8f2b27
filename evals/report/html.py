"""The HTML report: one self-contained file (inline CSS, charts as data: URIs, no script at all).

Everything taken from the outputs is escaped by Jinja's autoescape, and diffs by Pygments' HTML
formatter. The page's Content-Security-Policy forbids scripts and any network access as a second
wall: a trajectory is model-written text and must stay text.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from evals.report import charts, stats
from evals.report.load import EvalOutput, Job
from evals.report.trajectory import clip, read_steps

TEST_OUTPUT_TAIL = 6_000
DIFF_FORMATTER = HtmlFormatter(cssclass="diff", wrapcode=True)


def _environment() -> jinja2.Environment:
    template = resources.files("evals.report").joinpath("report.html.j2").read_text(encoding="utf-8")
    environment = jinja2.Environment(
        loader=jinja2.DictLoader({"report.html": template}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["pct"] = lambda v: "–" if v is None else f"{v:.1%}"
    environment.filters["num"] = _number
    return environment


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def highlighted_diff(patch: str) -> Markup:
    return Markup(highlight(clip(patch, 200_000), DiffLexer(), DIFF_FORMATTER))


def _test_output_tail(job: Job) -> str | None:
    path = job.folder.path / "test_output.txt"
    if not path.is_file():
        return None
    text = path.read_bytes()[-TEST_OUTPUT_TAIL * 4 :].decode("utf-8", "replace")
    return text[-TEST_OUTPUT_TAIL:]


def _job_view(job: Job, trajectories: bool) -> dict[str, Any]:
    patch = job.read_patch()
    trajectory = job.trajectory_path
    return {
        "run": job.run,
        "outcome": job.outcome,
        "css": job.outcome.replace(" ", "-"),
        "infra_failure": job.infra_failure,
        "failing_tests": job.failing_tests(),
        "notes": job.grading.notes if job.grading else [],
        "apply_method": job.grading.apply_method if job.grading else None,
        "test_exit_code": job.grading.test_exit_code if job.grading else None,
        "status": job.agent.status if job.agent else None,
        "turns": job.turns,
        "tokens": job.tokens,
        "cost": job.cost,
        "agent_seconds": job.agent_seconds,
        "diff": highlighted_diff(patch) if patch and patch.strip() else None,
        "patch_state": "no patch submitted"
        if patch is None
        else ("empty patch" if not patch.strip() else None),
        "steps": read_steps(trajectory) if trajectory and trajectories else None,
        "has_trajectory": trajectory is not None,
        "test_output": _test_output_tail(job),
    }


def _instance_rows(output: EvalOutput, trajectories: bool) -> list[dict[str, Any]]:
    rows = []
    for instance_id in output.instance_ids:
        jobs = [output.job(run, instance_id) for run in range(1, output.runs + 1)]
        rows.append(
            {
                "id": instance_id,
                "repo": output.repos.get(instance_id, ""),
                "resolved": sum(j.resolved for j in jobs),
                "outcomes": [(j.outcome, j.outcome.replace(" ", "-")) for j in jobs],
                "jobs": [_job_view(j, trajectories) for j in jobs],
            }
        )
    return rows


def render(outputs: list[EvalOutput], *, trajectories: bool = True) -> str:
    """The page; without trajectories it stays small for a run of thousands of jobs."""
    repo_rates = [stats.per_repository(o) for o in outputs]
    distributions = [stats.distributions(o) for o in outputs]
    infra = [stats.infra_failures_by_kind(o) for o in outputs]
    comparisons = [stats.compare(outputs[0], other) for other in outputs[1:]]
    page = (
        _environment()
        .get_template("report.html")
        .render(
            generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            outputs=outputs,
            repo_rates=repo_rates,
            repos=sorted({r.repo for rates in repo_rates for r in rates}),
            distributions=distributions,
            metrics=stats.METRICS,
            infra=infra,
            infra_kinds=sorted({kind for counts in infra for kind in counts}),
            comparisons=comparisons,
            confidence=stats.CONFIDENCE,
            resamples=stats.BOOTSTRAP_RESAMPLES,
            seed=stats.BOOTSTRAP_SEED,
            charts={
                "rates": charts.resolve_rates(outputs),
                "repos": charts.per_repository(outputs, repo_rates),
                "distributions": charts.distributions(outputs, distributions),
            },
            instances=[_instance_rows(o, trajectories) for o in outputs],
            diff_css=Markup(DIFF_FORMATTER.get_style_defs(".diff")),
        )
    )
    return page
