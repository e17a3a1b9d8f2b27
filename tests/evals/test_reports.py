"""Run reports in SWE-bench's schema, and the statistics over repeated runs."""

from __future__ import annotations

import pytest

from evals import reports
from evals.grading import Grade


def entry(resolved=False, applied=True, exists=True, none=False, infra=None):
    return {
        "patch_is_None": none,
        "patch_exists": exists,
        "patch_successfully_applied": applied,
        "resolved": resolved,
        "tests_status": {},
        "infra_failure": infra,
    }


def test_the_run_report_has_swe_bench_fields_and_keeps_infra_failures_apart():
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    entries = {
        "a": entry(resolved=True),
        "b": entry(),
        "c": entry(applied=False),
        "d": entry(infra={"kind": "oom", "message": "x"}),
        "e": entry(exists=False, applied=False),
        "f": entry(none=True, exists=False, applied=False),
    }
    patches = {"a": "p", "b": "p", "c": "p", "d": "p", "e": "", "f": None, "g": "p"}
    report = reports.run_report(ids, entries, patches)
    assert report["total_instances"] == 7
    assert report["submitted_ids"] == ["a", "b", "c", "d", "e", "g"]
    assert report["resolved_ids"] == ["a"]
    assert report["unresolved_ids"] == ["b", "e"]  # an empty patch is tested, so it completes
    assert report["completed_ids"] == ["a", "b", "e"]
    assert report["error_ids"] == ["c", "d"]
    assert report["infra_failure_ids"] == ["d"]
    assert report["empty_patch_ids"] == ["e", "f"]
    assert report["incomplete_ids"] == ["g"]
    assert report["resolve_rate"] == pytest.approx(1 / 7, abs=1e-6)
    assert report["schema_version"] == 2
    for name in ("submitted", "completed", "resolved", "unresolved", "empty_patch", "error"):
        assert report[f"{name}_instances"] == len(report[f"{name}_ids"])


def test_instance_reports_use_swe_bench_keys_plus_infra_failure():
    grade = Grade(
        "x",
        patch_exists=True,
        patch_successfully_applied=True,
        resolved=True,
        tests_status={"FAIL_TO_PASS": {}},
    )
    assert reports.instance_report(grade) == {
        "x": {
            "patch_is_None": False,
            "patch_exists": True,
            "patch_successfully_applied": True,
            "resolved": True,
            "tests_status": {"FAIL_TO_PASS": {}},
            "infra_failure": None,
        }
    }


def test_pass_at_k_is_the_unbiased_estimator():
    assert reports.pass_at_k(4, 0, 1) == 0.0
    assert reports.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert reports.pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert reports.pass_at_k(4, 3, 2) == 1.0


def test_summary_over_runs_gives_mean_standard_error_and_pass_at_k():
    ids = ["a", "b"]
    runs = [
        reports.run_report(ids, {"a": entry(resolved=True), "b": entry()}, {"a": "p", "b": "p"}),
        reports.run_report(ids, {"a": entry(resolved=True), "b": entry(resolved=True)}, {"a": "p", "b": "p"}),
    ]
    summary = reports.summarize(ids, runs)
    assert summary.rates == [0.5, 1.0]
    assert summary.mean == 0.75
    assert summary.stderr == pytest.approx(0.25)  # stdev 0.3536 / sqrt(2)
    assert summary.pass_at == {1: 0.75, 2: 1.0}
    assert summary.per_task == {"a": 2, "b": 1}
    text = reports.summary_markdown("t", "gold", summary, runs)
    assert "75.0% ± 25.0%" in text and "pass@k" in text and "| b | 1/2 |" in text
    assert reports.summarize(ids, runs[:1]).stderr is None
