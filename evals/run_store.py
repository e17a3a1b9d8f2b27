"""An eval run's output directory: typed reads, and atomic writes (a temporary file, then a rename).

Layout (OUTPUT):
    run.json, tasks.jsonl          what was run (tasks with their derived patches: `eval grade` needs them)
    summary.md, summary.json       resolve rate per run, mean ± standard error, pass@k
    events.jsonl                   one line per finished job (append-only)
    run-K/report.json, preds.json  SWE-bench run report and predictions of run K
    run-K/<instance_id>/           patch.diff, trajectory.jsonl (mmx), agent.json, eval.sh,
                                   test_output.txt, junit.xml, grading.json, report.json
    preds.json                     run 1's predictions (SWE-bench's format, by instance id)
    <model>.run-K.json             run K's report as SWE-bench's run_evaluation writes it, and
    logs/run_evaluation/run-K/<model>/<instance_id>/   its per-instance folders (report.json,
                                   patch.diff, eval.sh, test_output.txt)

A job's report.json is written last, so it exists only for finished jobs (`JobDir.read_report`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from evals.grading import Grade
from evals.infra_failure import InfraFailure
from evals.reports import swebench_model_dir
from evals.task import Task, parse_task


def write_atomic(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    partial.write_bytes(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)
    os.replace(partial, path)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The fields of `cls` that `data` holds (null ones left to their defaults)."""
    return {f.name: data[f.name] for f in fields(cls) if data.get(f.name) is not None}


@dataclass
class AgentRecord:
    """agent.json: which agent answered, with which settings on which image, and how it ended."""

    agent: str
    fingerprint: str | None = None  # the agent's settings and task: equal means the same answer
    status: str | None = None
    patch_is_None: bool = False
    infra_failure: InfraFailure | None = None
    instance_image_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentRecord:
        record = cls(**{"agent": "", **_known_fields(cls, data)})
        record.infra_failure = InfraFailure.from_json(data.get("infra_failure"))
        return record


@dataclass
class GradingRecord:
    """grading.json: how the verdict was reached, and the key under which it stands."""

    key: str | None = None  # everything the verdict depends on (None: not cacheable)
    grader_version: int | None = None
    instance_image: str | None = None
    instance_image_id: str | None = None
    snapshot_commit: str | None = None
    apply_method: str | None = None
    test_exit_code: int | None = None
    outcomes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    graded_at: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GradingRecord:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class JobDir:
    """One (run, task) job's folder."""

    path: Path
    instance_id: str

    # -- reads ----------------------------------------------------------------------------------

    def read_report(self) -> dict[str, Any] | None:
        """The job's SWE-bench report entry, or None while the job is not done."""
        report = read_json(self.path / "report.json")
        return report.get(self.instance_id) if isinstance(report, dict) else None

    def read_grading(self) -> GradingRecord | None:
        data = read_json(self.path / "grading.json")
        return GradingRecord.from_json(data) if isinstance(data, dict) else None

    def read_agent(self) -> AgentRecord | None:
        data = read_json(self.path / "agent.json")
        return AgentRecord.from_json(data) if isinstance(data, dict) and data else None

    def read_patch(self) -> str | None:
        """The agent's patch; None when it submitted none."""
        agent = self.read_agent()
        if agent and agent.patch_is_None:
            return None
        path = self.path / "patch.diff"
        return path.read_bytes().decode("utf-8", "surrogateescape") if path.is_file() else None

    def has_agent_output(self) -> bool:
        return (self.path / "agent.json").is_file() or (self.path / "patch.diff").is_file()

    def read_junit(self) -> bytes:
        return (self.path / "junit.xml").read_bytes()

    def files(self) -> dict[str, bytes]:
        """Every file of the job by name: what a job run elsewhere starts from and hands back."""
        if not self.path.is_dir():
            return {}
        return {
            p.name: p.read_bytes() for p in self.path.iterdir() if p.is_file() and not p.name.startswith(".")
        }

    # -- writes ---------------------------------------------------------------------------------

    def save_agent_output(self, record: AgentRecord, patch: str | None) -> None:
        self._write_or_remove("patch.diff", patch)
        write_json(self.path / "agent.json", asdict(record))

    def forget_agent_output(self) -> None:
        for stale in ("agent.json", "patch.diff", "trajectory.jsonl"):
            (self.path / stale).unlink(missing_ok=True)

    def save_grade(self, grade: Grade, grading: GradingRecord, entry: dict[str, Any]) -> None:
        """The grader's files, then the verdict: from then on the job is done."""
        self._write_or_remove("eval.sh", grade.eval_script or None)
        self._write_or_remove("test_output.txt", grade.log or None)
        self._write_or_remove("junit.xml", grade.junit_xml)
        self.save_verdict(grading, entry)

    def save_verdict(self, grading: GradingRecord, entry: dict[str, Any]) -> None:
        write_json(self.path / "grading.json", asdict(grading))
        write_json(self.path / "report.json", {self.instance_id: entry})  # last: marks the job done

    def replace_files(self, files: dict[str, bytes]) -> None:
        """The job's folder becomes exactly `files`; report.json goes first and comes back last, so
        a crash in between leaves the job not done (a rerun redoes it)."""
        (self.path / "report.json").unlink(missing_ok=True)
        for stale in self.files().keys() - files.keys():
            (self.path / stale).unlink(missing_ok=True)
        for name, content in sorted(files.items()):
            if name in ("", ".", "..") or "/" in name or "\\" in name:
                raise ValueError(f"not a file name of a job: {name!r}")
            if name != "report.json":
                write_atomic(self.path / name, content)
        if "report.json" in files:
            write_atomic(self.path / "report.json", files["report.json"])

    def _write_or_remove(self, name: str, content: str | bytes | None) -> None:
        if content is not None:
            write_atomic(self.path / name, content)
        else:
            (self.path / name).unlink(missing_ok=True)


