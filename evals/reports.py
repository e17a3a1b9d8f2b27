"""Reports in SWE-bench's schemas (per instance, per run) and a summary across repeated runs.

Per instance (report.json): {instance_id: {patch_is_None, patch_exists, patch_successfully_applied,
resolved, tests_status, infra_failure}} — SWE-bench's fields plus `infra_failure` (null, or
{"kind", "message"}: not the model's failure, re-run it).

Per run (run-K/report.json): SWE-bench's run-report fields (total/submitted/completed/resolved/
unresolved/empty_patch/error counts and id lists, schema_version) plus infra_failure counts and
ids and the resolve rate. Differences from SWE-bench: an empty patch is still tested (so `--agent
empty` measures the base), and so can count as completed; error = infra failures + patches that
did not apply.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from evals.grading import Grade

SCHEMA_VERSION = 2


def instance_report(grade: Grade) -> dict[str, Any]:
    return {
        grade.instance_id: {
            "patch_is_None": grade.patch_is_None,
            "patch_exists": grade.patch_exists,
            "patch_successfully_applied": grade.patch_successfully_applied,
            "resolved": grade.resolved,
            "tests_status": grade.tests_status,
            "infra_failure": grade.infra_failure.to_json() if grade.infra_failure else None,
        }
    }


def run_report(
    instance_ids: list[str], reports: dict[str, dict[str, Any]], patches: dict[str, str | None]
) -> dict[str, Any]:
    """The run report from per-instance report entries (by id) and the submitted patches (by id)."""
    ids = {
        "submitted": [i for i in instance_ids if patches.get(i) is not None],
        "empty_patch": [i for i in instance_ids if i in reports and not (patches.get(i) or "").strip()],
        "infra_failure": [i for i in instance_ids if (reports.get(i) or {}).get("infra_failure")],
    }
    not_applied = [
        i
        for i in instance_ids
        if i in reports and reports[i]["patch_exists"] and not reports[i]["patch_successfully_applied"]
    ]
    ids["error"] = sorted({*ids["infra_failure"], *not_applied}, key=instance_ids.index)
    ids["completed"] = [
        i for i in instance_ids if i in reports and i not in ids["error"] and not reports[i]["patch_is_None"]
    ]
    ids["resolved"] = [i for i in ids["completed"] if reports[i]["resolved"]]
    ids["unresolved"] = [i for i in ids["completed"] if not reports[i]["resolved"]]
    ids["incomplete"] = [i for i in instance_ids if i not in reports]
    report: dict[str, Any] = {"total_instances": len(instance_ids)}
    for name in ("submitted", "completed", "resolved", "unresolved", "empty_patch", "error", "infra_failure"):
        report[f"{name}_instances"] = len(ids[name])
    for name in (
        "completed",
        "incomplete",
        "empty_patch",
        "submitted",
        "resolved",
        "unresolved",
        "error",
        "infra_failure",
    ):
        report[f"{name}_ids"] = ids[name]
    report["resolve_rate"] = round(len(ids["resolved"]) / len(instance_ids), 6) if instance_ids else 0.0
    report["schema_version"] = SCHEMA_VERSION
    return report


def pass_at_k(runs: int, resolved: int, k: int) -> float:
    """The chance that at least one of k runs drawn from `runs` resolves (the unbiased estimator)."""
    if runs - resolved < k:
        return 1.0
    return 1.0 - math.comb(runs - resolved, k) / math.comb(runs, k)


@dataclass
class Summary:
    runs: int
    total: int
    rates: list[float]  # resolve rate of each run
    mean: float
    stderr: float | None  # standard error of the mean rate (None with one run)
    pass_at: dict[int, float]  # k -> pass@k
    per_task: dict[str, int]  # instance id -> runs that resolved it
    infra_failures: int

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "total_instances": self.total,
            "resolve_rates": self.rates,
            "mean_resolve_rate": self.mean,
            "stderr_resolve_rate": self.stderr,
            "pass_at_k": {str(k): v for k, v in self.pass_at.items()},
            "resolved_runs_per_instance": self.per_task,
            "infra_failures": self.infra_failures,
        }


def summarize(instance_ids: list[str], run_reports: list[dict[str, Any]]) -> Summary:
    runs, total = len(run_reports), len(instance_ids)
    rates = [r["resolved_instances"] / total if total else 0.0 for r in run_reports]
    per_task = {i: sum(i in r["resolved_ids"] for r in run_reports) for i in instance_ids}
    pass_at = {
        k: round(sum(pass_at_k(runs, c, k) for c in per_task.values()) / total, 6) if total else 0.0
        for k in range(1, runs + 1)
    }
    return Summary(
        runs=runs,
        total=total,
        rates=[round(r, 6) for r in rates],
        mean=round(statistics.fmean(rates), 6) if rates else 0.0,
        stderr=round(statistics.stdev(rates) / math.sqrt(runs), 6) if runs > 1 else None,
        pass_at=pass_at,
        per_task=per_task,
        infra_failures=sum(r["infra_failure_instances"] for r in run_reports),
    )


def summary_markdown(title: str, agent: str, summary: Summary, run_reports: list[dict[str, Any]]) -> str:
    lines = [f"# {title}", "", f"Agent: `{agent}`, {summary.total} task(s), {summary.runs} run(s).", ""]
    lines += ["| run | resolved | unresolved | empty patch | error | infra failure | resolve rate |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for index, report in enumerate(run_reports, 1):
        lines.append(
            f"| {index} | {report['resolved_instances']} | {report['unresolved_instances']} | "
            f"{report['empty_patch_instances']} | {report['error_instances']} | "
            f"{report['infra_failure_instances']} | {report['resolve_rate']:.1%} |"
        )
    lines.append("")
    if summary.stderr is None:
        lines.append(f"Resolve rate: **{summary.mean:.1%}**")
    else:
        lines.append(
            f"Resolve rate: **{summary.mean:.1%} ± {summary.stderr:.1%}** (mean ± standard error over {summary.runs} runs)"
        )
        lines.append("")
        lines.append("| k | " + " | ".join(str(k) for k in summary.pass_at) + " |")
        lines.append("|---|" + "---|" * len(summary.pass_at))
        lines.append("| pass@k | " + " | ".join(f"{v:.1%}" for v in summary.pass_at.values()) + " |")
    if summary.infra_failures:
        lines += [
            "",
            f"**{summary.infra_failures} infrastructure failure(s)**: not counted as resolved; run the same command again to retry them.",
        ]
    lines += ["", "| task | resolved in runs |", "|---|---|"]
    lines += [f"| {task} | {count}/{summary.runs} |" for task, count in summary.per_task.items()]
    return "\n".join(lines) + "\n"


# -- the layout of SWE-bench's run_evaluation --------------------------------------------------------
#
# OUTPUT/<model>.<run_id>.json and OUTPUT/logs/run_evaluation/<run_id>/<model>/<instance_id>/report.json,
# with exactly the keys swebench's make_run_report and get_eval_report write, counted by its rules:
# an empty patch is not evaluated (empty_patch, not completed), and an instance without a report
# (an infrastructure failure, a patch that did not apply) is an error.

SWEBENCH_INSTANCE_KEYS = (
    "patch_is_None",
    "patch_exists",
    "patch_successfully_applied",
    "resolved",
    "tests_status",
)


def swebench_model_dir(model_name: str) -> str:
    return model_name.replace("/", "__")  # as run_evaluation names the folder and the report


def swebench_evaluated(entry: dict[str, Any] | None) -> bool:
    """Whether SWE-bench's harness would have written a report for this job: tests ran on a patch."""
    return bool(
        entry
        and not entry.get("infra_failure")
        and entry.get("patch_exists")
        and entry.get("patch_successfully_applied")
    )


