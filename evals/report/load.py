"""Reading `eval run` output directories for the report: every job, finished or not, as it is on disk.

Partial outputs (a run killed half way, a job without a trajectory, a run that never wrote its
summary) load as what they hold; only a path that is not an output directory at all is an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from evals import reports
from evals.run_store import AgentRecord, GradingRecord, JobDir, RunStore, read_json

RUN_DIR = re.compile(r"run-(\d+)")


class ReportInputError(ValueError):
    """A path given to the report is not an `eval run` output directory."""


@dataclass
class Job:
    """One (run, instance) job as the report sees it."""

    run: int
    instance_id: str
    folder: JobDir
    entry: dict[str, Any] | None  # the per-instance report entry; None: the job never finished
    agent: AgentRecord | None
    grading: GradingRecord | None

    @property
    def infra_failure(self) -> dict[str, Any] | None:
        """As the run report counts it: only a finished job's verdict says so."""
        failure = (self.entry or {}).get("infra_failure")
        return failure if isinstance(failure, dict) else None

    @property
    def resolved(self) -> bool:
        return bool(self.entry and self.entry.get("resolved") and not self.entry.get("infra_failure"))

    @property
    def outcome(self) -> str:
        """resolved | unresolved | not applied | no patch | infra failure | not finished"""
        if self.infra_failure:
            return "infra failure"
        if self.entry is None:
            return "not finished"
        if self.entry.get("patch_is_None"):
            return "no patch"
        if self.entry.get("patch_exists") and not self.entry.get("patch_successfully_applied"):
            return "not applied"
        return "resolved" if self.entry.get("resolved") else "unresolved"

    @property
    def details(self) -> dict[str, Any]:
        return self.agent.details if self.agent else {}

    @property
    def turns(self) -> float | None:
        return _number(self.details.get("turns"))

    @property
    def tokens(self) -> float | None:
        usage = self.details.get("usage")
        if not isinstance(usage, dict):
            return None
        counts = [_number(usage.get(k)) for k in ("input_tokens", "output_tokens")]
        return sum(c for c in counts if c is not None) if any(c is not None for c in counts) else None

    @property
    def cost(self) -> float | None:
        return _number(self.details.get("cost"))

    @property
    def agent_seconds(self) -> float | None:
        return _number(self.details.get("duration_s"))

    @property
    def grading_seconds(self) -> float | None:
        return _number(self.grading.duration_s) if self.grading and self.grading.graded_at else None

    @property
    def trajectory_path(self) -> Path | None:
        path = self.folder.path / "trajectory.jsonl"
        return path if path.is_file() else None

    def read_patch(self) -> str | None:
        """As JobDir.read_patch, with the agent record already read (a malformed one reads as none)."""
        if self.agent and self.agent.patch_is_None:
            return None
        path = self.folder.path / "patch.diff"
        return path.read_bytes().decode("utf-8", "surrogateescape") if path.is_file() else None

    def failing_tests(self) -> dict[str, list[str]]:
        """Tests the verdict needed that did not go its way, by list (FAIL_TO_PASS, PASS_TO_PASS)."""
        status = (self.entry or {}).get("tests_status")
        if not isinstance(status, dict):
            return {}
        failing = {}
        for name in ("FAIL_TO_PASS", "PASS_TO_PASS"):
            tests = status[name].get("failure") if isinstance(status.get(name), dict) else None
            if tests:
                failing[name] = [str(t) for t in tests] if isinstance(tests, list) else [str(tests)]
        return failing


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class EvalOutput:
    """One OUTPUT directory: what was run and every job's files."""

    path: Path
    title: str
    agent: str
    instance_ids: list[str]
    runs: int
    repos: dict[str, str]  # instance id -> repository (owner/name)
    jobs: dict[tuple[int, str], Job] = field(default_factory=dict)
    label: str = ""

    def job(self, run: int, instance_id: str) -> Job:
        return self.jobs[(run, instance_id)]

    def all_jobs(self) -> list[Job]:
        return [self.jobs[(run, i)] for run in range(1, self.runs + 1) for i in self.instance_ids]

    @cached_property
    def run_reports(self) -> list[dict[str, Any]]:
        """Each run's report, computed from the job files as `eval run` computes it."""
        made = []
        for run in range(1, self.runs + 1):
            jobs = [self.job(run, i) for i in self.instance_ids]
            entries = {j.instance_id: j.entry for j in jobs if j.entry}
            patches = {j.instance_id: j.read_patch() for j in jobs}
            made.append(reports.run_report(self.instance_ids, entries, patches))
        return made

    @cached_property
    def summary(self) -> reports.Summary:
        return reports.summarize(self.instance_ids, self.run_reports)

    def resolved_runs(self, instance_id: str) -> int:
        return sum(self.job(run, instance_id).resolved for run in range(1, self.runs + 1))


def load_output(path: Path) -> EvalOutput:
    if not path.exists():
        raise ReportInputError(f"{path}: no such directory")
    if not path.is_dir():
        raise ReportInputError(f"{path} is not a directory (give an `eval run` output directory)")
    manifest = read_json(path / "run.json")
    if not isinstance(manifest, dict):
        raise ReportInputError(f"{path} is not an `eval run` output directory (no readable run.json)")
    records = _task_records(path / "tasks.jsonl")
    instance_ids = _strings(manifest.get("instance_ids")) or [r["instance_id"] for r in records]
    on_disk = [int(m.group(1)) for d in path.iterdir() if d.is_dir() and (m := RUN_DIR.fullmatch(d.name))]
    declared = manifest.get("runs") if isinstance(manifest.get("runs"), int) else 0
    runs = max([declared, *on_disk, 1])
    output = EvalOutput(
        path=path,
        title=str(manifest.get("title") or path.name),
        agent=str(manifest.get("agent") or "unknown agent"),
        instance_ids=instance_ids,
        runs=runs,
        repos={r["instance_id"]: str(r.get("repo") or "") for r in records},
        label=path.name,
    )
    store = RunStore(path)
    for run in range(1, runs + 1):
        for instance_id in instance_ids:
            folder = store.job(run, instance_id)
            entry = _safe(folder.read_report)
            output.jobs[(run, instance_id)] = Job(
                run,
                instance_id,
                folder,
                entry if isinstance(entry, dict) else None,
                _safe(folder.read_agent),
                _safe(folder.read_grading),
            )
    return output


def load_outputs(paths: list[Path]) -> list[EvalOutput]:
    outputs = [load_output(p) for p in paths]
    _unique_labels(outputs)
    return outputs


def _unique_labels(outputs: list[EvalOutput]) -> None:
    """Directory names label the outputs; where two names are equal, their position and full path do."""
    for index, output in enumerate(outputs):
        same = [o for o in outputs if o.path.name == output.path.name]
        if len(same) > 1:
            output.label = f"{index + 1}: {output.path}"


def _safe(read: Any) -> Any:
    """A job file that is half written or malformed reads as missing, not as a failed report."""
    try:
        return read()
    except (KeyError, TypeError, ValueError):
        return None


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _task_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("instance_id"), str):
            records.append(record)
    return records
