"""The report's summary tables in Markdown, for a CI comment: no trajectories, no charts."""

from __future__ import annotations

from evals.report import stats
from evals.report.load import EvalOutput


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def render(outputs: list[EvalOutput]) -> str:
    max_runs = max(o.runs for o in outputs)
    lines = ["# Eval report", ""]
    header = ["output", "agent", "tasks", "runs", "resolve rate", "± SE"]
    header += [f"pass@{k}" for k in range(1, max_runs + 1)]
    rows = []
    for o in outputs:
        s = o.summary
        row: list[object] = [
            o.label,
            f"`{o.agent}`",
            len(o.instance_ids),
            o.runs,
            _pct(s.mean),
            _pct(s.stderr),
        ]
        rows.append(row + [_pct(s.pass_at.get(k)) for k in range(1, max_runs + 1)])
    lines += _table(header, rows)

    for other in outputs[1:]:
        c = stats.compare(outputs[0], other)
        lines += [f"## {_cell(c.b)} vs {_cell(c.a)}", ""]
        if not c.shared:
            lines += ["No shared tasks.", ""]
            continue
        low, high = c.interval
        lines += _table(
            ["shared tasks", c.a, c.b, "difference", f"{stats.CONFIDENCE:.0%} interval (paired bootstrap)",
             "exact McNemar p"],
            [[len(c.shared), _pct(c.rate_a), _pct(c.rate_b), f"{c.difference * 100:+.1f} pp",
              f"[{low * 100:+.1f}, {high * 100:+.1f}] pp", f"{c.p_value:.4g}"]],
        )  # fmt: skip
        lines += [f"Resolved by {_cell(c.b)} only: " + (", ".join(f"`{i}`" for i in c.b_only) or "none"), ""]
        lines += [f"Resolved by {_cell(c.a)} only: " + (", ".join(f"`{i}`" for i in c.a_only) or "none"), ""]

    repo_rates = [{r.repo: r for r in stats.per_repository(o)} for o in outputs]
    repos = sorted({repo for rates in repo_rates for repo in rates})
    lines += ["## Per repository", ""]
    lines += _table(
        ["repository", *[o.label for o in outputs]],
        [[repo, *[_repo_cell(rates.get(repo)) for rates in repo_rates]] for repo in repos],
    )
    infra = [stats.infra_failures_by_kind(o) for o in outputs]
    kinds = sorted({kind for counts in infra for kind in counts})
    if kinds:
        lines += ["## Infrastructure failures", ""]
        lines += _table(
            ["kind", *[o.label for o in outputs]], [[k, *[c.get(k, 0) for c in infra]] for k in kinds]
        )
    return "\n".join(lines).rstrip() + "\n"


def _repo_cell(rate: stats.RepoRate | None) -> str:
    return "–" if rate is None else f"{rate.rate:.1%} ({rate.resolved_jobs}/{rate.jobs})"