def swebench_instance_report(instance_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {instance_id: {key: entry[key] for key in SWEBENCH_INSTANCE_KEYS}}


def swebench_run_report(
    instance_ids: list[str], entries: dict[str, dict[str, Any]], predictions: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """make_run_report's summary of one run, from our per-instance entries and the predictions."""
    ids: dict[str, set[str]] = {
        name: set() for name in ("completed", "incomplete", "empty_patch", "resolved", "unresolved", "error")
    }
    for instance_id in instance_ids:
        prediction = predictions.get(instance_id)
        if prediction is None:
            ids["incomplete"].add(instance_id)
        elif prediction.get("model_patch") in ("", None):
            ids["empty_patch"].add(instance_id)
        elif swebench_evaluated(entries.get(instance_id)):
            ids["completed"].add(instance_id)
            ids["resolved" if entries[instance_id]["resolved"] else "unresolved"].add(instance_id)
        else:
            ids["error"].add(instance_id)
    report: dict[str, Any] = {
        "total_instances": len(instance_ids),
        "submitted_instances": len(predictions),
        **{
            f"{name}_instances": len(ids[name])
            for name in ("completed", "resolved", "unresolved", "empty_patch", "error")
        },
        "completed_ids": sorted(ids["completed"]),
        "incomplete_ids": sorted(ids["incomplete"]),
        "empty_patch_ids": sorted(ids["empty_patch"]),
        "submitted_ids": sorted(predictions),
        "resolved_ids": sorted(ids["resolved"]),
        "unresolved_ids": sorted(ids["unresolved"]),
        "error_ids": sorted(ids["error"]),
        "schema_version": SCHEMA_VERSION,
        # run_evaluation adds these when it had no Docker client to look for leftovers; ours has none.
        "unstopped_instances": 0,
        "unstopped_containers": [],
        "unremoved_images": [],
    }
    return report
