"""The run store: a job is done once its report.json exists, and records keep their JSON shape."""

from __future__ import annotations

import json

from evals.grading import Grade
from evals.infra_failure import InfraFailure
from evals.reports import instance_report
from evals.run_store import AgentRecord, GradingRecord, JobDir


def test_a_job_is_done_only_once_its_report_is_written(tmp_path):
    job = JobDir(tmp_path / "run-1" / "x", "x")
    grade = Grade("x", patch_exists=True, log="ran", junit_xml=b"<testsuite/>")
    assert job.read_report() is None
    job.save_grade(grade, GradingRecord(key="k", test_exit_code=0), instance_report(grade)["x"])
    assert job.read_report() == instance_report(grade)["x"]
    assert job.read_grading() == GradingRecord(key="k", test_exit_code=0)
    assert job.read_junit() == b"<testsuite/>" and (job.path / "test_output.txt").read_text() == "ran"
    assert not (job.path / "eval.sh").exists()
    assert not [p for p in job.path.iterdir() if p.name.endswith(".part")]


def test_agent_records_keep_their_keys_and_the_failure_shape(tmp_path):
    job = JobDir(tmp_path, "x")
    failure = InfraFailure("backend", "the model backend failed\nsecond line")
    record = AgentRecord("gold", "f", "error", True, failure, "sha256:1", {"turns": 2})
    job.save_agent_output(record, "diff --git a/x b/x\n")
    saved = json.loads((tmp_path / "agent.json").read_text())
    assert list(saved) == [
        "agent",
        "fingerprint",
        "status",
        "patch_is_None",
        "infra_failure",
        "instance_image_id",
        "details",
    ]
    assert saved["infra_failure"] == {"kind": "backend", "message": failure.message}
    assert job.read_agent() == record and failure.headline == "the model backend failed"
    assert job.read_patch() is None and job.has_agent_output()  # patch_is_None wins over patch.diff
    job.forget_agent_output()
    assert job.read_agent() is None and not job.has_agent_output()
