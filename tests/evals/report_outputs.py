"""Eval output directories written through the run store itself, for the report tests: any number
of runs, chosen outcomes per (run, instance), trajectories with the agent's event shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals import reports
from evals.grading import Grade
from evals.infra_failure import InfraFailure
from evals.run_store import AgentRecord, GradingRecord, RunStore

RESOLVED, UNRESOLVED, INFRA, UNFINISHED, NO_PATCH = (
    "resolved",
    "unresolved",
    "infra",
    "unfinished",
    "no patch",
)
FIX = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def divide(a, b):\n-    return a // b\n+    return a / b\n"


@dataclass
class Trajectory:
    """What the agent 'said' in a job: its parts go into the events the loop emits."""

    reasoning: str = "The bug is in divide."
    tool_output: str = "def divide(a, b):\n    return a // b\n"
    final: str = "divide now returns a float."
    extra_events: list[dict[str, Any]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        call = {"path": "calc.py"}
        return [
            {"type": "session_start", "session_id": "s1", "cwd": "/repo", "backend": "replay", "model": "m",
             "permission_mode": "full-auto", "confinement": "docker", "started_at": 1.0},
            {"type": "user_message", "text": "Fix the bug described below."},
            {"type": "reasoning_delta", "text": self.reasoning},
            {"type": "assistant_message", "message": {"role": "assistant", "content": "Reading calc.py.",
             "reasoning_content": self.reasoning,
             "tool_calls": [{"type": "function", "id": "c1", "function": {"name": "read_file", "arguments": json.dumps(call)}}]}},
            {"type": "tool_call", "id": "c1", "name": "read_file", "arguments": call},
            {"type": "tool_result", "id": "c1", "name": "read_file", "ok": True, "output": self.tool_output, "data": {}},
            {"type": "usage", "input_tokens": 900, "output_tokens": 120, "reasoning_tokens": 40, "cached_tokens": 0, "cost_usd": 0.002},
            *self.extra_events,
            {"type": "final_result", "status": "done", "result": self.final, "diff": "", "turns": 2,
             "usage": {"input_tokens": 900, "output_tokens": 120}, "cost": 0.002, "session_id": "s1",
             "duration_ms": 4200, "verified": False, "confinement": "docker"},
        ]  # fmt: skip


def write_output(
    path: Path,
    outcomes: dict[str, list[str]],
    *,
    agent: str = "mmx-agent/replay/m",
    repos: dict[str, str] | None = None,
    trajectory: Trajectory | None = None,
    patch: str = FIX,
    turns: int = 2,
) -> Path:
    """An OUTPUT dir where outcomes[instance_id][run - 1] says how that job ended."""
    runs = max(len(v) for v in outcomes.values())
    ids = list(outcomes)
    store = RunStore(path)
    records = [
        {"instance_id": i, "repo": (repos or {}).get(i, "mmx-evals/calc"), "base_commit": "0" * 40}
        for i in ids
    ]
    store.write_manifest({"title": path.name, "agent": agent, "runs": runs, "instance_ids": ids}, records)
    for instance_id, per_run in outcomes.items():
        for run, outcome in enumerate(per_run, 1):
            job = store.job(run, instance_id)
            job.path.mkdir(parents=True, exist_ok=True)
            if outcome == UNFINISHED:
                continue
            failure = (
                InfraFailure("build", "the image build failed: no space left") if outcome == INFRA else None
            )
            details = {"turns": turns + run, "usage": {"input_tokens": 1000 * run, "output_tokens": 100},
                       "cost": 0.01 * run, "duration_s": 30.0 + run}  # fmt: skip
            submitted = None if outcome == NO_PATCH else patch
            job.save_agent_output(
                AgentRecord(agent=agent, status="done", patch_is_None=submitted is None, details=details),
                submitted,
            )
            if trajectory is not None and outcome != NO_PATCH:
                lines = "".join(json.dumps(e) + "\n" for e in trajectory.events())
                (job.path / "trajectory.jsonl").write_text(lines)
            grade = _grade(instance_id, outcome, failure)
            grading = GradingRecord(key="k", outcomes=grade.outcomes, notes=grade.notes, duration_s=5.0,
                                    graded_at=1.0, apply_method="git apply", test_exit_code=0)  # fmt: skip
            job.save_grade(grade, grading, reports.instance_report(grade)[instance_id])
    return path


def _grade(instance_id: str, outcome: str, failure: InfraFailure | None) -> Grade:
    if failure is not None:
        return Grade(instance_id, infra_failure=failure)
    if outcome == NO_PATCH:
        return Grade(instance_id, patch_is_None=True, notes=["no patch was submitted"])
    resolved = outcome == RESOLVED
    failing = [] if resolved else ["tests/test_calc.py::test_divide"]
    status = {
        "FAIL_TO_PASS": {
            "success": [] if failing else ["tests/test_calc.py::test_divide"],
            "failure": failing,
        },
        "PASS_TO_PASS": {"success": ["tests/test_calc.py::test_add"], "failure": []},
    }
    return Grade(instance_id, patch_exists=True, patch_successfully_applied=True, resolved=resolved,
                 tests_status=status, log="===== 1 passed =====\n", test_exit_code=0 if resolved else 1)  # fmt: skip