class RunStore:
    """The output directory of `eval run` (and of `eval grade`, which grades into the same)."""

    def __init__(self, output: Path):
        self.output = output
        self._events_lock = threading.Lock()

    def run_dir(self, run: int) -> Path:
        return self.output / f"run-{run}"

    def job(self, run: int, instance_id: str) -> JobDir:
        return JobDir(self.run_dir(run) / instance_id, instance_id)

    def write_manifest(self, manifest: dict[str, Any], task_records: list[dict[str, Any]]) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        write_json(self.output / "run.json", manifest)
        write_atomic(self.output / "tasks.jsonl", "".join(json.dumps(r) + "\n" for r in task_records))

    def read_manifest(self) -> tuple[dict[str, Any], list[Task]]:
        manifest = read_json(self.output / "run.json")
        tasks_file = self.output / "tasks.jsonl"
        if not manifest or not tasks_file.is_file():
            raise ValueError(
                f"{self.output} is not an `eval run` output directory (no run.json or tasks.jsonl)"
            )
        lines = tasks_file.read_text(encoding="utf-8").splitlines()
        tasks = [
            parse_task(json.loads(line), f"{tasks_file}:{n}")
            for n, line in enumerate(lines, 1)
            if line.strip()
        ]
        return manifest, tasks

    def write_run_report(self, run: int, report: dict[str, Any], preds: dict[str, Any]) -> None:
        write_json(self.run_dir(run) / "report.json", report)
        write_json(self.run_dir(run) / "preds.json", preds)
        if run == 1:
            write_json(self.output / "preds.json", preds)

    @staticmethod
    def swebench_run_id(run: int) -> str:
        return f"run-{run}"

    def swebench_report_path(self, run: int, model_name: str) -> Path:
        return self.output / f"{swebench_model_dir(model_name)}.{self.swebench_run_id(run)}.json"

    def swebench_instance_dir(self, run: int, model_name: str, instance_id: str) -> Path:
        run_id = self.swebench_run_id(run)
        return self.output / "logs" / "run_evaluation" / run_id / swebench_model_dir(model_name) / instance_id

    def write_swebench_run(
        self, run: int, model_name: str, summary: dict[str, Any], instance_reports: dict[str, dict[str, Any]]
    ) -> None:
        """Run K in run_evaluation's layout, rewritten whole: a job that is no longer evaluated
        (retried into an infrastructure failure, say) leaves no stale report behind."""
        shutil.rmtree(self.output / "logs" / "run_evaluation" / self.swebench_run_id(run), ignore_errors=True)
        for instance_id, report in instance_reports.items():
            folder = self.swebench_instance_dir(run, model_name, instance_id)
            job = self.job(run, instance_id)
            for name in ("patch.diff", "eval.sh", "test_output.txt"):
                if (job.path / name).is_file():
                    write_atomic(folder / name, (job.path / name).read_bytes())
            write_json(folder / "report.json", report)
        write_json(self.swebench_report_path(run, model_name), summary)

    def write_summary(self, data: dict[str, Any], markdown: str) -> None:
        write_json(self.output / "summary.json", data)
        write_atomic(self.output / "summary.md", markdown)

    def append_event(self, **fields: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), **fields}) + "\n"
        with self._events_lock, (self.output / "events.jsonl").open("a", encoding="utf-8") as f:
            f.write(line)
